"""The `sylphrun` command line: a thin layer over the library.

Errors a user can cause become one line on stderr and exit code 2, in one place
(`common._errors`). Exit codes: 0 success (run completed), 1 the run failed or was
cancelled, 2 bad usage or bad input. Heavy modules (Textual, watchfiles, the runtime) are
imported inside the commands that need them, so `--help` and shell completion stay fast.

`common` holds the app and what the commands share; `running`, `inspecting` and `acting`
register their commands on it when imported (in this order: the order of `--help`).
"""

from __future__ import annotations

import sys

import typer

from sylphrun.cli.common import app

# Importing them registers their commands; this order is the order of `--help`.
# isort: off
from sylphrun.cli import running  # noqa: F401, E402
from sylphrun.cli import inspecting  # noqa: F401, E402
from sylphrun.cli import acting  # noqa: F401, E402
from sylphrun.cli import check_replay  # noqa: F401, E402
from sylphrun.cli import events  # noqa: F401, E402
from sylphrun.cli import schedules  # noqa: F401, E402
from sylphrun.cli import workers  # noqa: F401, E402
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """The console entry point: click's usage errors (a bad option value, a missing
    argument) become one line on stderr and exit 2, like every other bad input; click
    would print a usage block, and echo the user's raw text (escape sequences included)."""
    _present_as_python_m()
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:
        # By shape, not class: Typer 0.29 vendors its own click, older ones use click's.
        if getattr(exc, "exit_code", None) != 2 or not callable(
            getattr(exc, "format_message", None)
        ):
            raise
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            sys.exit(2)
        from sylphrun.render import safe

        message = " ".join(exc.format_message().split())
        where = ctx.command_path if ctx is not None else "sylphrun"
        typer.echo(f"error: {safe(message)} (see `{safe(where)} --help`)", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


def _present_as_python_m() -> None:
    """Run from the `sylphrun` console script, this process is `python -m sylphrun` by
    another name: say so in `__main__.__spec__`. A spawned worker re-runs the parent's
    main script unless it is a package's `__main__` module; re-running the console script
    would import this module and Typer in every worker, for nothing (measured: 20-40 ms
    of each worker's start on the dev VM, more when busy)."""
    import importlib.util

    script = sys.modules.get("__main__")
    if script is not None and script.__spec__ is None and getattr(script, "main", None) is main:
        script.__spec__ = importlib.util.find_spec("sylphrun.__main__")
