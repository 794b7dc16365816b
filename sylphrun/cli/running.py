"""Commands that start things: trigger (and wait), worker, dev, dashboard, init."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from sylphrun.cli.common import (
    JournalOpt,
    JsonOpt,
    ProjectOpt,
    _config,
    _errors,
    _journal_exists,
    _note,
    _open_journal,
    _tasks,
    app,
    fail,
)


@app.command()
@_errors
def trigger(
    task: Annotated[str, typer.Argument(help="The task id.")],
    payload: Annotated[
        str | None,
        typer.Option("--payload", help="The payload, a JSON object ('-': read it from stdin)."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Reuse the run already started with this key."),
    ] = None,
    # None, not 0: a default that is not None costs Typer's coercion (pydantic) at start-up.
    priority: Annotated[
        int | None,
        typer.Option(
            "--priority", help="Higher starts first among runs ready at the same time (default 0)."
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Wait for the run to finish; exit 0 if it completed, 1 if not."
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="Wait at most S seconds (implies --wait); the run goes on after.",
            min=0,
        ),
    ] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """Start a run of TASK; prints its id, or with --wait its result."""
    from sylphrun import actions

    data = _payload_data(payload)  # validate before touching anything
    config = _config(project)
    # The tasks the workers registered in the journal; the project's code is imported only
    # when none did (and then no journal is created before the task is known).
    journal = _open_journal(config) if _journal_exists(config) else None
    try:
        notes: list[str] = []  # said once the run exists: a bad request gets one line
        tasks = actions.known_tasks(config, journal, want=task, note=notes.append)
        actions.require_task(tasks, task)
        if journal is None:
            journal = _open_journal(config, create=True)
        run_id, created = _trigger_run(
            config, journal, tasks, task, data, idempotency_key, priority, notes
        )
        _report_triggered(journal, run_id, created, notes, idempotency_key, wait, timeout, as_json)
    finally:
        if journal is not None:
            journal.close()


def _trigger_run(
    config, journal, tasks, task: str, data: dict, idempotency_key, priority, notes: list[str]
) -> tuple[str, bool]:
    """`trigger`'s run: its id, and whether it was created (not an existing or debounced one)."""
    from sylphrun import actions

    flow = actions.flow_needing_code(config, tasks, task, notes.append)
    return actions.trigger_run(
        journal,
        tasks,
        task,
        data,
        idempotency_key=idempotency_key,
        priority=priority or 0,
        flow=flow,
    )


def _report_triggered(
    journal,
    run_id: str,
    created: bool,
    notes: list[str],
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """What `trigger` says once the run exists: its notes, then the id (or the JSON), or
    with --wait the result."""
    # From here the run exists: Ctrl-C anywhere below (a note being printed, the wait)
    # must say that it goes on, not exit silently.
    try:
        if not created and idempotency_key is None:  # a debounced task
            notes.append(f"debounced: run {run_id}, not started yet, takes this payload")
        elif not created:  # every time, --wait and --json too: the run may be hours old
            notes.append(f"idempotency key {idempotency_key!r}: existing run {run_id}")
        for message in notes:
            _note(message)
        if not wait and timeout is None:
            if as_json:
                from sylphrun.render import dumps  # rich: only where it is needed

                status = "queued" if created else _status(journal, run_id)
                typer.echo(
                    dumps({"run_id": run_id, "status": status, "created": created}, indent=None)
                )
            else:
                typer.echo(run_id)
            return
        _wait_and_report(journal, run_id, timeout=timeout, as_json=as_json)
    except KeyboardInterrupt:
        typer.echo(f"stopped waiting; run {run_id} goes on (sylphrun show {run_id})", err=True)
        raise typer.Exit(130) from None


def _payload_data(payload: str | None) -> dict:
    """`--payload` as the run's payload: '-' reads stdin; empty is refused in one line."""
    from sylphrun import actions

    if payload == "-":
        payload = _read_stdin_payload()
    if payload is not None and not payload.strip():
        # An empty value is a mistake (an unset shell variable), not a request for {}.
        fail(
            "--payload is empty: give a JSON object like '{\"order_id\": 42}', or leave "
            "--payload out for {}"
        )
    return actions.parse_payload(payload, example="""--payload '{"order_id": 42}'""")


def _read_stdin_payload() -> str:
    from sylphrun.trigger import MAX_PAYLOAD_BYTES

    # One byte past the limit is enough to refuse it: never read an endless pipe whole.
    data = sys.stdin.buffer.read(MAX_PAYLOAD_BYTES + 1)
    return data.decode("utf-8", "surrogateescape")


def _status(journal, run_id: str) -> str:

    return journal.get_run(run_id).status


def _wait_and_report(journal, run_id: str, *, timeout: float | None, as_json: bool) -> None:
    import asyncio

    from sylphrun import model
    from sylphrun.render import dumps, safe
    from sylphrun.trigger import wait_for_result

    def no_workers() -> None:
        typer.echo(
            f"waiting for {run_id}: no workers are running on this journal; start "
            "`sylphrun dev` or `sylphrun worker` in another terminal",
            err=True,
        )

    try:
        result = asyncio.run(
            wait_for_result(journal, run_id, timeout=timeout, on_no_workers=no_workers)
        )
    except TimeoutError:
        run = journal.get_run(run_id)
        if as_json:
            typer.echo(
                dumps(
                    {"run_id": run_id, "status": run.status, "output": None, "error": None},
                    indent=None,
                )
            )
        typer.echo(
            f"error: gave up waiting after {timeout:g} s; run {run_id} is {run.status} "
            f"(`sylphrun show {run_id}` follows it)",
            err=True,
        )
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(
            dumps(
                {
                    "run_id": result.run_id,
                    "status": result.status,
                    "output": result.output,
                    "error": result.error,
                },
                indent=None,
            )
        )
    elif result.ok:
        typer.echo(f"{run_id} completed")
        typer.echo(safe(json.dumps(result.output, indent=2, ensure_ascii=False)))
    else:
        typer.echo(f"{run_id} {result.status}: {safe(result.error or '')}", err=True)
    raise typer.Exit(0 if result.status == model.COMPLETED else 1)


@app.command()
@_errors
def worker(
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", "-w", help="Worker processes (default: config, else CPU count).", min=1
        ),
    ] = None,
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """Run workers (no reload, no dashboard) until SIGINT or SIGTERM."""
    from sylphrun.runtime.serve import serve_workers, sigterm_stops_this_process

    sigterm_stops_this_process()
    config = _config(project)
    _tasks(config)  # an import error stops us here, before any process starts
    raise typer.Exit(serve_workers(config, workers=workers, echo=lambda m: typer.echo(m, err=True)))


@app.command()
@_errors
def dev(
    no_tui: Annotated[
        bool,
        typer.Option(
            "--no-tui", help="Print one line per run and step event instead of the dashboard."
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", "-w", help="Worker processes (default: config, else CPU count).", min=1
        ),
    ] = None,
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """Workers + hot reload + the live dashboard: the local development loop."""
    from sylphrun.devserver import run_dev
    from sylphrun.errors import DiscoveryError
    from sylphrun.runtime.serve import sigterm_stops_this_process

    sigterm_stops_this_process()
    config = _config(project)
    try:
        code = run_dev(
            config, workers=workers, tui=not no_tui, echo=lambda m: typer.echo(m, err=True)
        )
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
def dashboard(project: ProjectOpt = None, journal_setting: JournalOpt = None) -> None:
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
    folder: Annotated[
        Path, typer.Argument(help="Where to create the project (default: here).", file_okay=False)
    ] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a sylphrun.toml and an example task (steps, a child run, a retry)."""
    from sylphrun.scaffold import write_project

    written = write_project(folder.resolve(), force=force)
    for path in written:
        typer.echo(f"wrote {path}")
    where = "" if folder.resolve() == Path.cwd() else f"cd {folder} && "
    typer.echo(f"next: {where}sylphrun dev   (then: sylphrun trigger welcome --wait)")
