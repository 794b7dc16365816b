"""What a fresh interpreter pays to import sylphrun: every task module, every spawned
worker, each reload's import check and `sylphrun --help` import the package, so the
public API is loaded on first use and heavy modules only where they are needed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import sylphrun

pytestmark = pytest.mark.slow  # every test here starts a fresh interpreter

# Never needed to define a task or to print the CLI's help.
HEAVY = [
    "asyncio",
    "sqlite3",
    "textual",
    "rich",
    "sqlite_utils",
    "watchfiles",
    "psutil",
    "sylphrun.journal",
    "sylphrun.runtime",
    "sylphrun.trigger",
    "sylphrun.dashboard",
]


def modules_after(code: str) -> set[str]:
    """The modules loaded once `code` has run in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return [h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in modules)]


@pytest.mark.parametrize(
    "code",
    [
        "import sylphrun",
        "from sylphrun import task, Retry, NonRetriableError, StepFailed, ChildRunFailed",
        "import sylphrun.cli",  # what `sylphrun --help` loads
        "import sylphrun.reload",  # the import check of every reload
    ],
)
def test_importing_the_api_loads_no_heavy_module(code):
    assert heavy_in(modules_after(code)) == []


def test_every_public_name_resolves_on_first_use():
    loaded = modules_after(
        "from sylphrun import *\n"
        "assert [n for n in __import__('sylphrun').__all__ if n not in globals()] == []\n"
        "from sylphrun import Context, RunHandle, BatchHandle, RunResult\n"
        "import sylphrun.runtime.context, sylphrun.trigger\n"
        "assert Context is sylphrun.runtime.context.Context\n"
        "assert RunHandle is sylphrun.trigger.RunHandle"
    )
    assert "sylphrun.trigger" in loaded  # the names are the real objects, loaded on demand


def test_public_api_and_submodules_import_as_before():
    from sylphrun import Task, model, task
    from sylphrun.define import task as defined

    assert task is defined and Task.__module__ == "sylphrun.define"
    assert model.__name__ == "sylphrun.model"
    assert set(sylphrun.__all__) <= set(dir(sylphrun))
    with pytest.raises(AttributeError, match="no_such_name"):
        sylphrun.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        from sylphrun import no_such_name  # noqa: F401


CONSOLE_SCRIPT = """
import sys
from sylphrun.cli import main
if __name__ == "__main__":
    from sylphrun.cli import _present_as_python_m
    _present_as_python_m()  # what main() does first
    import multiprocessing
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print(pool.apply(eval, ("sorted(m for m in __import__('sys').modules"
                                " if m in ('typer', 'sylphrun.cli'))",)))
"""


def test_processes_spawned_from_the_console_script_do_not_import_the_cli(tmp_path):
    # The console script pip writes, and a spawned child as the supervisor starts workers.
    script = tmp_path / "sylphrun"
    script.write_text(CONSOLE_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
