"""A run's life as its worker writes it, on PostgreSQL: the twin of `journal.lifecycle`.

Claims lock their candidates with `FOR UPDATE SKIP LOCKED`: workers on several hosts
claiming at once take different runs instead of queueing on each other. A task with a
concurrency limit is counted under a transaction-level advisory lock of its own, so two
claims cannot both see a free slot (SQLite's single writer gave that for free).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sylphrun import model
from sylphrun.journal.lifecycle import UNKNOWN_TASK_GRACE, Claim, TaskTerms
from sylphrun.journal.postgres.events import has_arrived_event, lock_waits_of
from sylphrun.journal.postgres.flow import Gate
from sylphrun.journal.postgres.transitions import (
    TERMINAL,
    Cursor,
    check,
    finish,
    interrupt_running_steps,
    owns,
    record_attempt,
    requeue,
)
from sylphrun.journal.transitions import CLEAR_LEASE, MAX_CRASHES


def claim_runs(
    cur: Cursor,
    worker_id: str,
    limit: int,
    *,
    lease_seconds: float,
    known_tasks: Mapping[str, TaskTerms],
    now: float,
) -> tuple[list[Claim], list[str]]:
    claims: list[Claim] = []
    unknown: list[str] = []
    if limit <= 0:
        return claims, unknown
    quota = _concurrency_quota(cur, known_tasks, now)
    gate = Gate(cur, known_tasks, now)
    holds_suspect = _holds_suspect(cur, worker_id)
    # As on SQLite: a batch that skipped runs of a key it just filled asks again.
    for round_ in range(_CLAIM_ROUNDS):
        skipped = False
        ahead = 4**round_ if gate.active else 1
        candidates = _candidates(
            cur, known_tasks, quota, gate, min((limit - len(claims)) * ahead, 5_000), now
        )
        for run_id, task_id, crash_count, ckey, rkey, started in candidates:
            if len(claims) >= limit:
                break
            if task_id not in known_tasks:
                unknown.append(run_id)
                _fail_unknown_task(cur, run_id, task_id, now)
                continue
            first = started is None
            if quota.get(task_id, 1) <= 0 or not gate.admits(task_id, ckey, rkey, first):
                skipped = True
                continue
            if crash_count and holds_suspect:
                continue
            if task_id in quota:
                quota[task_id] -= 1
            gate.took(cur, run_id, task_id, ckey, rkey, first)
            holds_suspect = holds_suspect or crash_count > 0
            claims.append(
                _take_run(
                    cur,
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


def _holds_suspect(cur: Cursor, worker_id: str) -> bool:
    """Whether the worker already runs a run that crashed a worker before."""
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE lease_owner = %s AND status = 'running'"
        " AND crash_count > 0)",
        (worker_id,),
    )
    return cur.fetchone()[0]


def _fail_unknown_task(cur: Cursor, run_id: str, task_id: str, now: float) -> None:
    finish(
        cur,
        run_id,
        model.FAILED,
        None,
        f"UnknownTask: no task {task_id!r} is defined in this project (was it renamed or deleted?)",
        None,
        now,
    )


_CLAIM_ROUNDS = 8


def _concurrency_quota(
    cur: Cursor, known_tasks: Mapping[str, TaskTerms], now: float
) -> dict[str, int]:
    quota: dict[str, int] = {}
    for task_id in sorted(known_tasks):  # sorted: two claims lock in one order, no deadlock
        terms = known_tasks[task_id]
        if terms.concurrency is None:
            continue
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"sylphrun.task:{task_id}",))
        cur.execute(
            "SELECT COUNT(*) FROM runs WHERE status = 'running' AND task_id = %s"
            " AND lease_expires_at >= %s",
            (task_id, now),
        )
        quota[task_id] = terms.concurrency - cur.fetchone()[0]
    return quota


def _candidates(
    cur: Cursor,
    known_tasks: Mapping[str, TaskTerms],
    quota: dict[str, int],
    gate: Gate,
    limit: int,
    now: float,
) -> list[tuple]:
    blocked = [t for t, q in quota.items() if q <= 0]
    keys_sql, keys_params = gate.sql_filter()
    known = list(known_tasks)
    grace = now - UNKNOWN_TASK_GRACE
    cols = "id, task_id, crash_count, concurrency_key, rate_key, started_at"
    cur.execute(
        f"SELECT {cols} FROM runs WHERE ready_at <= %s AND task_id <> ALL(%s){keys_sql}"
        " AND (task_id = ANY(%s) OR ready_at <= %s)"
        " ORDER BY priority DESC, ready_at LIMIT %s FOR UPDATE SKIP LOCKED",
        (now, blocked, *keys_params, known, grace, limit),
    )
    found = cur.fetchall()
    if len(found) < limit:
        cur.execute(
            f"SELECT {cols} FROM runs WHERE status = 'running'"
            f" AND lease_expires_at < %s AND task_id <> ALL(%s){keys_sql}"
            " AND (task_id = ANY(%s) OR lease_expires_at <= %s)"
            " LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, blocked, *keys_params, known, grace, limit - len(found)),
        )
        found += cur.fetchall()
    return found


def _take_run(
    cur: Cursor,
    run_id: str,
    task_id: str,
    worker_id: str,
    terms: TaskTerms,
    *,
    lease_seconds: float,
    now: float,
) -> Claim:
    interrupt_running_steps(cur, run_id, now)
    cur.execute("SELECT code_fingerprint FROM runs WHERE id = %s", (run_id,))
    previous = cur.fetchone()[0]
    cur.execute(
        "UPDATE runs SET status = 'running', lease_owner = %s, lease_epoch = lease_epoch + 1,"
        " lease_expires_at = %s, ready_at = NULL, deadline_at = %s, code_fingerprint = %s,"
        " started_at = COALESCE(started_at, %s), updated_at = %s WHERE id = %s"
        " RETURNING payload, attempt, lease_epoch, parent_run_id, crash_count, doom",
        (
            worker_id,
            now + lease_seconds,
            now + terms.timeout if terms.timeout else None,
            terms.fingerprint,
            now,
            now,
            run_id,
        ),
    )
    return Claim(run_id, task_id, *cur.fetchone(), previous_fingerprint=previous)


def keyed_batch_children(cur: Cursor, run_id: str, step_key: str) -> list[str]:
    cur.execute(
        "SELECT id, idempotency_key FROM runs WHERE parent_run_id = %s AND parent_step_key = %s",
        (run_id, step_key),
    )
    rows = cur.fetchall()
    return [rid for _, rid in sorted((int(k.rpartition(":")[2]), rid) for rid, k in rows)]


def suspend_run(
    cur: Cursor,
    run_id: str,
    epoch: int,
    *,
    children: Sequence[str],
    wake_at: float | None,
    now: float,
) -> None:
    # The children first, locked (FOR SHARE) in one order: a child finishing now either
    # committed before (read as finished here) or waits for this commit and then finds
    # the wait. Children before the parent: a finishing child locks itself, then its parent.
    waits = lock_waits_of(cur, run_id)  # event name locks first: see `events`
    unfinished: set[str] = set()
    if children:
        cur.execute(
            f"SELECT id, status NOT IN {TERMINAL} FROM runs WHERE id = ANY(%s)"
            " ORDER BY id FOR SHARE",
            (sorted(set(children)),),
        )
        unfinished = {rid for rid, open_ in cur.fetchall() if open_}
    check(cur, run_id, epoch)
    pending = 0
    for child in children:
        if child in unfinished:
            cur.execute(
                "INSERT INTO waits (child_run_id, run_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (child, run_id),
            )
            pending += cur.rowcount
    ready_at = now if (children and not pending) else wake_at
    if (ready_at is None or ready_at > now) and has_arrived_event(cur, run_id, waits):
        ready_at = now  # sent between the wait's look and this park (issue 14)
    cur.execute(
        "UPDATE steps SET status = 'waiting' WHERE run_id = %s AND status = 'running'", (run_id,)
    )
    cur.execute(
        f"UPDATE runs SET status = 'waiting', ready_at = %s, {CLEAR_LEASE},"
        " updated_at = %s WHERE id = %s",
        (ready_at, now, run_id),
    )


def release_run(cur: Cursor, run_id: str, epoch: int, now: float) -> None:
    if owns(cur, run_id, epoch):
        requeue(cur, run_id, now, crashed=False)


def requeue_after_error(cur: Cursor, run_id: str, epoch: int, *, error: str, now: float) -> bool:
    if not owns(cur, run_id, epoch):
        return False
    cur.execute("SELECT crash_count FROM runs WHERE id = %s", (run_id,))
    crashes = cur.fetchone()[0] + 1
    if crashes >= MAX_CRASHES:
        interrupt_running_steps(
            cur,
            run_id,
            now,
            "interrupted: sylphrun failed while the step ran; the run failed (InternalError)",
        )
        finish(
            cur,
            run_id,
            model.FAILED,
            None,
            f"InternalError: executing this run failed {crashes} times inside sylphrun "
            f"(last: {error}); not retried again",
            None,
            now,
        )
        return True
    requeue(cur, run_id, now, crashed=True)
    cur.execute("UPDATE runs SET ready_at = %s WHERE id = %s", (now + 0.1 * crashes, run_id))
    return False


def finish_run(
    cur: Cursor,
    run_id: str,
    epoch: int,
    *,
    status: str,
    output: str | None,
    error: str | None,
    traceback: str | None,
    now: float,
) -> None:
    check(cur, run_id, epoch)
    finish(cur, run_id, status, output, error, traceback, now)


def schedule_retry(
    cur: Cursor,
    run_id: str,
    epoch: int,
    *,
    error: str,
    traceback: str | None,
    retry_at: float,
    now: float,
) -> None:
    check(cur, run_id, epoch)
    cur.execute("SELECT attempt, started_at FROM runs WHERE id = %s", (run_id,))
    attempt, started_at = cur.fetchone()
    record_attempt(cur, run_id, attempt, model.FAILED, error, traceback, started_at, now)
    cur.execute(
        "UPDATE runs SET status = 'queued', attempt = attempt + 1, ready_at = %s, error = %s,"
        f" doom = NULL, {CLEAR_LEASE}, lease_epoch = lease_epoch + 1, updated_at = %s"
        " WHERE id = %s",
        (retry_at, error, now, run_id),
    )
