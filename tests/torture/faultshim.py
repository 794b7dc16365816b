"""The LD_PRELOAD shim (faultfs.c) that fails or logs the journal's writes, built once per
session with gcc: shared by the fault tests, which import it (a conftest.py here would
shadow tests/conftest.py, which other test modules import by that name)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

needs_shim = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("gcc") is None,
    reason="the fault shim is an LD_PRELOAD library built with gcc (Linux)",
)


@pytest.fixture(scope="session", name="shim")
def build_shim(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shim") / "faultfs.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(HERE / "faultfs.c"), "-ldl"],
        check=True,
        capture_output=True,
    )
    return out
