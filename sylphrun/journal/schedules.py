"""The schedules' state in the journal: which slots are settled, the last tick, paused.

The slots themselves are computed outside (`sylphrun.schedules`, pure logic); here a
tick's run and the schedule's new state are written in one transaction, and only for
slots after what the journal says is settled: a supervisor with a stale view fires
nothing twice. The idempotency key `schedule:<task>:<slot>` makes a second run of one
slot impossible as well (a unique index), whoever fires it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sylphrun.journal.connection import Connection
from sylphrun.journal.transitions import insert_runs
from sylphrun.journal.types import Created, ScheduleState, ScheduleTick


def schedule_states(conn: Connection) -> dict[str, ScheduleState]:
    """Every schedule's state, by task id, with its last run's status."""
    with conn.read() as db:
        rows = db.execute(
            "SELECT s.task_id, s.settled_through, s.last_slot, s.last_run_id, r.status,"
            " s.paused, s.updated_at FROM schedules s LEFT JOIN runs r ON r.id = s.last_run_id"
            " ORDER BY s.task_id"
        ).fetchall()
    return {
        row[0]: ScheduleState(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6])
        for row in rows
    }


def start_schedule(conn: Connection, task_id: str, *, settled_through: float, now: float) -> bool:
    """A schedule seen for the first time starts settled through `settled_through` (its
    past slots are not missed ones: it did not exist then). False if it has a state."""
    with conn.write() as db:
        cur = db.execute(
            "INSERT INTO schedules (task_id, settled_through, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (task_id, settled_through, now),
        )
        return cur.rowcount == 1


def fire_schedule(
    conn: Connection,
    task_id: str,
    ticks: Sequence[ScheduleTick],
    *,
    settled_through: float,
    now: float,
) -> list[Created]:
    """Enqueue the ticks whose slot is after the settled time, and settle the schedule
    through `settled_through` (never backwards), in one transaction. A paused schedule
    fires nothing and stays as it is."""
    with conn.write() as db:
        row = db.execute(
            "SELECT settled_through, paused FROM schedules WHERE task_id = ?", (task_id,)
        ).fetchone()
        settled, paused = (row[0], bool(row[1])) if row is not None else (float("-inf"), False)
        if paused:
            return []
        fresh = sorted((t for t in ticks if t.slot > settled), key=lambda t: t.slot)
        created = [Created(*c) for c in insert_runs(db, [t.run for t in fresh], now)]
        last = (fresh[-1].slot, created[-1].run_id) if fresh else (None, None)
        db.execute(
            "INSERT INTO schedules (task_id, settled_through, last_slot, last_run_id, updated_at)"
            " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (task_id) DO UPDATE SET"
            " settled_through = MAX(settled_through, ?2),"
            " last_slot = COALESCE(?3, last_slot), last_run_id = COALESCE(?4, last_run_id),"
            " updated_at = ?5",
            (task_id, max(settled_through, settled), *last, now),
        )
        return created


def set_schedule_paused(conn: Connection, task_id: str, paused: bool, *, now: float) -> bool:
    """Pause or resume; returns whether that changed anything. Resuming settles the slots
    of the pause (they are skipped, not caught up: pausing meant "not now")."""
    with conn.write() as db:
        row = db.execute("SELECT paused FROM schedules WHERE task_id = ?", (task_id,)).fetchone()
        if row is not None and bool(row[0]) == paused:
            return False
        db.execute(
            "INSERT INTO schedules (task_id, settled_through, paused, updated_at)"
            " VALUES (?1, ?2, ?3, ?2) ON CONFLICT (task_id) DO UPDATE SET paused = ?3,"
            " settled_through = CASE WHEN ?3 THEN settled_through"
            " ELSE MAX(settled_through, ?2) END, updated_at = ?2",
            (task_id, now, int(paused)),
        )
        return True
