"""`sylphrun check-replay JOURNAL`: re-execute the recorded runs of a journal against the
current code without calling any step function, and report the first divergence of each
run (for CI, before deploying code that in-flight runs will resume on)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sylphrun.cli.common import JsonOpt, ProjectOpt, _config, _errors, app, fail


@app.command("check-replay")
@_errors
def check_replay(
    journal: Annotated[Path, typer.Argument(help="A journal file, or a copy of one (an export).")],
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Replay recorded runs against the current code; exit 1 if any diverges."""
    from sylphrun.discover import discover
    from sylphrun.journal import open_journal
    from sylphrun.render import dumps, safe
    from sylphrun.testing.replay_check import check_journal

    if not journal.is_file():
        fail(f"no journal at {journal}: give the path of a journal file (or a copy of one)")
    tasks = discover(_config(project))
    handle = open_journal(journal, create=False)
    try:
        checked, found = check_journal(handle, tasks)
    finally:
        handle.close()
    if as_json:
        typer.echo(
            dumps(
                {
                    "checked": checked,
                    "diverged": [
                        {"run_id": d.run_id, "task_id": d.task_id, "message": d.message}
                        for d in found
                    ],
                }
            )
        )
    else:
        for d in found:
            typer.echo(f"DIVERGED {safe(str(d))}")
        typer.echo(
            f"{checked} run(s) checked, {len(found)} diverged"
            if found
            else f"{checked} run(s) replay cleanly"
        )
    raise typer.Exit(1 if found else 0)
