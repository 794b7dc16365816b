"""Run state changes several writes share, inside the caller's transaction: the
PostgreSQL twins of `journal.fence` and `journal.transitions` (same rules, same messages).

Concurrency, which SQLite's single writer made moot: a write that decides on what it read
locks what it read. The fence locks the run row (`FOR NO KEY UPDATE`) so a cancel cannot
land between the check and the write; the hot step writes fence inside their statement
with `FOR SHARE` (`OWNED`), which a cancel's UPDATE waits for and which re-reads the row
if the cancel committed first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sylphrun import model
from sylphrun.errors import IdempotencyConflict
from sylphrun.journal import ids
from sylphrun.journal.fence import LeaseLost
from sylphrun.journal.transitions import _RUNS_AGAIN, CLEAR_LEASE, RunSpec, _canonical

Cursor = Any  # a psycopg cursor; not named in signatures so nothing imports psycopg for it
TERMINAL = "('completed','failed','cancelled')"
OWNED = (
    "EXISTS (SELECT 1 FROM runs WHERE id = %s AND lease_epoch = %s AND status = 'running'"
    " FOR SHARE)"
)


def check(cur: Cursor, run_id: str, epoch: int) -> None:
    """Raise LeaseLost unless the run is running under this epoch; lock it till commit."""
    cur.execute("SELECT lease_epoch, status FROM runs WHERE id = %s FOR NO KEY UPDATE", (run_id,))
    row = cur.fetchone()
    if row is None or row[0] != epoch or row[1] != model.RUNNING:
        raise LeaseLost(run_id)


def owns(cur: Cursor, run_id: str, epoch: int) -> bool:
    try:
        check(cur, run_id, epoch)
    except LeaseLost:
        return False
    return True


def insert_runs(cur: Cursor, specs: Iterable[RunSpec], now: float) -> list[tuple[str, bool]]:
    from sylphrun.journal import flow as sqlite_flow
    from sylphrun.journal.postgres import flow

    out: list[tuple[str, bool]] = []
    # The events a run's waits may take are those sent after it was created (issue 14).
    cur.execute("SELECT COALESCE(MAX(seq), 0) FROM sent_events")
    event_mark = cur.fetchone()[0]
    for spec in specs:
        collapsed = flow.debounce_into(cur, spec, now) if spec.debounce else None
        if collapsed is not None:
            out.append((collapsed, False))
            continue
        run_id = ids.new_run_id()
        cur.execute(
            "INSERT INTO runs (id, task_id, status, payload, idempotency_key, parent_run_id,"
            " parent_step_key, replay_of, created_at, updated_at, ready_at, event_mark, priority,"
            " concurrency_key, rate_key, debounce_key)"
            " VALUES (%s, %s, 'queued', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
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
                sqlite_flow.first_ready_at(spec, now),
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
        cur.execute(
            "SELECT id, payload FROM runs WHERE task_id = %s AND idempotency_key = %s",
            (spec.task_id, spec.idempotency_key),
        )
        existing = cur.fetchone()
        if existing is None:  # pragma: no cover - a random id collision
            raise RuntimeError("run id collision; try again")
        if not spec.derived_key and _canonical(existing[1]) != _canonical(spec.payload):
            raise IdempotencyConflict(spec.idempotency_key or "", existing[0])
        out.append((existing[0], False))
    return out


def insert_children(
    cur: Cursor, run_id: str, epoch: int, specs: Sequence[RunSpec], now: float
) -> list[tuple[str, bool]]:
    check(cur, run_id, epoch)
    results = insert_runs(cur, specs, now)
    created = sum(1 for _, c in results if c)
    if created:
        cur.execute(
            "UPDATE runs SET children_total = children_total + %s WHERE id = %s", (created, run_id)
        )
    return results


def interrupt_running_steps(cur: Cursor, run_id: str, now: float, why: str = _RUNS_AGAIN) -> None:
    cur.execute(
        "INSERT INTO step_attempts (run_id, step_key, attempt, run_attempt, status, error,"
        " traceback, started_at, finished_at)"
        " SELECT run_id, key, attempts, run_attempt, 'interrupted', %s, NULL, started_at, %s"
        " FROM steps WHERE run_id = %s AND status = 'running'"
        " ON CONFLICT (run_id, step_key, attempt) DO UPDATE SET run_attempt ="
        " excluded.run_attempt, status = excluded.status, error = excluded.error,"
        " traceback = NULL, started_at = excluded.started_at, finished_at = excluded.finished_at",
        (why, now, run_id),
    )
    cur.execute(
        "UPDATE steps SET status = 'interrupted', finished_at = %s"
        " WHERE run_id = %s AND status = 'running'",
        (now, run_id),
    )


def cancel_open_steps(cur: Cursor, run_id: str, now: float) -> None:
    interrupt_running_steps(
        cur,
        run_id,
        now,
        "interrupted: the run was cancelled while the "
        "step ran; whatever it returns is not journaled",
    )
    cur.execute(
        "UPDATE steps SET status = 'cancelled', finished_at = %s, retry_at = NULL"
        " WHERE run_id = %s AND status IN ('interrupted', 'waiting', 'retrying')",
        (now, run_id),
    )


def requeue(cur: Cursor, run_id: str, now: float, *, crashed: bool) -> None:
    interrupt_running_steps(cur, run_id, now)
    cur.execute(
        f"UPDATE runs SET status = 'queued', ready_at = %s, {CLEAR_LEASE},"
        " lease_epoch = lease_epoch + 1, crash_count = crash_count + %s, updated_at = %s"
        " WHERE id = %s",
        (now, 1 if crashed else 0, now, run_id),
    )


def record_attempt(
    cur: Cursor,
    run_id: str,
    attempt: int,
    status: str,
    error: str | None,
    traceback: str | None,
    started_at: float | None,
    now: float,
) -> None:
    cur.execute(
        "INSERT INTO run_attempts (run_id, attempt, status, error, traceback, started_at,"
        " finished_at, code_fingerprint)"
        " SELECT %s, %s, %s, %s, %s, %s, %s, code_fingerprint FROM runs WHERE id = %s"
        " ON CONFLICT (run_id, attempt) DO UPDATE SET status = excluded.status,"
        " error = excluded.error, traceback = excluded.traceback,"
        " started_at = excluded.started_at, finished_at = excluded.finished_at,"
        " code_fingerprint = excluded.code_fingerprint",
        (run_id, attempt, status, error, traceback, started_at, now, run_id),
    )


def finish(
    cur: Cursor,
    run_id: str,
    status: str,
    output: str | None,
    error: str | None,
    traceback: str | None,
    now: float,
) -> None:
    interrupt_running_steps(cur, run_id, now, "interrupted: the run ended while it ran")
    cur.execute(
        "UPDATE runs SET status = %s, output = %s, error = %s, finished_at = %s, ready_at = NULL,"
        f" doom = NULL, {CLEAR_LEASE}, lease_epoch = lease_epoch + 1, updated_at = %s"
        " WHERE id = %s RETURNING attempt, started_at, parent_run_id",
        (status, output, error, now, now, run_id),
    )
    attempt, started_at, parent = cur.fetchone()
    if status != model.COMPLETED:
        record_attempt(cur, run_id, attempt, status, error, traceback, started_at, now)
    cur.execute("DELETE FROM waits WHERE run_id = %s", (run_id,))
    _wake_waiters(cur, run_id, parent, status=status, now=now)


def _wake_waiters(
    cur: Cursor, run_id: str, parent_run_id: str | None, *, status: str, now: float
) -> None:
    if parent_run_id:
        cur.execute(
            "UPDATE runs SET children_done = children_done + 1,"
            " children_failed = children_failed + %s,"
            " children_cancelled = children_cancelled + %s WHERE id = %s",
            (int(status == model.FAILED), int(status == model.CANCELLED), parent_run_id),
        )
    cur.execute("DELETE FROM waits WHERE child_run_id = %s RETURNING run_id", (run_id,))
    for (waiter,) in cur.fetchall():
        # Lock the waiter before asking what it still waits on: two of its children
        # finishing at once each saw the other's wait (uncommitted deletes are invisible),
        # and neither woke it. Locked, the second one reads after the first committed.
        cur.execute("SELECT 1 FROM runs WHERE id = %s FOR NO KEY UPDATE", (waiter,))
        cur.execute("SELECT 1 FROM waits WHERE run_id = %s LIMIT 1", (waiter,))
        if cur.fetchone():
            continue
        cur.execute(
            "UPDATE runs SET ready_at = %s, updated_at = %s WHERE id = %s AND status = 'waiting'"
            " AND (ready_at IS NULL OR ready_at > %s)",
            (now, now, waiter, now),
        )
