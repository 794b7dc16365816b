"""Commands that read runs and tasks: runs, show, tasks (they never write)."""

from __future__ import annotations

from typing import Annotated

import typer

from sylphrun.cli.common import (
    JournalOpt,
    JsonOpt,
    ProjectOpt,
    _config,
    _console,
    _errors,
    _journal_exists,
    _note,
    _open_journal,
    _require_known_task,
    app,
    fail,
)


@app.command()
@_errors
def runs(
    status: Annotated[str | None, typer.Option("--status", help="Only runs in this state.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Only runs of this task.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="At most this many (newest first).", min=1)
    ] = 50,
    all_runs: Annotated[
        bool, typer.Option("--all", help="Child runs too (by default only the runs you triggered).")
    ] = False,
    parent: Annotated[
        str | None, typer.Option("--parent", help="Only the children of this run.")
    ] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """List runs, newest first: the top-level ones, each with a summary of its children."""
    from sylphrun import model
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
    journal = _open_journal(config)
    try:
        parent_id = journal.resolve_run_id(parent) if parent is not None else None
        found = journal.list_runs(
            status=status,
            task_id=task,
            limit=limit,
            parent_run_id=parent_id,
            top_level_only=not all_runs and parent_id is None,
        )
    finally:
        journal.close()
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
    journal_setting: JournalOpt = None,
) -> None:
    """A run with its step tree, attempts and children."""
    import time

    from sylphrun.render import dumps, hold_text, show_json, show_text

    config = _config(project)
    if not _journal_exists(config):
        fail(f"no run {run!r}: there is no journal at {config.journal} yet")
    journal = _open_journal(config)
    try:
        run_id = journal.resolve_run_id(run)
        record = journal.get_run(run_id)
        parts = (
            record,
            journal.steps_of(run_id),
            journal.children_of(run_id),
            journal.run_attempts(run_id),
            journal.logs_of(run_id),
        )
        now = time.time()
        held = hold_text(journal.held_by(run_id, now=now), now)
    finally:
        journal.close()
    if as_json:
        typer.echo(dumps({**show_json(*parts), "held_by": held}))
    else:
        _console().print(show_text(*parts, held=held))


@app.command()
@_errors
def tasks(
    as_json: JsonOpt = False, project: ProjectOpt = None, journal_setting: JournalOpt = None
) -> None:
    """The tasks the workers registered (the project's code is imported only if none did)."""
    from sylphrun import actions
    from sylphrun.views import task_rows, tasks_text

    config = _config(project)
    journal = _open_journal(config) if _journal_exists(config) else None
    try:
        found = actions.known_tasks(config, journal, note=_note)
    finally:
        if journal is not None:
            journal.close()
    rows = task_rows(found, config.project_dir)
    if as_json:
        from sylphrun.render import dumps

        typer.echo(dumps(rows))
    elif not rows:
        typer.echo(f"no tasks found in {', '.join(config.tasks) or '(no `tasks` configured)'}")
    else:
        _console().print(tasks_text(found, rows))
