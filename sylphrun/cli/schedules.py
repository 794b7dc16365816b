"""`sylphrun schedules [--json]`, `schedules pause TASK`, `schedules resume TASK`.

Listing reads the registry (the schedules, as the workers imported them) and the journal
(their state); it never imports the project's code unless no worker ever registered.
Pause and resume are kept in the journal, so they survive restarts of every process.
"""

from __future__ import annotations

import time
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
    app,
)

schedules_app = typer.Typer(
    name="schedules",
    invoke_without_command=True,
    no_args_is_help=False,
    help="Scheduled tasks: next fire time, last run; pause and resume them.",
    rich_markup_mode=None,
)
app.add_typer(schedules_app)

TaskArg = Annotated[str, typer.Argument(help="A scheduled task's id.")]


@schedules_app.callback()
@_errors
def schedules(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """List the scheduled tasks: schedule, next fire time, last run and its status."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = project  # `schedules --project DIR pause TASK` means that project too
        return
    from sylphrun import actions
    from sylphrun.schedule_view import schedule_rows, schedules_table

    config = _config(project)
    journal = _open_journal(config) if _journal_exists(config) else None
    try:
        tasks = actions.known_tasks(config, journal, note=_note)
        states = journal.schedule_states() if journal is not None else {}
    finally:
        if journal is not None:
            journal.close()
    rows = schedule_rows(tasks, states, time.time())
    if as_json:
        from sylphrun.render import dumps

        typer.echo(dumps(rows))
    elif not rows:
        typer.echo('no scheduled tasks (`@task(..., schedule="0 3 * * *")` makes one)')
    else:
        _console().print(schedules_table(rows))


@schedules_app.command()
@_errors
def pause(
    ctx: typer.Context,
    task: TaskArg,
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """Stop firing a task's schedule until `resume` (kept in the journal)."""
    _set_paused(task, True, project or ctx.obj)


@schedules_app.command()
@_errors
def resume(
    ctx: typer.Context,
    task: TaskArg,
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """Fire a paused schedule again, from its next slot (the paused ones are skipped)."""
    _set_paused(task, False, project or ctx.obj)


def _set_paused(task_id: str, paused: bool, project) -> None:
    from sylphrun import actions
    from sylphrun.errors import ScheduleError
    from sylphrun.render import safe
    from sylphrun.schedule_view import scheduled

    config = _config(project)
    journal = _open_journal(config) if _journal_exists(config) else None
    try:
        tasks = actions.known_tasks(config, journal, want=task_id, note=_note)
        actions.require_task(tasks, task_id)
        if task_id not in scheduled(tasks):
            raise ScheduleError(
                f"task {task_id!r} has no schedule; only tasks defined with "
                "`schedule=` can be paused (`sylphrun schedules` lists them)"
            )
        if journal is None:  # checked first: bad input writes nothing, not even a journal
            journal = _open_journal(config, create=True)
        changed = journal.set_schedule_paused(task_id, paused, now=time.time())
    finally:
        if journal is not None:
            journal.close()
    word = "paused" if paused else "resumed"
    if changed:
        hint = f" (`sylphrun schedules resume {task_id}` to resume)" if paused else ""
        typer.echo(safe(f"{word} the schedule of {task_id}{hint}"))
    else:
        state = "was already paused" if paused else "is not paused"
        typer.echo(safe(f"the schedule of {task_id} {state}"))
