"""`sylphrun workers [--json]`: the workers alive on the journal, the host each runs on,
and the runs each holds now. With a PostgreSQL journal, workers on several machines share
one queue: this says which machine is doing what."""

from __future__ import annotations

import time
from typing import Any

import typer

from sylphrun.cli.common import (
    JournalOpt,
    JsonOpt,
    ProjectOpt,
    _config,
    _console,
    _errors,
    _journal_exists,
    _open_journal,
    app,
)


@app.command()
@_errors
def workers(
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """List the live workers: id, host, pid, since when, last heartbeat, the runs held."""
    from sylphrun.trigger import WORKER_STALE_AFTER

    config = _config(project)
    loads = []
    now = time.time()
    if _journal_exists(config):
        journal = _open_journal(config)
        try:
            loads = journal.worker_loads(now=now, stale_after=WORKER_STALE_AFTER)
        finally:
            journal.close()
    if as_json:
        from sylphrun.render import dumps

        typer.echo(dumps([worker_json(w) for w in loads]))
    elif not loads:
        typer.echo("no workers: start `sylphrun worker` (or `sylphrun dev`) on this journal")
    else:
        _console().print(workers_table(loads, now))


def worker_json(load: Any) -> dict[str, Any]:
    """One worker as `workers --json` prints it (times ISO-8601 UTC, runs by id)."""
    from sylphrun.render_time import iso

    return {
        "worker_id": load.worker_id,
        "host": load.host,
        "pid": load.pid,
        "started_at": iso(load.started_at),
        "heartbeat_at": iso(load.heartbeat_at),
        "runs": list(load.runs),
    }


def workers_table(loads: list[Any], now: float):
    """The workers as a table for a terminal (host names as `Text`, never markup)."""
    from rich.table import Table
    from rich.text import Text

    from sylphrun.render import one_line
    from sylphrun.render_time import local_time

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("WORKER", "HOST", "PID", "STARTED", "HEARTBEAT", "RUNS"):
        table.add_column(col)
    for w in loads:
        runs = ", ".join(w.runs[:3]) + (f" +{len(w.runs) - 3}" if len(w.runs) > 3 else "")
        table.add_row(
            Text(one_line(w.worker_id)),
            Text(one_line(w.host)),
            str(w.pid),
            local_time(w.started_at),
            f"{max(0.0, now - w.heartbeat_at):.0f}s ago",
            f"{len(w.runs)}  {runs}" if w.runs else "0",
        )
    return table
