"""Commands that act on a run: retry, replay, cancel, wake (through `actions`)."""

from __future__ import annotations

from typing import Annotated

import typer

from sylphrun.cli.common import (
    JournalOpt,
    ProjectOpt,
    _errors,
    _existing_journal,
    app,
)


@app.command()
@_errors
def retry(
    run: Annotated[str, typer.Argument(help="A failed or cancelled run.")],
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """Resume a failed or cancelled run as a new attempt; completed steps are kept."""
    from sylphrun import actions

    journal = _existing_journal(project)
    try:
        run_id, attempt = actions.retry_run(journal, run)
    finally:
        journal.close()
    typer.echo(f"{run_id} queued again (attempt {attempt}); completed steps will be skipped")


@app.command()
@_errors
def replay(
    run: Annotated[str, typer.Argument(help="The run to replay.")],
    from_step: Annotated[
        str | None,
        typer.Option(
            "--from-step",
            help="Copy the steps before STEP from the old run; run STEP and later again.",
        ),
    ] = None,
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """Start a new run with the same payload (optionally reusing steps before --from-step)."""
    from sylphrun import actions

    journal = _existing_journal(project)
    try:
        new_id = actions.replay_run(journal, run, from_step=from_step)
    finally:
        journal.close()
    typer.echo(new_id)


@app.command()
@_errors
def cancel(
    run: Annotated[str, typer.Argument(help="The run to cancel (its unfinished children too).")],
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """Cancel a run and its unfinished children."""
    from sylphrun import actions

    journal = _existing_journal(project)
    try:
        cancelled = actions.cancel_run(journal, run)
    finally:
        journal.close()
    extra = f" and {len(cancelled) - 1} unfinished child run(s)" if len(cancelled) > 1 else ""
    typer.echo(f"cancelled {cancelled[0]}{extra}")


@app.command()
@_errors
def wake(
    run: Annotated[str, typer.Argument(help="A sleeping run, or one waiting for a retry.")],
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """End a run's durable sleep, or its retry back-off, now (journaled on the run)."""
    from sylphrun import actions

    journal = _existing_journal(project)
    try:
        run_id, what = actions.wake_run(journal, run)
    finally:
        journal.close()
    typer.echo(f"woke run {run_id}: {what}")
