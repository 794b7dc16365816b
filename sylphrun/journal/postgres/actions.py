"""A user's actions (cancel, retry, replay, wake) on PostgreSQL: the twin of
`journal.user_actions`, whose rules (what a replay copies, what there is to wake) it
reuses as they are. Each locks the runs it changes before deciding on them."""

from __future__ import annotations

from sylphrun import codec, model
from sylphrun.errors import InvalidState, UnknownRun
from sylphrun.journal.postgres.flow import copy_flow_keys
from sylphrun.journal.postgres.transitions import (
    TERMINAL,
    Cursor,
    cancel_open_steps,
    finish,
    insert_runs,
)
from sylphrun.journal.transitions import RunSpec
from sylphrun.journal.user_actions import (
    _event_wait_refusal,
    _nothing_to_wake,
    _OldStep,
    _steps_to_copy,
    _timed_out_now,
)


def _require_run(cur: Cursor, run_id: str) -> tuple[str, str]:
    cur.execute("SELECT status, task_id FROM runs WHERE id = %s FOR NO KEY UPDATE", (run_id,))
    row = cur.fetchone()
    if row is None:
        raise UnknownRun(f"no run {run_id!r} in this journal; `sylphrun runs` lists them")
    return row[0], row[1]


_TREE = (
    "WITH RECURSIVE tree(id) AS ({start} UNION ALL"
    " SELECT r.id FROM runs r JOIN tree t ON r.parent_run_id = t.id)"
    " SELECT tree.id FROM tree JOIN runs USING (id) WHERE runs.status {cond}"
)


def cancel_run(cur: Cursor, run_id: str, now: float) -> list[str]:
    status, _ = _require_run(cur, run_id)
    if status in model.TERMINAL_STATES:
        raise InvalidState(f"run {run_id} is already {status}; nothing to cancel")
    cur.execute(
        _TREE.format(start='SELECT %s::text COLLATE "C"', cond=f"NOT IN {TERMINAL}"), (run_id,)
    )
    ids = [r[0] for r in cur.fetchall()]
    for rid in ids:
        cancel_open_steps(cur, rid, now)
        finish(cur, rid, model.CANCELLED, None, "cancelled", None, now)
    return ids


def retry_run(cur: Cursor, run_id: str, now: float) -> None:
    status, _ = _require_run(cur, run_id)
    if status not in (model.FAILED, model.CANCELLED):
        hint = "; use `sylphrun replay` to run it again" if status == model.COMPLETED else ""
        raise InvalidState(
            f"run {run_id} is {status}: only a failed or cancelled run can be retried{hint}"
        )
    cur.execute(
        "SELECT 1 FROM steps WHERE run_id = %s AND kind = 'compensation'"
        " AND status = 'completed' LIMIT 1",
        (run_id,),
    )
    if cur.fetchone():
        raise InvalidState(
            f"run {run_id} ran compensations that undid its completed steps; retrying would "
            f"skip them. Use `sylphrun replay {run_id}` to start it over"
        )
    revived = [run_id]
    if status == model.CANCELLED:
        cur.execute(
            _TREE.format(
                start="SELECT id FROM runs WHERE parent_run_id = %s", cond="= 'cancelled'"
            ),
            (run_id,),
        )
        revived += [r[0] for r in cur.fetchall()]
    for rid in revived:
        cur.execute("SELECT status FROM runs WHERE id = %s", (rid,))
        was = cur.fetchone()[0]
        cur.execute(
            "UPDATE runs SET status = 'queued', attempt = attempt + 1, ready_at = %s,"
            " error = NULL, output = NULL, finished_at = NULL, crash_count = 0, updated_at = %s"
            " WHERE id = %s RETURNING parent_run_id",
            (now, now, rid),
        )
        parent = cur.fetchone()[0]
        if parent:
            column = "children_cancelled" if was == model.CANCELLED else "children_failed"
            cur.execute(
                f"UPDATE runs SET children_done = GREATEST(children_done - 1, 0),"
                f" {column} = GREATEST({column} - 1, 0) WHERE id = %s",
                (parent,),
            )


def replay_run(cur: Cursor, run_id: str, *, from_step: str | None, now: float) -> str:
    _require_run(cur, run_id)
    cur.execute("SELECT task_id, payload FROM runs WHERE id = %s", (run_id,))
    task_id, payload = cur.fetchone()
    copy: list[_OldStep] = []
    skipped: list[str] = []
    if from_step is not None:
        cur.execute(
            f"SELECT {', '.join(_OldStep._fields)} FROM steps WHERE run_id = %s ORDER BY seq",
            (run_id,),
        )
        copy, skipped = _steps_to_copy(run_id, [_OldStep(*r) for r in cur.fetchall()], from_step)
    [(new_id, _)] = insert_runs(cur, [RunSpec(task_id, payload, replay_of=run_id)], now)
    copy_flow_keys(cur, run_id, new_id)
    for s in copy:
        cur.execute(
            "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
            " output, started_at, finished_at, child_run_ids, fn, args_hash, copied)"
            " VALUES (%s, %s, %s, %s, 'completed', %s, 1, 1, %s, %s, %s, %s, %s, %s, 1)",
            (
                new_id,
                s.key,
                s.name,
                s.kind,
                s.seq,
                s.output,
                s.started_at,
                s.finished_at,
                s.child_run_ids,
                s.fn,
                s.args_hash,
            ),
        )
    if skipped:
        cur.execute(
            "INSERT INTO logs (run_id, at, level, message, step_key)"
            " VALUES (%s, %s, 'WARNING', %s, NULL)",
            (
                new_id,
                now,
                f"replay of run {run_id} from step {from_step!r}: not "
                f"copied, so they run again: {'; '.join(skipped)}",
            ),
        )
    return new_id


def wake_run(cur: Cursor, run_id: str, now: float) -> str:
    status, _ = _require_run(cur, run_id)
    cur.execute("SELECT ready_at, attempt FROM runs WHERE id = %s", (run_id,))
    ready_at, attempt = cur.fetchone()
    if status not in (model.WAITING, model.QUEUED) or ready_at is None or ready_at <= now:
        waits = []
        if status == model.WAITING:
            cur.execute(
                "SELECT name, match FROM event_waits WHERE run_id = %s ORDER BY since, step_key",
                (run_id,),
            )
            waits = cur.fetchall()
        raise InvalidState(
            _event_wait_refusal(run_id, waits) or _nothing_to_wake(run_id, status, ready_at)
        )
    woken: list[str] = []
    cur.execute(
        "SELECT key, output FROM steps WHERE run_id = %s AND kind = 'sleep' AND status = 'waiting'",
        (run_id,),
    )
    for key, output in cur.fetchall():
        try:
            wake_at = codec.loads(output)["wake_at"] if output else None
        except (ValueError, TypeError, KeyError):
            wake_at = None
        if wake_at is not None and wake_at > now:
            cur.execute(
                "UPDATE steps SET output = %s WHERE run_id = %s AND key = %s",
                (codec.dumps({"wake_at": now}), run_id, key),
            )
            woken.append(f"its sleep {key!r} ends now")
    woken += _time_out_event_waits(cur, run_id, now)
    cur.execute(
        "UPDATE steps SET retry_at = %s WHERE run_id = %s AND status = 'retrying'"
        " AND retry_at > %s RETURNING key",
        (now, run_id, now),
    )
    woken += [f"its step {key!r} is retried now" for (key,) in cur.fetchall()]
    if not woken:
        woken.append(
            f"its retry (attempt {attempt}) starts now"
            if status == model.QUEUED
            else "it resumes now"
        )
    cur.execute("UPDATE runs SET ready_at = %s, updated_at = %s WHERE id = %s", (now, now, run_id))
    what = "; ".join(woken)
    cur.execute(
        "INSERT INTO logs (run_id, at, level, message, step_key) VALUES (%s, %s, 'INFO', %s, NULL)",
        (run_id, now, f"woken by user: {what}"),
    )
    return what


def _time_out_event_waits(cur: Cursor, run_id: str, now: float) -> list[str]:
    """As on SQLite (`user_actions._time_out_event_waits`): a wait with a timeout times
    out now, in its step's output and in its wait row."""
    cur.execute(
        "SELECT w.step_key, w.name, s.output FROM event_waits w"
        " JOIN steps s ON s.run_id = w.run_id AND s.key = w.step_key"
        " AND s.status = 'waiting'"
        " WHERE w.run_id = %s AND w.timeout_at > %s ORDER BY w.since, w.step_key",
        (run_id, now),
    )
    woken = []
    for key, name, output_text in cur.fetchall():
        output = _timed_out_now(output_text, now)
        if output is None:
            continue
        cur.execute(
            "UPDATE steps SET output = %s WHERE run_id = %s AND key = %s", (output, run_id, key)
        )
        cur.execute(
            "UPDATE event_waits SET timeout_at = %s WHERE run_id = %s AND step_key = %s",
            (now, run_id, key),
        )
        woken.append(f"its wait {key!r} for event {name} times out now")
    return woken
