"""Which workers are alive, on which host, holding which runs, on PostgreSQL: the twin of
`journal.worker_loads` (`JournalReader.worker_loads`). Never writes."""

from __future__ import annotations

from sylphrun.journal.postgres.transitions import Cursor
from sylphrun.journal.types import WorkerLoad
from sylphrun.journal.worker_loads import loads_from_rows


def worker_loads(cur: Cursor, *, now: float, stale_after: float) -> list[WorkerLoad]:
    # SQLite's query (`journal.worker_loads`), ordered bytewise as SQLite orders text.
    cur.execute(
        "SELECT w.id, w.host, w.pid, w.started_at, w.heartbeat_at, r.id FROM workers w"
        " LEFT JOIN runs r ON r.lease_owner = w.id AND r.status = 'running'"
        " WHERE w.stopped_at IS NULL AND w.heartbeat_at >= %s"
        ' ORDER BY w.host COLLATE "C", w.started_at, w.id COLLATE "C", r.id COLLATE "C"',
        (now - stale_after,),
    )
    return loads_from_rows(cur.fetchall())
