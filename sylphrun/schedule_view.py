"""What `sylphrun schedules` shows (and the dashboard's Schedules view): one row per
scheduled task, from the registry (the schedule) and the journal (its state)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sylphrun import model
from sylphrun.journal.types import ScheduleState
from sylphrun.render import iso
from sylphrun.schedules import Schedule


def scheduled(tasks: Mapping[str, model.TaskRecord]) -> dict[str, Schedule]:
    """The tasks that have a schedule, by id, sorted."""
    out = {}
    for task_id in sorted(tasks):
        schedule = Schedule.from_json(tasks[task_id].options.get("schedule"))
        if schedule is not None:
            out[task_id] = schedule
    return out


def schedule_rows(
    tasks: Mapping[str, model.TaskRecord], states: Mapping[str, ScheduleState], now: float
) -> list[dict[str, Any]]:
    """`schedules --json`: task, expression, next fire time (null while paused), last run."""
    rows = []
    for task_id, schedule in scheduled(tasks).items():
        state = states.get(task_id)
        paused = bool(state and state.paused)
        after = max(now, state.settled_through) if state else now
        upcoming = None if paused else schedule.next_slot(after)
        rows.append(
            {
                "task": task_id,
                "expression": schedule.expression,
                "tz": schedule.tz,
                "catchup": schedule.catchup,
                "paused": paused,
                "next_fire_at": iso(upcoming) if upcoming not in (None, float("inf")) else None,
                "last_scheduled_at": iso(state.last_slot) if state else None,
                "last_run_id": state.last_run_id if state else None,
                "last_run_status": state.last_run_status if state else None,
            }
        )
    return rows


def schedules_table(rows: list[dict[str, Any]]):
    """The rows as a table for a terminal (user text as `Text`, never markup)."""
    from rich.table import Table
    from rich.text import Text

    from sylphrun.render import one_line

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("TASK", "SCHEDULE", "NEXT", "LAST RUN", "STATUS"):
        table.add_column(col)
    for r in rows:
        what = Schedule(r["expression"], r["tz"], r["catchup"]).describe()
        if r["catchup"] != "latest":
            what += f", catchup={r['catchup']}"
        last = f"{_short(r['last_scheduled_at'])} {r['last_run_id']}" if r["last_run_id"] else "-"
        table.add_row(
            Text(one_line(r["task"])),
            Text(one_line(what)),
            "paused" if r["paused"] else _short(r["next_fire_at"]) or "never",
            last,
            r["last_run_status"] or "-",
        )
    return table


def _short(stamp: str | None) -> str:
    """`2026-11-29T03:00:00.000Z` as `2026-11-29 03:00:00Z`: the rows stay narrow."""
    if stamp is None:
        return ""
    return stamp.replace("T", " ").replace(".000Z", "Z")
