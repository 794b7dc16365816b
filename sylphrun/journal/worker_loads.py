"""Which workers are alive, on which host, holding which runs (`JournalReader.worker_loads`):
for `sylphrun workers` and the dashboard's Workers view. Never writes."""

from __future__ import annotations

from sylphrun.journal.connection import Connection
from sylphrun.journal.types import WorkerLoad

# One row per (worker, held run); a worker holding none is one row with a NULL run. The
# join reads the running runs by index (`runs_status`), not every run.
WORKER_LOADS_SQL = (
    "SELECT w.id, w.host, w.pid, w.started_at, w.heartbeat_at, r.id FROM workers w"
    " LEFT JOIN runs r ON r.lease_owner = w.id AND r.status = 'running'"
    " WHERE w.stopped_at IS NULL AND w.heartbeat_at >= ?"
    " ORDER BY w.host, w.started_at, w.id, r.id"
)


def worker_loads(conn: Connection, *, now: float, stale_after: float) -> list[WorkerLoad]:
    with conn.read() as db:
        rows = db.execute(WORKER_LOADS_SQL, (now - stale_after,)).fetchall()
    return loads_from_rows(rows)


def loads_from_rows(rows: list[tuple]) -> list[WorkerLoad]:
    """Fold the join's rows (ordered by worker) into one `WorkerLoad` per worker."""
    out: list[WorkerLoad] = []
    for worker_id, host, pid, started_at, heartbeat_at, run_id in rows:
        if not out or out[-1].worker_id != worker_id:
            out.append(WorkerLoad(worker_id, host, pid, started_at, heartbeat_at, ()))
        if run_id is not None:
            out[-1] = out[-1]._replace(runs=(*out[-1].runs, run_id))
    return out
