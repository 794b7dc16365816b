"""The `sylphrun` command line: a thin layer over the library.

Errors a user can cause become one line on stderr and exit code 2 here, in one place
(`_errors`). Exit codes: 0 success (run completed), 1 the run failed or was cancelled,
2 bad usage or bad input. Heavy modules (Textual, watchfiles, the runtime) are imported
inside the commands that need them, so `--help` and shell completion stay fast.
"""

from __future__ import annotations

import functools
import json
import sys
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
    typer.Option("--project", "-p", help="Project folder (default: the current folder).",
                 file_okay=False, show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]

_global_project: Path | None = None


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
    from sylphrun.config import load_config

    return load_config(project or _global_project, required=required)


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

    conn = _open_journal(config) if _journal_exists(config) else None
    try:
        tasks = actions.known_tasks(config, conn, want=task_id)
    except SylphrunError:
        return
    finally:
        if conn is not None:
            conn.close()
    actions.require_task(tasks, task_id)


def _open_journal(config, *, create: bool = False):
    from sylphrun.journal import Connection

    return Connection(config.journal, durability=config.durability, create=create)


def _journal_exists(config) -> bool:
    return Path(config.journal).exists()


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"sylphrun {version('sylphrun')}")
        raise typer.Exit(0)


@app.callback()
def _main(
    project: ProjectOpt = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                          callback=_print_version, is_eager=True)] = False,
) -> None:
    global _global_project
    _global_project = project


# -- running -----------------------------------------------------------------------------


@app.command()
@_errors
def trigger(
    task: Annotated[str, typer.Argument(help="The task id.")],
    payload: Annotated[str | None, typer.Option("--payload", help="The payload, a JSON object ('-': read it from stdin).")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="Reuse the run already started with this key.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to finish; exit 0 if it completed, 1 if not.")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Wait at most S seconds (implies --wait); the run goes on after.", min=0)] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Start a run of TASK; prints its id, or with --wait its result."""
    from sylphrun import actions

    if payload == "-":
        payload = _read_stdin_payload()
    if payload is not None and not payload.strip():
        # An empty value is a mistake (an unset shell variable), not a request for {}.
        fail("--payload is empty: give a JSON object like '{\"order_id\": 42}', or leave "
             "--payload out for {}")
    data = actions.parse_payload(payload)  # validate before touching anything
    config = _config(project)
    # The tasks the workers registered in the journal; the project's code is imported only
    # when none did (and then no journal is created before the task is known).
    conn = _open_journal(config) if _journal_exists(config) else None
    try:
        notes: list[str] = []  # said once the run exists: a bad request gets one line
        tasks = actions.known_tasks(config, conn, want=task, note=notes.append)
        actions.require_task(tasks, task)
        if conn is None:
            conn = _open_journal(config, create=True)
        run_id, created = actions.trigger_run(conn, tasks, task, data, idempotency_key=idempotency_key)
        # From here the run exists: Ctrl-C anywhere below (a note being printed, the wait)
        # must say that it goes on, not exit silently.
        try:
            if not created:  # every time, --wait and --json too: the run may be hours old
                notes.append(f"idempotency key {idempotency_key!r}: existing run {run_id}")
            for message in notes:
                _note(message)
            if not wait and timeout is None:
                if as_json:
                    from sylphrun.render import dumps  # rich: only where it is needed

                    typer.echo(dumps({"run_id": run_id, "status": "queued" if created else _status(conn, run_id),
                                      "created": created}, indent=None))
                else:
                    typer.echo(run_id)
                return
            _wait_and_report(conn, run_id, timeout=timeout, as_json=as_json)
        except KeyboardInterrupt:
            typer.echo(f"stopped waiting; run {run_id} goes on (sylphrun show {run_id})",
                       err=True)
            raise typer.Exit(130) from None
    finally:
        if conn is not None:
            conn.close()


def _note(message: str) -> None:
    typer.echo(f"note: {message}", err=True)


def _read_stdin_payload() -> str:
    from sylphrun.trigger import MAX_PAYLOAD_BYTES

    # One byte past the limit is enough to refuse it: never read an endless pipe whole.
    data = sys.stdin.buffer.read(MAX_PAYLOAD_BYTES + 1)
    return data.decode("utf-8", "surrogateescape")


def _status(conn, run_id: str) -> str:
    from sylphrun.journal import queries

    return queries.get_run(conn, run_id).status


def _wait_and_report(conn, run_id: str, *, timeout: float | None, as_json: bool) -> None:
    import asyncio

    from sylphrun import model
    from sylphrun.journal import queries
    from sylphrun.render import dumps, safe
    from sylphrun.trigger import wait_for_result

    def no_workers() -> None:
        typer.echo(
            f"waiting for {run_id}: no workers are running on this journal; start "
            "`sylphrun dev` or `sylphrun worker` in another terminal", err=True)

    try:
        result = asyncio.run(wait_for_result(conn, run_id, timeout=timeout, on_no_workers=no_workers))
    except TimeoutError:
        run = queries.get_run(conn, run_id)
        if as_json:
            typer.echo(dumps({"run_id": run_id, "status": run.status, "output": None, "error": None},
                             indent=None))
        typer.echo(f"error: gave up waiting after {timeout:g} s; run {run_id} is {run.status} "
                   f"(`sylphrun show {run_id}` follows it)", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(dumps({"run_id": result.run_id, "status": result.status,
                          "output": result.output, "error": result.error}, indent=None))
    elif result.ok:
        typer.echo(f"{run_id} completed")
        typer.echo(safe(json.dumps(result.output, indent=2, ensure_ascii=False)))
    else:
        typer.echo(f"{run_id} {result.status}: {safe(result.error or '')}", err=True)
    raise typer.Exit(0 if result.status == model.COMPLETED else 1)


@app.command()
@_errors
def worker(
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Worker processes (default: config, else CPU count).", min=1)] = None,
    project: ProjectOpt = None,
) -> None:
    """Run workers (no reload, no dashboard) until SIGINT or SIGTERM."""
    from sylphrun.runtime.serve import serve_workers

    config = _config(project)
    _tasks(config)  # an import error stops us here, before any process starts
    raise typer.Exit(serve_workers(config, workers=workers, echo=lambda m: typer.echo(m, err=True)))


@app.command()
@_errors
def dev(
    no_tui: Annotated[bool, typer.Option("--no-tui", help="Print one line per run and step event instead of the dashboard.")] = False,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Worker processes (default: config, else CPU count).", min=1)] = None,
    project: ProjectOpt = None,
) -> None:
    """Workers + hot reload + the live dashboard: the local development loop."""
    from sylphrun.devserver import run_dev
    from sylphrun.errors import DiscoveryError

    config = _config(project)
    try:
        code = run_dev(config, workers=workers, tui=not no_tui,
                       echo=lambda m: typer.echo(m, err=True))
    except DiscoveryError as exc:
        # In the development loop, the user's traceback (their frames only) helps more
        # than the one line the other commands give.
        tb = getattr(exc, "user_traceback", None)
        if tb:
            typer.echo(tb.rstrip(), err=True)
        raise
    raise typer.Exit(code)


@app.command()
@_errors
def dashboard(project: ProjectOpt = None) -> None:
    """The dashboard alone, attached to the journal (runs executed elsewhere show live)."""
    from sylphrun.dashboard.app import run_dashboard
    from sylphrun.errors import SylphrunError as _Err

    config = _config(project)
    try:
        tasks = _tasks(config)
    except _Err as exc:  # still useful without tasks: show runs, note the import error
        typer.echo(f"note: {exc}", err=True)
        tasks = None
    run_dashboard(config, tasks=tasks)


@app.command()
@_errors
def init(
    folder: Annotated[Path, typer.Argument(help="Where to create the project (default: here).", file_okay=False)] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a sylphrun.toml and an example task (steps, a child run, a retry)."""
    from sylphrun.scaffold import write_project

    written = write_project(folder.resolve(), force=force)
    for path in written:
        typer.echo(f"wrote {path}")
    where = "" if folder.resolve() == Path.cwd() else f"cd {folder} && "
    typer.echo(f"next: {where}sylphrun dev   (then: sylphrun trigger welcome --wait)")


# -- inspecting --------------------------------------------------------------------------


@app.command()
@_errors
def runs(
    status: Annotated[str | None, typer.Option("--status", help="Only runs in this state.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Only runs of this task.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many (newest first).", min=1)] = 50,
    all_runs: Annotated[bool, typer.Option("--all", help="Child runs too (by default only the runs you triggered).")] = False,
    parent: Annotated[str | None, typer.Option("--parent", help="Only the children of this run.")] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """List runs, newest first: the top-level ones, each with a summary of its children."""
    from sylphrun import model
    from sylphrun.journal import queries
    from sylphrun.render import dumps, run_json, runs_table

    if status is not None and status not in model.RUN_STATES:
        fail(f"unknown status {status!r}; one of: {', '.join(model.RUN_STATES)}")
    config = _config(project)
    if not _journal_exists(config):
        if parent is not None:
            fail(f"no run {parent!r}: there is no journal at {config.journal} yet")
        if task is not None:
            _require_known_task(config, task)
        typer.echo("[]" if as_json else "no runs yet (no journal at " + str(config.journal) + ")")
        return
    conn = _open_journal(config)
    try:
        parent_id = queries.resolve_run_id(conn, parent) if parent is not None else None
        found = queries.list_runs(conn, status=status, task_id=task, limit=limit,
                                  parent_run_id=parent_id,
                                  top_level_only=not all_runs and parent_id is None)
    finally:
        conn.close()
    if not found and task is not None:
        _require_known_task(config, task)
    if as_json:
        typer.echo(dumps([run_json(r) for r in found]))
    elif not found:
        typer.echo("no runs match")
    else:
        _console().print(runs_table(found))


@app.command()
@_errors
def show(
    run: Annotated[str, typer.Argument(help="A run id (or a unique prefix of one).")],
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """A run with its step tree, attempts and children."""
    from sylphrun.journal import queries
    from sylphrun.render import dumps, show_json, show_text

    config = _config(project)
    if not _journal_exists(config):
        fail(f"no run {run!r}: there is no journal at {config.journal} yet")
    conn = _open_journal(config)
    try:
        run_id = queries.resolve_run_id(conn, run)
        record = queries.get_run(conn, run_id)
        parts = (record, queries.steps_of(conn, run_id), queries.children_of(conn, run_id),
                 queries.run_attempts(conn, run_id), queries.logs_of(conn, run_id))
    finally:
        conn.close()
    if as_json:
        typer.echo(dumps(show_json(*parts)))
    else:
        _console().print(show_text(*parts))


@app.command()
@_errors
def tasks(as_json: JsonOpt = False, project: ProjectOpt = None) -> None:
    """The tasks the workers registered (the project's code is imported only if none did)."""
    from sylphrun import actions
    from sylphrun.views import task_rows, tasks_text

    config = _config(project)
    conn = _open_journal(config) if _journal_exists(config) else None
    try:
        found = actions.known_tasks(config, conn, note=_note)
    finally:
        if conn is not None:
            conn.close()
    rows = task_rows(found, config.project_dir)
    if as_json:
        from sylphrun.render import dumps

        typer.echo(dumps(rows))
    elif not rows:
        typer.echo(f"no tasks found in {', '.join(config.tasks) or '(no `tasks` configured)'}")
    else:
        _console().print(tasks_text(found, rows))


# -- acting on runs ------------------------------------------------------------------------


@app.command()
@_errors
def retry(
    run: Annotated[str, typer.Argument(help="A failed or cancelled run.")],
    project: ProjectOpt = None,
) -> None:
    """Resume a failed or cancelled run as a new attempt; completed steps are kept."""
    from sylphrun import actions

    conn = _existing_journal(project)
    try:
        run_id, attempt = actions.retry_run(conn, run)
    finally:
        conn.close()
    typer.echo(f"{run_id} queued again (attempt {attempt}); completed steps will be skipped")


@app.command()
@_errors
def replay(
    run: Annotated[str, typer.Argument(help="The run to replay.")],
    from_step: Annotated[str | None, typer.Option("--from-step", help="Copy the steps before STEP from the old run; run STEP and later again.")] = None,
    project: ProjectOpt = None,
) -> None:
    """Start a new run with the same payload (optionally reusing steps before --from-step)."""
    from sylphrun import actions

    conn = _existing_journal(project)
    try:
        new_id = actions.replay_run(conn, run, from_step=from_step)
    finally:
        conn.close()
    typer.echo(new_id)


@app.command()
@_errors
def cancel(
    run: Annotated[str, typer.Argument(help="The run to cancel (its unfinished children too).")],
    project: ProjectOpt = None,
) -> None:
    """Cancel a run and its unfinished children."""
    from sylphrun import actions

    conn = _existing_journal(project)
    try:
        cancelled = actions.cancel_run(conn, run)
    finally:
        conn.close()
    extra = f" and {len(cancelled) - 1} unfinished child run(s)" if len(cancelled) > 1 else ""
    typer.echo(f"cancelled {cancelled[0]}{extra}")


@app.command()
@_errors
def wake(
    run: Annotated[str, typer.Argument(help="A sleeping run, or one waiting for a retry.")],
    project: ProjectOpt = None,
) -> None:
    """End a run's durable sleep, or its retry back-off, now (journaled on the run)."""
    from sylphrun import actions

    conn = _existing_journal(project)
    try:
        run_id, what = actions.wake_run(conn, run)
    finally:
        conn.close()
    typer.echo(f"woke run {run_id}: {what}")


def _existing_journal(project: Path | None):
    config = _config(project)
    if not _journal_exists(config):
        fail(f"there is no journal at {config.journal} yet: no run has been triggered")
    return _open_journal(config)


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
        if getattr(exc, "exit_code", None) != 2 or not callable(getattr(exc, "format_message", None)):
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


if __name__ == "__main__":
    main()
    sys.exit(0)
