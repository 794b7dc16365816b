"""A run's steps and log as its worker writes them, on PostgreSQL: the twin of
`journal.steps`. The two writes every step makes are one statement each, fenced inside it
(`transitions.OWNED`), in one round trip unless the worker asks for an event."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sylphrun import codec, model
from sylphrun.journal.fence import LeaseLost
from sylphrun.journal.postgres.connection import PgConnection
from sylphrun.journal.postgres.transitions import (
    OWNED,
    Cursor,
    check,
    finish,
    insert_children,
    interrupt_running_steps,
)
from sylphrun.journal.transitions import RunSpec

_STEP_EVENT = "INSERT INTO events (at, run_id, kind, step_key) VALUES (%s, %s, %s, %s)"

# `{stamp}`: -1 asks the schema's trigger to stamp `change_seq` in the statement, under
# the feed lock held shared (schema V9_STEP_CHANGE_SEQ): only for a statement that is its
# own transaction (`write_one`); with an event in the transaction, NULL (stamped at commit).
_START_STEP = (
    "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt, started_at,"
    " fn, args_hash, change_seq) SELECT %s, %s, %s, %s, 'running', %s, 1, %s, %s, %s, %s,"
    f" {{stamp}} WHERE {OWNED}"
    " ON CONFLICT (run_id, key) DO UPDATE SET status = 'running', kind = excluded.kind,"
    " attempts = steps.attempts + CASE WHEN steps.status <> 'waiting' THEN 1 ELSE 0 END,"
    " run_attempt = excluded.run_attempt, started_at = excluded.started_at,"
    " finished_at = NULL, error = NULL, retry_at = NULL, fatal = 0, fn = excluded.fn,"
    " args_hash = excluded.args_hash, change_seq = {stamp}"
)

_STEP_RESULT = (
    "UPDATE steps SET status = 'completed', output = %s, finished_at = %s, error = NULL,"
    f" compensate = %s, change_seq = {{stamp}} WHERE run_id = %s AND key = %s AND {OWNED}"
)


def _fenced_step_write(
    pg: PgConnection,
    sql: str,
    params: tuple,
    *,
    run_id: str,
    key: str,
    status: str,
    now: float,
    notify: bool,
) -> int:
    if not notify:
        return pg.write_one(sql.format(stamp="-1"), params)

    def write(cur: Cursor) -> int:
        cur.execute(sql.format(stamp="NULL"), params)
        changed = cur.rowcount
        if changed:
            cur.execute(_STEP_EVENT, (now, run_id, f"step.{status}", key))
        return changed

    return pg.write(write)


def record_step_start(
    pg: PgConnection,
    run_id: str,
    epoch: int,
    *,
    key: str,
    name: str,
    kind: str,
    seq: int,
    run_attempt: int,
    now: float,
    notify: bool,
    fn: str | None,
    args_hash: str | None,
) -> None:
    changed = _fenced_step_write(
        pg,
        _START_STEP,
        (run_id, key, name, kind, seq, run_attempt, now, fn, args_hash, run_id, epoch),
        run_id=run_id,
        key=key,
        status=model.STEP_RUNNING,
        now=now,
        notify=notify,
    )
    if not changed:
        raise LeaseLost(run_id)


def record_step_result(
    pg: PgConnection,
    run_id: str,
    epoch: int,
    *,
    key: str,
    output: str,
    now: float,
    compensate: str | None,
    notify: bool,
) -> None:
    changed = _fenced_step_write(
        pg,
        _STEP_RESULT,
        (output, now, compensate, run_id, key, run_id, epoch),
        run_id=run_id,
        key=key,
        status=model.STEP_COMPLETED,
        now=now,
        notify=notify,
    )
    if not changed:
        pg.read(lambda cur: check_read(cur, run_id, epoch))
        raise RuntimeError(f"step {key!r} of run {run_id} has no start record")


def check_read(cur: Cursor, run_id: str, epoch: int) -> None:
    cur.execute("SELECT lease_epoch, status FROM runs WHERE id = %s", (run_id,))
    row = cur.fetchone()
    if row is None or row[0] != epoch or row[1] != model.RUNNING:
        raise LeaseLost(run_id)


def note_step_change(
    cur: Cursor, run_id: str, epoch: int, *, key: str, status: str, now: float
) -> None:
    cur.execute(
        f"INSERT INTO events (at, run_id, kind, step_key) SELECT %s, %s, %s, %s WHERE {OWNED}",
        (now, run_id, f"step.{status}", key, run_id, epoch),
    )


def record_trigger_step(
    cur: Cursor,
    run_id: str,
    epoch: int,
    *,
    key: str,
    name: str,
    seq: int,
    run_attempt: int,
    specs: Sequence[RunSpec],
    output_of: Callable[[list[str]], str],
    now: float,
    list_children: bool,
) -> tuple[list[str], str]:
    check(cur, run_id, epoch)
    cur.execute(_STEP_EVENT, (now, run_id, "step.completed", key))
    child_ids = [rid for rid, _ in insert_children(cur, run_id, epoch, specs, now)]
    output = output_of(child_ids)
    cur.execute(
        "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
        " output, started_at, finished_at, child_run_ids)"
        " VALUES (%s, %s, %s, 'trigger', 'completed', %s, 1, %s, %s, %s, %s, %s)"
        " ON CONFLICT (run_id, key) DO UPDATE SET status = 'completed',"
        " output = excluded.output, finished_at = excluded.finished_at,"
        " child_run_ids = excluded.child_run_ids",
        (
            run_id,
            key,
            name,
            seq,
            run_attempt,
            output,
            now,
            now,
            codec.dumps(list(child_ids), what="the child run ids") if list_children else None,
        ),
    )
    return child_ids, output


def record_step_interrupted(
    cur: Cursor, run_id: str, epoch: int, *, key: str, reason: str, now: float
) -> None:
    check(cur, run_id, epoch)
    cur.execute(
        "INSERT INTO step_attempts (run_id, step_key, attempt, run_attempt, status, error,"
        " traceback, started_at, finished_at) SELECT run_id, key, attempts, run_attempt,"
        " 'interrupted', %s, NULL, started_at, %s FROM steps"
        " WHERE run_id = %s AND key = %s AND status = 'running'"
        " ON CONFLICT (run_id, step_key, attempt) DO UPDATE SET status = excluded.status,"
        " error = excluded.error, traceback = NULL, finished_at = excluded.finished_at",
        (f"interrupted: {reason}", now, run_id, key),
    )
    cur.execute(
        "UPDATE steps SET status = 'interrupted', finished_at = %s"
        " WHERE run_id = %s AND key = %s AND status = 'running'",
        (now, run_id, key),
    )


def mark_step_diverged(
    cur: Cursor, run_id: str, epoch: int, *, key: str, error: str | None
) -> None:
    check(cur, run_id, epoch)
    cur.execute(
        "UPDATE steps SET error = %s WHERE run_id = %s AND key = %s AND status = 'completed'",
        (error, run_id, key),
    )


def record_divergence(
    cur: Cursor, run_id: str, epoch: int, *, key: str, error: str, now: float
) -> None:
    mark_step_diverged(cur, run_id, epoch, key=key, error=error)
    interrupt_running_steps(cur, run_id, now, "interrupted: the run stopped as diverged")
    finish(cur, run_id, model.FAILED, None, error, None, now)


def record_step_failure(
    cur: Cursor,
    run_id: str,
    epoch: int,
    *,
    key: str,
    error: str,
    traceback: str | None,
    retry_at: float | None,
    fatal: bool,
    now: float,
) -> None:
    status = model.STEP_RETRYING if retry_at is not None else model.STEP_FAILED
    check(cur, run_id, epoch)
    cur.execute(
        "UPDATE steps SET status = %s, error = %s, retry_at = %s, fatal = %s, finished_at = %s"
        " WHERE run_id = %s AND key = %s RETURNING attempts, run_attempt, started_at",
        (status, error, retry_at, int(fatal), now, run_id, key),
    )
    attempts, run_attempt, started_at = cur.fetchone()
    cur.execute(
        "INSERT INTO step_attempts (run_id, step_key, attempt, run_attempt, status, error,"
        " traceback, started_at, finished_at) VALUES (%s, %s, %s, %s, 'failed', %s, %s, %s, %s)"
        " ON CONFLICT (run_id, step_key, attempt) DO UPDATE SET run_attempt ="
        " excluded.run_attempt, status = excluded.status, error = excluded.error,"
        " traceback = excluded.traceback, started_at = excluded.started_at,"
        " finished_at = excluded.finished_at",
        (run_id, key, attempts, run_attempt, error, traceback, started_at, now),
    )


def record_step_waiting(
    cur: Cursor,
    run_id: str,
    epoch: int,
    *,
    key: str,
    name: str,
    kind: str,
    seq: int,
    run_attempt: int,
    output: str,
    now: float,
) -> None:
    check(cur, run_id, epoch)
    cur.execute(
        "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
        " output, started_at) VALUES (%s, %s, %s, %s, 'waiting', %s, 1, %s, %s, %s)"
        " ON CONFLICT (run_id, key) DO UPDATE SET status = 'waiting', finished_at = NULL"
        " WHERE steps.status = 'cancelled'",
        (run_id, key, name, kind, seq, run_attempt, output, now),
    )


def record_completed_step(
    cur: Cursor,
    run_id: str,
    epoch: int,
    *,
    key: str,
    name: str,
    kind: str,
    seq: int,
    run_attempt: int,
    output: str,
    started_at: float,
    now: float,
) -> None:
    check(cur, run_id, epoch)
    cur.execute(
        "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
        " output, started_at, finished_at)"
        " VALUES (%s, %s, %s, %s, 'completed', %s, 1, %s, %s, %s, %s)"
        " ON CONFLICT (run_id, key) DO UPDATE SET status = 'completed',"
        " output = excluded.output, finished_at = excluded.finished_at",
        (run_id, key, name, kind, seq, run_attempt, output, started_at, now),
    )
    cur.execute(_STEP_EVENT, (now, run_id, "step.completed", key))


def append_log(
    cur: Cursor,
    run_id: str,
    *,
    level: str,
    message: str,
    step_key: str | None,
    now: float,
    epoch: int | None,
) -> None:
    if epoch is None:
        cur.execute(
            "INSERT INTO logs (run_id, at, level, message, step_key) VALUES (%s, %s, %s, %s, %s)",
            (run_id, now, level, message, step_key),
        )
        return
    cur.execute(
        f"INSERT INTO logs (run_id, at, level, message, step_key)"
        f" SELECT %s, %s, %s, %s, %s WHERE {OWNED}",
        (run_id, now, level, message, step_key, run_id, epoch),
    )
    if not cur.rowcount:
        raise LeaseLost(run_id)
