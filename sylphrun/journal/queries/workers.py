"""Reads of workers, registered tasks and leases: what the supervisor and the
reloader look at. Never writes."""

from __future__ import annotations

from collections.abc import Sequence

from sylphrun import model
from sylphrun.journal.connection import Connection
from sylphrun.journal.queries.runs import _loads


def live_workers(conn: Connection, *, now: float, stale_after: float) -> list[model.WorkerInfo]:
    with conn.read() as db:
        rows = db.execute(
            "SELECT id, pid, host, started_at, heartbeat_at, wake_addr FROM workers"
            " WHERE stopped_at IS NULL AND heartbeat_at >= ?",
            (now - stale_after,),
        ).fetchall()
    return [model.WorkerInfo(*r) for r in rows]


def registered_tasks(conn: Connection) -> dict[str, model.TaskRecord]:
    """The tasks the workers registered, by id (empty: no worker ever registered)."""
    with conn.read() as db:
        rows = db.execute(
            "SELECT id, options, source_file, source_line, fingerprint, registered_by,"
            " registered_at FROM tasks ORDER BY id"
        ).fetchall()
    out = {}
    for tid, options, source_file, source_line, fingerprint, by, at in rows:
        opts = _loads(options)
        out[tid] = model.TaskRecord(
            tid,
            opts if isinstance(opts, dict) else {},
            source_file,
            source_line,
            fingerprint,
            by,
            at,
        )
    return out


def overdue_runs(
    conn: Connection, worker_ids: Sequence[str], *, now: float
) -> list[tuple[str, str, str]]:
    """(run id, task id, worker id) of running runs past their timeout deadline."""
    if not worker_ids:
        return []
    with conn.read() as db:
        return db.execute(
            "SELECT id, task_id, lease_owner FROM runs WHERE status = 'running' AND deadline_at < ?"
            f" AND lease_owner IN ({','.join('?' * len(worker_ids))})",
            (now, *worker_ids),
        ).fetchall()


def lease_states(conn: Connection, run_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """(lease epoch, status) of each run: a worker checks it still owns what it executes."""
    if not run_ids:
        return {}
    with conn.read() as db:
        rows = db.execute(
            "SELECT id, lease_epoch, status FROM runs"
            f" WHERE id IN ({','.join('?' * len(run_ids))})",
            list(run_ids),
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def lease_holder(conn: Connection, run_id: str) -> tuple[str, int, int] | None:
    """(worker id, worker pid, lease epoch) of the worker holding a running run, or None."""
    with conn.read() as db:
        row = db.execute(
            "SELECT r.lease_owner, w.pid, r.lease_epoch FROM runs r JOIN workers w"
            " ON w.id = r.lease_owner WHERE r.id = ? AND r.status = 'running'",
            (run_id,),
        ).fetchone()
    return None if row is None else (row[0], row[1], row[2])
