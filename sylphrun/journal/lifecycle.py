"""A run's life as the worker executing it writes it.

Created (from outside a run, or as children inside one), claimed under a lease, parked
while it waits on children or a time, handed back, retried after a failed attempt, or
finished. Every write after the claim is fenced by the lease epoch (see `fence`). The
claim itself is `claiming`'s (re-exported here).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from sylphrun import model
from sylphrun.journal import fence
from sylphrun.journal.claiming import UNKNOWN_TASK_GRACE, Claim, TaskTerms, claim_runs
from sylphrun.journal.connection import Connection
from sylphrun.journal.fence import LeaseLost
from sylphrun.journal.transitions import (
    CLEAR_LEASE,
    MAX_CRASHES,
    TERMINAL,
    RunSpec,
    finish,
    insert_children,
    insert_runs,
    interrupt_running_steps,
    requeue,
)


def enqueue_runs(conn: Connection, specs: Sequence[RunSpec], now: float) -> list[tuple[str, bool]]:
    """Create runs from outside any run (the CLI, a script): one transaction for all."""
    with conn.write() as db:
        return insert_runs(db, specs, now)


def enqueue_children(
    conn: Connection, run_id: str, epoch: int, specs: Sequence[RunSpec], now: float
) -> list[tuple[str, bool]]:
    """Children created inside a step function (deduplicated by their idempotency keys)."""
    with conn.write() as db:
        return insert_children(db, run_id, epoch, specs, now)


def keyed_batch_children(conn: Connection, run_id: str, step_key: str) -> list[str]:
    """The children of a large batch_trigger step, in payload order: their idempotency
    keys end with their index (`run:step:i`), and the step keeps only their count."""
    with conn.read() as db:
        rows = db.execute(
            "SELECT id, idempotency_key FROM runs WHERE parent_run_id = ? AND parent_step_key = ?",
            (run_id, step_key),
        ).fetchall()
    return [rid for _, rid in sorted((int(k.rpartition(":")[2]), rid) for rid, k in rows)]


def suspend_run(
    conn: Connection,
    run_id: str,
    epoch: int,
    *,
    children: Sequence[str],
    wake_at: float | None,
    now: float,
) -> None:
    """Park a run that waits on children and/or a time, freeing its worker slot.

    Waits are registered only for children still unfinished, in the same transaction a
    finishing child uses to wake its waiters, so a wake-up can never be lost between
    "the child is not done" and "the parent is parked". Likewise an open event wait whose
    event was sent meanwhile makes the run ready at once.
    """
    with conn.write() as db:
        fence.check(db, run_id, epoch)
        pending = 0
        for child in children:
            pending += db.execute(
                "INSERT OR IGNORE INTO waits (child_run_id, run_id) SELECT ?, ?"
                f" WHERE EXISTS (SELECT 1 FROM runs WHERE id = ? AND status NOT IN {TERMINAL})",
                (child, run_id, child),
            ).rowcount
        ready_at = now if (children and not pending) else wake_at
        if ready_at is None or ready_at > now:
            # Here, not after: an event sent between a wait's look and this park found the
            # run still running; a kill -9 after the park must not strand it (issue 14).
            from sylphrun.journal.sent_events import has_arrived_event

            if has_arrived_event(db, run_id):
                ready_at = now
        # A step whose function was waiting (a fan-in collecting children) is parked with
        # the run, not interrupted: resuming it is not a new attempt.
        db.execute(
            "UPDATE steps SET status = 'waiting' WHERE run_id = ? AND status = 'running'",
            (run_id,),
        )
        db.execute(
            f"UPDATE runs SET status = 'waiting', ready_at = ?, {CLEAR_LEASE},"
            " updated_at = ? WHERE id = ?",
            (ready_at, now, run_id),
        )


def release_run(conn: Connection, run_id: str, epoch: int, now: float) -> None:
    """Give a run back to the queue at a step boundary (shutdown, reload): no crash counted."""
    with conn.write() as db:
        try:
            fence.check(db, run_id, epoch)
        except LeaseLost:
            return
        requeue(db, run_id, now, crashed=False)


def requeue_after_error(
    conn: Connection, run_id: str, epoch: int, *, error: str, now: float
) -> bool:
    """A run whose execution hit an error of sylphrun's own (a bug, the journal failing):
    back to the queue after a growing delay, counted as a crash; failed with `error` once
    that has happened `MAX_CRASHES` times. Returns True if it failed."""
    with conn.write() as db:
        try:
            fence.check(db, run_id, epoch)
        except LeaseLost:
            return False
        crashes = (
            db.execute("SELECT crash_count FROM runs WHERE id = ?", (run_id,)).fetchone()[0] + 1
        )
        if crashes >= MAX_CRASHES:
            interrupt_running_steps(
                db,
                run_id,
                now,
                "interrupted: sylphrun failed while the step ran; the run failed (InternalError)",
            )
            finish(
                db,
                run_id,
                model.FAILED,
                None,
                f"InternalError: executing this run failed {crashes} times inside sylphrun "
                f"(last: {error}); not retried again",
                None,
                now,
            )
            return True
        requeue(db, run_id, now, crashed=True)
        # A short pause, growing: no hot loop, and MAX_CRASHES bounds the tries anyway.
        db.execute("UPDATE runs SET ready_at = ? WHERE id = ?", (now + 0.1 * crashes, run_id))
        return False


def finish_run(
    conn: Connection,
    run_id: str,
    epoch: int,
    *,
    status: str,
    output: str | None,
    error: str | None,
    traceback: str | None,
    now: float,
) -> None:
    with conn.write() as db:
        fence.check(db, run_id, epoch)
        finish(db, run_id, status, output, error, traceback, now)


def schedule_retry(
    conn: Connection,
    run_id: str,
    epoch: int,
    *,
    error: str,
    traceback: str | None,
    retry_at: float,
    now: float,
) -> None:
    """A failed attempt with attempts left: back to the queue, not before `retry_at`."""
    with conn.write() as db:
        fence.check(db, run_id, epoch)
        _schedule_retry(db, run_id, error, traceback, retry_at, now)


def _schedule_retry(
    db: sqlite3.Connection,
    run_id: str,
    error: str,
    traceback: str | None,
    retry_at: float,
    now: float,
) -> None:
    row = db.execute("SELECT attempt, started_at FROM runs WHERE id = ?", (run_id,)).fetchone()
    db.execute(
        "INSERT OR REPLACE INTO run_attempts (run_id, attempt, status, error, traceback,"
        " started_at, finished_at, code_fingerprint)"
        " SELECT ?, ?, 'failed', ?, ?, ?, ?, code_fingerprint FROM runs WHERE id = ?",
        (run_id, row[0], error, traceback, row[1], now, run_id),
    )
    db.execute(
        "UPDATE runs SET status = 'queued', attempt = attempt + 1, ready_at = ?, error = ?,"
        f" doom = NULL, {CLEAR_LEASE},"
        " lease_epoch = lease_epoch + 1, updated_at = ? WHERE id = ?",
        (retry_at, error, now, run_id),
    )


# Re-exported: callers import the claim's names through this module.
__all__ = [
    "UNKNOWN_TASK_GRACE",
    "Claim",
    "TaskTerms",
    "claim_runs",
    "enqueue_children",
    "enqueue_runs",
    "finish_run",
    "keyed_batch_children",
    "release_run",
    "requeue_after_error",
    "schedule_retry",
    "suspend_run",
]
