"""`sylphrun dev --no-tui`: one coloured line per run and step event, read from the journal.

Reading the journal's events table (not the supervisor's in-process state) means the log
shows exactly what a dashboard would, including runs executed by other processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rich.text import Text

from sylphrun import model
from sylphrun.journal import Connection, queries
from sylphrun.render import STATUS_STYLE, STEP_STYLE, duration, local_time, safe


def event_line(conn: Connection, event: tuple[int, float, str, str, str | None],
               tasks: dict[str, str]) -> Text | None:
    _, at, run_id, kind, step_key = event
    if kind == "log":
        return None
    task_id = tasks.get(run_id)
    if task_id is None:
        try:
            run = queries.get_run(conn, run_id)
        except Exception:
            return None
        task_id = tasks[run_id] = run.task_id
    line = Text(f"{local_time(at)} ", style="dim")
    what, _, status = kind.partition(".")
    if what == "run":
        symbol, style = STATUS_STYLE.get(status, ("·", ""))
        line.append(f"{symbol} ", style=style)
        line.append(run_id, style="bold")
        line.append(f" {safe(task_id)} ", style="cyan")
        line.append(status, style=style)
        if status in (model.FAILED, model.CANCELLED):
            run = queries.get_run(conn, run_id)
            line.append(f": {safe(run.error or '')}", style=style)
    else:
        symbol, style = STEP_STYLE.get(status, ("·", ""))
        line.append(f"  {symbol} ", style=style)
        line.append(f"{run_id} ", style="dim")
        line.append(safe(step_key or ""), style="bold")
        line.append(f" {status}", style=style)
        if status in (model.STEP_COMPLETED, model.STEP_FAILED, model.STEP_RETRYING):
            step = next((s for s in queries.steps_of(conn, run_id, with_attempts=False)
                         if s.key == step_key), None)
            if step is not None:
                if step.kind != model.STEP:
                    line.append(f" [{step.kind}]", style="magenta")
                line.append(f" {duration(step.started_at, step.finished_at)}", style="dim")
                if step.error and status != model.STEP_COMPLETED:
                    line.append(f": {safe(step.error)}", style=style)
    return line


def follow(conn: Connection, stop: threading.Event, emit: Callable[[Text], None],
           *, interval: float = 0.05, from_start: bool = False) -> None:
    """Emit a line for every new event until `stop` is set."""
    last = 0 if from_start else queries.last_event_id(conn)
    version = None
    tasks: dict[str, str] = {}
    while not stop.is_set():
        v = conn.data_version()
        if v != version:
            version = v
            while True:
                events = queries.events_since(conn, last, limit=1000)
                for event in events:
                    last = event[0]
                    line = event_line(conn, event, tasks)
                    if line is not None:
                        emit(line)
                if len(events) < 1000:
                    break
        stop.wait(interval)
