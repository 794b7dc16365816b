"""The schedules' state on PostgreSQL: the twin of `journal.schedules`.

A slot fires once however many supervisors check at once, on any host: `fire_schedule`
locks the schedule's row (created first if missing, so there is a row to lock) before it
reads what is settled; a second supervisor waits, then reads the first one's settled
time and fires nothing again. The idempotency key `schedule:<task>:<slot>` stays the
second guard.
"""

from __future__ import annotations

from collections.abc import Sequence

from sylphrun.journal.postgres.transitions import Cursor, insert_runs
from sylphrun.journal.types import Created, ScheduleState, ScheduleTick


def schedule_states(cur: Cursor) -> dict[str, ScheduleState]:
    cur.execute(
        "SELECT s.task_id, s.settled_through, s.last_slot, s.last_run_id, r.status,"
        " s.paused, s.updated_at FROM schedules s LEFT JOIN runs r ON r.id = s.last_run_id"
        " ORDER BY s.task_id"
    )
    return {
        row[0]: ScheduleState(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6])
        for row in cur.fetchall()
    }


def start_schedule(cur: Cursor, task_id: str, *, settled_through: float, now: float) -> bool:
    cur.execute(
        "INSERT INTO schedules (task_id, settled_through, updated_at)"
        " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (task_id, settled_through, now),
    )
    return cur.rowcount == 1


def fire_schedule(
    cur: Cursor, task_id: str, ticks: Sequence[ScheduleTick], *, settled_through: float, now: float
) -> list[Created]:
    # A missing state is created settled at -infinity (as SQLite reads a missing row) so
    # that there is a row to lock; the upsert at the end gives it its real values.
    cur.execute(
        "INSERT INTO schedules (task_id, settled_through, updated_at)"
        " VALUES (%s, '-infinity', %s) ON CONFLICT DO NOTHING",
        (task_id, now),
    )
    cur.execute(
        "SELECT settled_through, paused FROM schedules WHERE task_id = %s FOR UPDATE", (task_id,)
    )
    settled, paused = cur.fetchone()
    if paused:
        return []
    fresh = sorted((t for t in ticks if t.slot > settled), key=lambda t: t.slot)
    created = [Created(*c) for c in insert_runs(cur, [t.run for t in fresh], now)]
    last = (fresh[-1].slot, created[-1].run_id) if fresh else (None, None)
    cur.execute(
        "UPDATE schedules SET settled_through = GREATEST(settled_through, %s),"
        " last_slot = COALESCE(%s, last_slot), last_run_id = COALESCE(%s, last_run_id),"
        " updated_at = %s WHERE task_id = %s",
        (max(settled_through, settled), *last, now, task_id),
    )
    return created


def set_schedule_paused(cur: Cursor, task_id: str, paused: bool, *, now: float) -> bool:
    cur.execute(
        "INSERT INTO schedules (task_id, settled_through, paused, updated_at)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (task_id, now, int(paused), now),
    )
    if cur.fetchone() is not None:
        return True
    cur.execute("SELECT paused FROM schedules WHERE task_id = %s FOR UPDATE", (task_id,))
    if bool(cur.fetchone()[0]) == paused:
        return False
    cur.execute(
        "UPDATE schedules SET paused = %s, settled_through = CASE WHEN %s THEN settled_through"
        " ELSE GREATEST(settled_through, %s) END, updated_at = %s WHERE task_id = %s",
        (int(paused), paused, now, now, task_id),
    )
    return True
