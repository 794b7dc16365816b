"""The seams between the trigger API and the runtime, as a fresh interpreter sees them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Fresh interpreters: process-level, not the fast layer.
pytestmark = pytest.mark.slow


def _loaded_by(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_the_in_run_trigger_path_does_not_import_define():
    """define -> trigger -> runtime -> define was a cycle held apart by lazy imports."""
    loaded = _loaded_by("import sylphrun.trigger, sylphrun.runtime.in_run")
    assert "sylphrun.define" not in loaded
    assert "sylphrun.runtime.steps" not in loaded


def test_triggering_from_a_script_loads_neither_asyncio_nor_the_runtime():
    loaded = _loaded_by("import sylphrun.trigger")
    assert "asyncio" not in loaded
    assert not [
        m for m in loaded if m.startswith("sylphrun.runtime.") and m != "sylphrun.runtime.scope"
    ]
