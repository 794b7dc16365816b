"""A run's life as the worker executing it writes it.

Created (from outside a run, or as children inside one), claimed under a lease, parked
while it waits on children or a time, handed back, retried after a failed attempt, or
finished. Every write after the claim is fenced by the lease epoch (see `fence`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sylphrun import codec, model
from sylphrun.journal import fence
from sylphrun.journal.connection import Connection
from sylphrun.journal.fence import LeaseLost
from sylphrun.journal.flow import Gate
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

# How long a run of a task no worker knows stays queued before it fails as unknown: long
# enough for a reload to bring up workers running the code that defines it.
UNKNOWN_TASK_GRACE = 30.0


@dataclass(frozen=True)
class TaskTerms:
    """What the claim path needs to know of a task a worker can run."""

    concurrency: int | None = None
    timeout: float | None = None
    fingerprint: str | None = None
    # Flow control (journal/flow.py): running runs per `concurrency_key`, and starts per
    # `rate_key` in any `rate_period` seconds.
    key_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period: float | None = None


@dataclass(frozen=True)
class Claim:
    run_id: str
    task_id: str
    payload: str
    attempt: int
    epoch: int
    parent_run_id: str | None
    crash_count: int
    doom: str | None
    # The code fingerprint of the previous execution (None on the first): when it differs
    # from the code now running, the runtime checks the replay for divergence.
    previous_fingerprint: str | None = None


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


def claim_runs(
    conn: Connection,
    worker_id: str,
    limit: int,
    *,
    lease_seconds: float,
    known_tasks: Mapping[str, TaskTerms],
    now: float,
) -> tuple[list[Claim], list[str]]:
    """Claim up to `limit` ready runs: (claims, ids of runs failed for an unknown task).

    `known_tasks` maps each task id this worker can run to its terms (concurrency limit,
    timeout, code fingerprint).
    A run whose lease expired (its worker froze or vanished) is claimable again. Every
    claim bumps the run's lease epoch, which fences out the previous holder.
    """
    claims: list[Claim] = []
    unknown: list[str] = []
    if limit <= 0:
        return claims, unknown
    with conn.write() as db:
        quota = _concurrency_quota(db, known_tasks, now)
        gate = Gate(db, known_tasks, now)
        holds_suspect = _holds_a_suspect(db, worker_id)
        # Candidates of keys that are full are left out by the query; two of one key in
        # the same batch are not, so a batch that skipped some asks again (with that key
        # now full) rather than return short while runs of free keys wait behind.
        for round_ in range(_CLAIM_ROUNDS):
            skipped = False
            # With per-key limits, read further ahead each round: in a queue grouped by
            # key most of a batch belongs to keys this claim has just filled.
            ahead = 4**round_ if gate.active else 1
            candidates = _claim_candidates(
                db, known_tasks, quota, gate, min((limit - len(claims)) * ahead, 5_000), now
            )
            for run_id, task_id, crash_count, ckey, rkey, started in candidates:
                if len(claims) >= limit:
                    break
                if task_id not in known_tasks:
                    unknown.append(_fail_unknown_task(db, run_id, task_id, now))
                    continue
                first = started is None
                if quota.get(task_id, 1) <= 0 or not gate.admits(task_id, ckey, rkey, first):
                    skipped = True
                    continue
                if crash_count and holds_suspect:
                    continue
                if task_id in quota:
                    quota[task_id] -= 1
                gate.took(db, run_id, task_id, ckey, rkey, first)
                holds_suspect = holds_suspect or crash_count > 0
                claims.append(
                    _take_run(
                        db,
                        run_id,
                        task_id,
                        worker_id,
                        known_tasks[task_id],
                        lease_seconds=lease_seconds,
                        now=now,
                    )
                )
            if not skipped or not candidates or len(claims) >= limit:
                break
    return claims, unknown


def _holds_a_suspect(db: sqlite3.Connection, worker_id: str) -> bool:
    """A run that was on a worker when it crashed is a suspect: it may have killed it, or
    merely shared it. A worker holds at most one suspect, so two suspects never crash
    together again: an innocent run is blamed at most once per run that crashes its
    workers, and only that run reaches MAX_CRASHES."""
    return (
        db.execute(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE lease_owner = ? AND status = 'running'"
            " AND crash_count > 0)",
            (worker_id,),
        ).fetchone()[0]
        == 1
    )


def _fail_unknown_task(db: sqlite3.Connection, run_id: str, task_id: str, now: float) -> str:
    finish(
        db,
        run_id,
        model.FAILED,
        None,
        f"UnknownTask: no task {task_id!r} is defined in this project (was it renamed or deleted?)",
        None,
        now,
    )
    return run_id


# Rounds of candidates one claim may look through when limits skip some (each round makes
# at least one more key full, so few are ever needed).
_CLAIM_ROUNDS = 8


def _concurrency_quota(
    db: sqlite3.Connection,
    known_tasks: Mapping[str, TaskTerms],
    now: float,
) -> dict[str, int]:
    """Free slots of each task with a concurrency limit."""
    quota: dict[str, int] = {}
    for task_id, terms in known_tasks.items():
        if terms.concurrency is not None:
            # Only live leases: a run whose worker froze past its lease must not hold its
            # own slot, or nobody could take it over (it is claimable).
            running = db.execute(
                "SELECT COUNT(*) FROM runs WHERE status = 'running' AND task_id = ?"
                " AND lease_expires_at >= ?",
                (task_id, now),
            ).fetchone()[0]
            quota[task_id] = terms.concurrency - running
    return quota


def _claim_candidates(
    db: sqlite3.Connection,
    known_tasks: Mapping[str, TaskTerms],
    quota: dict[str, int],
    gate: Gate,
    limit: int,
    now: float,
) -> list[tuple[str, str, int, str | None, str | None, float | None]]:
    """(run id, task id, crash count, concurrency key, rate key, started at) of up to
    `limit` runs to claim: ready ones first, highest priority first and oldest `ready_at`
    within a priority, then running ones whose lease expired; none of a task with no free
    slot, nor of a key at its limit."""
    blocked = [t for t, q in quota.items() if q <= 0]
    skip = f" AND task_id NOT IN ({','.join('?' * len(blocked))})" if blocked else ""
    keys_sql, keys_params = gate.sql_filter()
    skip += keys_sql
    # A run of a task this worker does not know may be newer than its code (a task
    # saved and triggered before the reload replaced the workers): leave it to workers
    # that know it. Only after `UNKNOWN_TASK_GRACE` is it taken, to be failed as unknown
    # (a renamed or deleted task) rather than sit in the queue with no word.
    known = codec.dumps(list(known_tasks), what="the known tasks")
    mine = "(task_id IN (SELECT value FROM json_each(?)) OR {col} <= ?)"
    cols = "id, task_id, crash_count, concurrency_key, rate_key, started_at"
    # `ORDER BY priority DESC, ready_at` walks the runs_ready_by_priority index and stops
    # at LIMIT: a backlog of low priority is never read past to find a high one.
    candidates = db.execute(
        f"SELECT {cols} FROM runs WHERE ready_at <= ?{skip}"
        f" AND {mine.format(col='ready_at')} ORDER BY priority DESC, ready_at LIMIT ?",
        (now, *blocked, *keys_params, known, now - UNKNOWN_TASK_GRACE, limit),
    ).fetchall()
    if len(candidates) < limit:
        candidates += db.execute(
            f"SELECT {cols} FROM runs WHERE status = 'running'"
            f" AND lease_expires_at < ?{skip} AND {mine.format(col='lease_expires_at')}"
            " LIMIT ?",
            (now, *blocked, *keys_params, known, now - UNKNOWN_TASK_GRACE, limit - len(candidates)),
        ).fetchall()
    return candidates


def _take_run(
    db: sqlite3.Connection,
    run_id: str,
    task_id: str,
    worker_id: str,
    terms: TaskTerms,
    *,
    lease_seconds: float,
    now: float,
) -> Claim:
    """Lease one run to `worker_id`: a new lease epoch fences out its previous holder."""
    interrupt_running_steps(db, run_id, now)
    previous = db.execute("SELECT code_fingerprint FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    row = db.execute(
        "UPDATE runs SET status = 'running', lease_owner = ?, lease_epoch = lease_epoch + 1,"
        " lease_expires_at = ?, ready_at = NULL, deadline_at = ?, code_fingerprint = ?,"
        " started_at = COALESCE(started_at, ?), updated_at = ?"
        " WHERE id = ? RETURNING payload, attempt, lease_epoch, parent_run_id, crash_count, doom",
        (
            worker_id,
            now + lease_seconds,
            now + terms.timeout if terms.timeout else None,
            terms.fingerprint,
            now,
            now,
            run_id,
        ),
    ).fetchone()
    return Claim(run_id, task_id, *row, previous_fingerprint=previous)


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
