"""Run state changes that several kinds of writes share, each inside the caller's transaction.

A run is created, has its running steps interrupted, is requeued or is finished the same
way whether its worker, the supervisor or a user asked for it. One copy of each keeps the
journal's rules in one place: a finished run wakes its waiters and counts for its parent,
and every requeue or finish bumps the lease epoch that fences out the previous holder.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sylphrun import codec, model
from sylphrun.errors import IdempotencyConflict
from sylphrun.journal import fence, flow, ids

TERMINAL = "('completed','failed','cancelled')"
# A run that crashed its worker (or sylphrun itself) this many times is failed, not requeued.
MAX_CRASHES = 3


@dataclass(frozen=True)
class RunSpec:
    """A run to create. `payload` is already JSON text (the codec ran at the caller)."""

    task_id: str
    payload: str
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    parent_step_key: str | None = None
    replay_of: str | None = None
    # The key is sylphrun's own, derived from a step (children created inside a step
    # function): a re-executed step may pass other data under it and gets the runs it
    # created the first time. A user's key with another payload is a conflict.
    derived_key: bool = False
    # Flow control (journal/flow.py): higher priority is claimed first; the keys were
    # evaluated from the payload at trigger time; `debounce` collapses quick triggers.
    priority: int = 0
    concurrency_key: str | None = None
    rate_key: str | None = None
    debounce: flow.Debouncing | None = None


# A run that stops running here (parked, queued again, retried, finished) gives up its
# lease: the one spelling of it, so a new lease column cannot be forgotten in one place.
CLEAR_LEASE = "lease_owner = NULL, lease_expires_at = NULL, deadline_at = NULL"


def insert_runs(
    db: sqlite3.Connection, specs: Iterable[RunSpec], now: float
) -> list[tuple[str, bool]]:
    """Insert runs, honouring idempotency keys: (run id, created) for each spec, in order."""
    out: list[tuple[str, bool]] = []
    # The events a run's waits may take are those sent after it was created (issue 14).
    event_mark = db.execute("SELECT COALESCE(MAX(seq), 0) FROM sent_events").fetchone()[0]
    for spec in specs:
        collapsed = flow.debounce_into(db, spec, now) if spec.debounce else None
        if collapsed is not None:
            out.append((collapsed, False))
            continue
        run_id = ids.new_run_id()
        cur = db.execute(
            "INSERT INTO runs (id, task_id, status, payload, idempotency_key, parent_run_id,"
            " parent_step_key, replay_of, created_at, updated_at, ready_at, event_mark, priority,"
            " concurrency_key, rate_key, debounce_key)"
            " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                run_id,
                spec.task_id,
                spec.payload,
                spec.idempotency_key,
                spec.parent_run_id,
                spec.parent_step_key,
                spec.replay_of,
                now,
                now,
                flow.first_ready_at(spec, now),
                event_mark,
                spec.priority,
                spec.concurrency_key,
                spec.rate_key,
                spec.debounce.key if spec.debounce and not spec.idempotency_key else None,
            ),
        )
        if cur.rowcount == 1:
            out.append((run_id, True))
            continue
        existing = db.execute(
            "SELECT id, payload FROM runs WHERE task_id = ? AND idempotency_key = ?",
            (spec.task_id, spec.idempotency_key),
        ).fetchone()
        if existing is None:  # pragma: no cover - a random id collision; astronomically rare
            raise RuntimeError("run id collision; try again")
        if not spec.derived_key and _canonical(existing[1]) != _canonical(spec.payload):
            # Raised inside the caller's transaction: a batch with one conflict writes nothing.
            raise IdempotencyConflict(spec.idempotency_key or "", existing[0])
        out.append((existing[0], False))
    return out


def _canonical(payload: str) -> str:
    """A payload's JSON with sorted keys: the same object, whatever its key order. Text,
    not decoded values: in Python 1 == 1.0 == True, in JSON they are different payloads."""
    try:
        return codec.canonical(codec.loads(payload))
    except (ValueError, RecursionError):
        return payload


def insert_children(
    db: sqlite3.Connection, run_id: str, epoch: int, specs: Sequence[RunSpec], now: float
) -> list[tuple[str, bool]]:
    """Fenced insert of a parent's children; the parent counts only the ones created (an
    idempotency key may hand back an existing run)."""
    fence.check(db, run_id, epoch)
    results = insert_runs(db, specs, now)
    created = sum(1 for _, c in results if c)
    if created:
        db.execute(
            "UPDATE runs SET children_total = children_total + ? WHERE id = ?", (created, run_id)
        )
    return results


_RUNS_AGAIN = (
    "interrupted: the worker stopped before the step finished; it runs again with the same "
    "idempotency key"
)


def interrupt_running_steps(
    db: sqlite3.Connection, run_id: str, now: float, why: str = _RUNS_AGAIN
) -> None:
    """A step still 'running' when nobody executes its run was cut off mid-flight (in doubt).

    `why` is what the attempt log tells the user: whether the step runs again depends on
    what happens to the run (requeued, cancelled, failed)."""
    rows = db.execute(
        "SELECT key, attempts, run_attempt, started_at FROM steps"
        " WHERE run_id = ? AND status = 'running'",
        (run_id,),
    ).fetchall()
    for key, attempts, run_attempt, started_at in rows:
        db.execute(
            "INSERT OR REPLACE INTO step_attempts"
            " VALUES (?, ?, ?, ?, 'interrupted', ?, NULL, ?, ?)",
            (run_id, key, attempts, run_attempt, why, started_at, now),
        )
        db.execute(
            "UPDATE steps SET status = 'interrupted', finished_at = ? WHERE run_id = ? AND key = ?",
            (now, run_id, key),
        )


def cancel_open_steps(db: sqlite3.Connection, run_id: str, now: float) -> None:
    """A cancelled run's open steps end 'cancelled': a fan-in parked on children, a durable
    sleep or a step waiting for its retry would otherwise show 'waiting' with a growing
    time forever. A step cut off mid-flight keeps an attempt saying so; whatever its
    function returns later is refused by the fence (the cancel bumps the lease epoch)."""
    interrupt_running_steps(
        db,
        run_id,
        now,
        "interrupted: the run was cancelled while the "
        "step ran; whatever it returns is not journaled",
    )
    # 'interrupted' too: cut off by a crash and not run again yet, it was still to come.
    db.execute(
        "UPDATE steps SET status = 'cancelled', finished_at = ?, retry_at = NULL"
        " WHERE run_id = ? AND status IN ('interrupted', 'waiting', 'retrying')",
        (now, run_id),
    )


def requeue(db: sqlite3.Connection, run_id: str, now: float, *, crashed: bool) -> None:
    interrupt_running_steps(db, run_id, now)
    db.execute(
        f"UPDATE runs SET status = 'queued', ready_at = ?, {CLEAR_LEASE},"
        " lease_epoch = lease_epoch + 1,"
        " crash_count = crash_count + ?, updated_at = ? WHERE id = ?",
        (now, 1 if crashed else 0, now, run_id),
    )


def finish(
    db: sqlite3.Connection,
    run_id: str,
    status: str,
    output: str | None,
    error: str | None,
    traceback: str | None,
    now: float,
) -> None:
    # A step still 'running' at the end (a task the user started and never awaited) did
    # not finish: say so rather than leave it running forever.
    interrupt_running_steps(db, run_id, now, "interrupted: the run ended while it ran")
    row = db.execute(
        "UPDATE runs SET status = ?, output = ?, error = ?, finished_at = ?, ready_at = NULL,"
        f" doom = NULL, {CLEAR_LEASE},"
        " lease_epoch = lease_epoch + 1, updated_at = ? WHERE id = ?"
        " RETURNING attempt, started_at, parent_run_id",
        (status, output, error, now, now, run_id),
    ).fetchone()
    if status != model.COMPLETED:
        db.execute(
            "INSERT OR REPLACE INTO run_attempts (run_id, attempt, status, error, traceback,"
            " started_at, finished_at, code_fingerprint)"
            " SELECT ?, ?, ?, ?, ?, ?, ?, code_fingerprint FROM runs WHERE id = ?",
            (run_id, row[0], status, error, traceback, row[1], now, run_id),
        )
    db.execute("DELETE FROM waits WHERE run_id = ?", (run_id,))
    _wake_waiters(db, run_id, row[2], status=status, now=now)


def _wake_waiters(
    db: sqlite3.Connection, run_id: str, parent_run_id: str | None, *, status: str, now: float
) -> None:
    if parent_run_id:
        db.execute(
            "UPDATE runs SET children_done = children_done + 1,"
            " children_failed = children_failed + ?, children_cancelled = children_cancelled + ?"
            " WHERE id = ?",
            (status == model.FAILED, status == model.CANCELLED, parent_run_id),
        )
    waiters = db.execute(
        "DELETE FROM waits WHERE child_run_id = ? RETURNING run_id", (run_id,)
    ).fetchall()
    for (waiter,) in waiters:
        if db.execute("SELECT 1 FROM waits WHERE run_id = ? LIMIT 1", (waiter,)).fetchone():
            continue
        db.execute(
            "UPDATE runs SET ready_at = ?, updated_at = ? WHERE id = ? AND status = 'waiting'"
            " AND (ready_at IS NULL OR ready_at > ?)",
            (now, now, waiter, now),
        )
