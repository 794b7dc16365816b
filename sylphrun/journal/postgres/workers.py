"""Workers, their leases and the task registry on PostgreSQL: the twins of
`journal.workers` and `journal.registry`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sylphrun import codec, model
from sylphrun.journal.postgres.transitions import (
    Cursor,
    finish,
    interrupt_running_steps,
    requeue,
)
from sylphrun.journal.transitions import MAX_CRASHES


def register_worker(
    cur: Cursor,
    worker_id: str,
    *,
    pid: int,
    host: str,
    supervisor_pid: int | None,
    wake_addr: str | None,
    now: float,
) -> None:
    cur.execute("DELETE FROM workers WHERE stopped_at < %s", (now - 86_400,))
    cur.execute(
        "INSERT INTO workers (id, pid, host, supervisor_pid, started_at, heartbeat_at, wake_addr)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid,"
        " host = excluded.host, supervisor_pid = excluded.supervisor_pid,"
        " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
        " wake_addr = excluded.wake_addr, stopped_at = NULL",
        (worker_id, pid, host, supervisor_pid, now, now, wake_addr),
    )


def heartbeat(
    cur: Cursor, worker_id: str, held: Mapping[str, int], *, lease_seconds: float, now: float
) -> list[str]:
    cur.execute("UPDATE workers SET heartbeat_at = %s WHERE id = %s", (now, worker_id))
    lost: list[str] = []
    for run_id, epoch in sorted(held.items()):  # sorted: one lock order for all writers
        cur.execute(
            "UPDATE runs SET lease_expires_at = %s WHERE id = %s AND lease_epoch = %s"
            " AND status = 'running'",
            (now + lease_seconds, run_id, epoch),
        )
        if not cur.rowcount:
            lost.append(run_id)
    return lost


def renew_leases_for(cur: Cursor, worker_id: str, *, lease_seconds: float, now: float) -> int:
    cur.execute(
        "UPDATE runs SET lease_expires_at = %s WHERE lease_owner = %s"
        " AND status = 'running' AND lease_expires_at < %s",
        (now + lease_seconds, worker_id, now + lease_seconds),
    )
    return cur.rowcount


def unregister_worker(cur: Cursor, worker_id: str, now: float) -> None:
    cur.execute("UPDATE workers SET stopped_at = %s WHERE id = %s", (now, worker_id))


def release_worker_runs(
    cur: Cursor, worker_id: str, *, reason: str, crashed: bool, now: float
) -> tuple[list[str], list[str]]:
    requeued: list[str] = []
    failed: list[str] = []
    cur.execute(
        "SELECT id, crash_count FROM runs WHERE lease_owner = %s AND status = 'running'"
        " ORDER BY id FOR NO KEY UPDATE",
        (worker_id,),
    )
    for run_id, crash_count in cur.fetchall():
        crashes = crash_count + 1
        error = (
            f"WorkerCrashed: this run's worker process died {MAX_CRASHES} times while "
            f"running it (last: {reason}); not retried again. "
            "`sylphrun show` names the step it was in"
        )
        if crashed and crashes > MAX_CRASHES:
            interrupt_running_steps(
                cur,
                run_id,
                now,
                f"interrupted: the worker died ({reason})"
                " while the step ran; the run failed (WorkerCrashed)",
            )
            finish(
                cur,
                run_id,
                model.FAILED,
                None,
                error.replace(f"{MAX_CRASHES} times", f"{crashes} times", 1)
                + "; the last time while failing, so its compensations did not all run",
                None,
                now,
            )
            failed.append(run_id)
        elif crashed and crashes == MAX_CRASHES:
            interrupt_running_steps(
                cur,
                run_id,
                now,
                f"interrupted: the worker died ({reason})"
                " while the step ran; the run fails here (WorkerCrashed)",
            )
            cur.execute("UPDATE runs SET doom = %s WHERE id = %s", (error, run_id))
            requeue(cur, run_id, now, crashed=True)
            failed.append(run_id)
        else:
            requeue(cur, run_id, now, crashed=crashed)
            requeued.append(run_id)
    return requeued, failed


def doom_run(cur: Cursor, run_id: str, *, error: str, now: float, worker_id: str | None) -> bool:
    owner = " AND lease_owner = %s" if worker_id else ""
    cur.execute(
        f"UPDATE runs SET doom = %s, updated_at = %s WHERE id = %s AND status = 'running'{owner}",
        (error, now, run_id, *((worker_id,) if worker_id else ())),
    )
    return cur.rowcount == 1


def register_tasks(
    cur: Cursor,
    records: Sequence[model.TaskRecord],
    *,
    registered_by: str,
    project_dir: str | None,
    now: float,
) -> bool:
    rows = sorted(
        (r.id, codec.canonical(r.options), r.source_file, r.source_line, r.fingerprint)
        for r in records
    )
    # One registration at a time: two workers of a reload comparing the same old set
    # would both replace it (harmless) or interleave their DELETE and INSERTs (not).
    cur.execute("LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE")
    cur.execute(
        "SELECT id, options, source_file, source_line, fingerprint FROM tasks"
        ' ORDER BY id COLLATE "C"'
    )
    if [tuple(c) for c in cur.fetchall()] == rows and rows:
        return False
    cur.execute("DELETE FROM tasks")
    cur.executemany(
        "INSERT INTO tasks (id, options, source_file, source_line, fingerprint, project_dir,"
        " registered_by, registered_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [(*row, project_dir, registered_by, now) for row in rows],
    )
    return True
