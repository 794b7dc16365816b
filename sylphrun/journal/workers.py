"""Worker processes and the leases they hold, as workers and their supervisor write them.

A worker registers, renews the leases of the runs it executes with each heartbeat, and
unregisters. Its supervisor dooms a run whose step overran the task's timeout before it
replaces the worker, and releases the runs of a worker that died or was killed: requeued,
or failed once a run has crashed its workers `MAX_CRASHES` times.
"""

from __future__ import annotations

from collections.abc import Mapping

from sylphrun import model
from sylphrun.journal.connection import Connection
from sylphrun.journal.transitions import MAX_CRASHES, finish, interrupt_running_steps, requeue


def register_worker(
    conn: Connection,
    worker_id: str,
    *,
    pid: int,
    host: str,
    supervisor_pid: int | None,
    wake_addr: str | None,
    now: float,
) -> None:
    with conn.write() as db:
        # Every reload and restart registers new workers: forget those stopped a day ago.
        db.execute("DELETE FROM workers WHERE stopped_at < ?", (now - 86_400,))
        db.execute(
            "INSERT OR REPLACE INTO workers (id, pid, host, supervisor_pid, started_at,"
            " heartbeat_at, wake_addr) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (worker_id, pid, host, supervisor_pid, now, now, wake_addr),
        )


def heartbeat(
    conn: Connection, worker_id: str, held: Mapping[str, int], *, lease_seconds: float, now: float
) -> list[str]:
    """Renew the leases of the runs this worker executes (`held`: run id -> epoch); return
    the ones it no longer owns (cancelled, or taken over after its lease expired), so it
    can stop executing them.

    Only `held`, not every run whose lease names this worker: a run the worker stopped
    executing but could not hand back (the journal failed under the release) must see its
    lease run out, or a live worker would hold it, unexecuted, forever."""
    lost: list[str] = []
    with conn.write() as db:
        db.execute("UPDATE workers SET heartbeat_at = ? WHERE id = ?", (now, worker_id))
        for run_id, epoch in held.items():
            renewed = db.execute(
                "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_epoch = ?"
                " AND status = 'running'",
                (now + lease_seconds, run_id, epoch),
            ).rowcount
            if not renewed:
                lost.append(run_id)
    return lost


def renew_leases_for(conn: Connection, worker_id: str, *, lease_seconds: float, now: float) -> int:
    """The supervisor's renewal for a live worker whose own heartbeat has gone quiet: a
    step holding the GIL (`sum(range(10**9))`, a C call that does not release it) starves
    the worker's heartbeat thread, and the run was taken over and run again and again.
    Every run the worker holds, since its own list of what it executes cannot be asked
    for; the worker's heartbeat, once it runs, drops what it no longer executes. Only the
    supervisor, which sees the process alive and not stopped, may call this."""
    with conn.write() as db:
        return db.execute(
            "UPDATE runs SET lease_expires_at = ? WHERE lease_owner = ? AND status = 'running'"
            " AND lease_expires_at < ?",
            (now + lease_seconds, worker_id, now + lease_seconds),
        ).rowcount


def unregister_worker(conn: Connection, worker_id: str, now: float) -> None:
    with conn.write() as db:
        db.execute("UPDATE workers SET stopped_at = ? WHERE id = ?", (now, worker_id))


def release_worker_runs(
    conn: Connection, worker_id: str, *, reason: str, crashed: bool, now: float
) -> tuple[list[str], list[str]]:
    """Release every run a dead (or deliberately killed) worker held: (requeued, failed).

    A run that has now killed its worker `MAX_CRASHES` times (a poisoned run: a segfaulting
    C extension, an OOM) is not looped: it is requeued doomed, so that its next execution
    replays the completed steps, fails with WorkerCrashed at the step that was in flight,
    and runs the compensations a saga registered. Failing it here directly (as we once did)
    skipped them: a card charged before the poisoned step was never refunded. A doomed run
    that kills its worker once more (the undo itself crashes) is failed at once.
    """
    requeued: list[str] = []
    failed: list[str] = []
    with conn.write() as db:
        rows = db.execute(
            "SELECT id, crash_count FROM runs WHERE lease_owner = ? AND status = 'running'",
            (worker_id,),
        ).fetchall()
        for run_id, crash_count in rows:
            crashes = crash_count + 1
            error = (
                f"WorkerCrashed: this run's worker process died {MAX_CRASHES} times while "
                f"running it (last: {reason}); not retried again. "
                "`sylphrun show` names the step it was in"
            )
            if crashed and crashes > MAX_CRASHES:
                interrupt_running_steps(
                    db,
                    run_id,
                    now,
                    f"interrupted: the worker died ({reason})"
                    " while the step ran; the run failed (WorkerCrashed)",
                )
                finish(
                    db,
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
                    db,
                    run_id,
                    now,
                    f"interrupted: the worker died ({reason})"
                    " while the step ran; the run fails here (WorkerCrashed)",
                )
                db.execute("UPDATE runs SET doom = ? WHERE id = ?", (error, run_id))
                requeue(db, run_id, now, crashed=True)
                failed.append(run_id)
            else:
                requeue(db, run_id, now, crashed=crashed)
                requeued.append(run_id)
    return requeued, failed


def doom_run(
    conn: Connection, run_id: str, *, error: str, now: float, worker_id: str | None = None
) -> bool:
    """Mark a run whose worker is about to be replaced because a step overran the task's
    timeout: its next execution replays the completed steps, then fails with `error` at
    the step that was stuck, so its compensations and retry policy still apply. With
    `worker_id`, only while that worker still holds it (it may have finished meanwhile)."""
    owner = " AND lease_owner = ?" if worker_id else ""
    with conn.write() as db:
        return (
            db.execute(
                "UPDATE runs SET doom = ?, updated_at = ?"
                f" WHERE id = ? AND status = 'running'{owner}",
                (error, now, run_id, *((worker_id,) if worker_id else ())),
            ).rowcount
            == 1
        )
