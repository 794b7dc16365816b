"""What every `sylphrun` command shares: the Typer app, the common options, and the one
place (`_errors`) where a user's mistake becomes a line on stderr and an exit code.

Errors a user can cause become one line on stderr and exit code 2 here, in one place
(`_errors`). Exit codes: 0 success (run completed), 1 the run failed or was cancelled,
2 bad usage or bad input. Heavy modules (Textual, watchfiles, the runtime) are imported
inside the commands that need them, so `--help` and shell completion stay fast.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sylphrun.errors import SylphrunError
from sylphrun.typer_compat import LazyCoercionGroup

app = typer.Typer(
    cls=LazyCoercionGroup,
    name="sylphrun",
    help="Durable Python workflows, run locally over a SQLite journal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals can hold secrets; never print them
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])

ProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project",
        "-p",
        help="Project folder (default: the current folder).",
        file_okay=False,
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]

_global_project: Path | None = None
_journal_override: str | None = None


def _take_journal_override(value: str | None) -> str | None:
    # A callback, not a parameter each command passes on: `_config` is the one place a
    # command learns its journal, so one parameter in each signature is all it takes.
    # `_main` resets it on every invocation, so no value leaks into the next one (tests run
    # many in one process); set only when given, so `schedules --journal X pause T` holds.
    global _journal_override
    if value is not None:
        _journal_override = value
    return value


JournalOpt = Annotated[
    str | None,
    typer.Option(
        "--journal",
        help="The journal: a file path or a postgresql:// URL (default: the config's `journal`).",
        callback=_take_journal_override,
        show_default=False,
    ),
]


def _errors(fn: F) -> F:
    """User mistakes become `error: <one line>` on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SylphrunError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def fail(message: str, code: int = 2) -> None:
    from sylphrun.render import safe

    typer.echo(f"error: {safe(message)}", err=True)
    raise typer.Exit(code)


def _console(stderr: bool = False):
    from sylphrun.render import console

    return console(stderr=stderr)


def _config(project: Path | None, *, required: bool = True):
    from sylphrun.config import JOURNAL_OPTION_ENV, load_config

    config = load_config(project or _global_project, required=required)
    if _journal_override is None:
        os.environ.pop(JOURNAL_OPTION_ENV, None)  # a parent command's is not this one's
        return config
    return _with_journal(config, _journal_override)


def _with_journal(config, value: str):
    """`config` with the journal given by `--journal`: a URL as given, a path from the
    current folder (where the user typed it), not from the project's."""
    import dataclasses

    from sylphrun.config import JOURNAL_OPTION_ENV, is_server_journal, journal_location
    from sylphrun.errors import ConfigError

    if "://" in value and not is_server_journal(value):
        raise ConfigError(
            f"--journal {value.split('://')[0]}://...: not a journal; give a "
            "file path or a postgresql://user@host:5432/db URL"
        )
    if not value.strip():
        raise ConfigError("--journal is empty: give a file path or a postgresql:// URL")
    journal = journal_location(value, Path.cwd())
    os.environ[JOURNAL_OPTION_ENV] = str(journal)  # for the processes the command starts
    return dataclasses.replace(config, journal=journal)


def _tasks(config):
    """The project's tasks, imported: for the commands that run or show their code
    (`worker`, `dashboard`); the others read the registry (`actions.known_tasks`)."""
    from sylphrun.discover import discover

    return discover(config)


def _require_known_task(config, task_id: str) -> None:
    """`unknown task` (exit 2) unless the project has `task_id` (registered by a worker, or
    found by importing the code when none registered). Only asked when no run of it was
    found, so listing never imports user code; a task module that does not import leaves
    the question open rather than failing the listing."""
    from sylphrun import actions

    journal = _open_journal(config) if _journal_exists(config) else None
    try:
        tasks = actions.known_tasks(config, journal, want=task_id)
    except SylphrunError:
        return
    finally:
        if journal is not None:
            journal.close()
    actions.require_task(tasks, task_id)


def _open_journal(config, *, create: bool = False):
    from sylphrun.journal import open_journal

    return open_journal(config.journal, durability=config.durability, create=create)


def _journal_exists(config) -> bool:
    from sylphrun.config import is_server_journal

    # A server's journal is asked when opened (`create=False`: "no journal at" if none).
    return is_server_journal(config.journal) or Path(config.journal).exists()


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"sylphrun {version('sylphrun')}")
        raise typer.Exit(0)


@app.callback()
def _main(
    project: ProjectOpt = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    global _global_project, _journal_override
    _global_project = project
    _journal_override = None


def _note(message: str) -> None:
    typer.echo(f"note: {message}", err=True)


def _existing_journal(project: Path | None):
    config = _config(project)
    if not _journal_exists(config):
        fail(f"there is no journal at {config.journal} yet: no run has been triggered")
    return _open_journal(config)
