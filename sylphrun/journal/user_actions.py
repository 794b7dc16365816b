"""Actions a user takes on runs, from the CLI or the dashboard: cancel, retry, replay.

Unlike a worker's writes these are not fenced: they act on a run whoever holds it, and
fence out its worker instead (a cancel bumps the lease epoch, so the worker's next write
fails and it stops at that step boundary). They check what the user asked for and raise
the errors a user can cause (`UnknownRun`, `InvalidState`).
"""

from __future__ import annotations

import shlex
import sqlite3
from typing import NamedTuple

from sylphrun import codec, model
from sylphrun.errors import InvalidState, ReplayFromCompensation, UnknownRun
from sylphrun.journal import flow
from sylphrun.journal.connection import Connection
from sylphrun.journal.transitions import (
    TERMINAL,
    RunSpec,
    cancel_open_steps,
    finish,
    insert_runs,
)

# The key prefix of the undo steps `compensate=` registers (runtime.run).
COMPENSATE_PREFIX = "compensate:"


def _require_run(db: sqlite3.Connection, run_id: str) -> tuple[str, str]:
    row = db.execute("SELECT status, task_id FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise UnknownRun(f"no run {run_id!r} in this journal; `sylphrun runs` lists them")
    return row[0], row[1]


def cancel_run(conn: Connection, run_id: str, now: float) -> list[str]:
    """Cancel a run and its unfinished descendants. Returns the ids cancelled.

    Bumping the lease epoch fences out a worker still executing the run: its next write
    fails, and it stops at that step boundary.
    """
    with conn.write() as db:
        status, _ = _require_run(db, run_id)
        if status in model.TERMINAL_STATES:
            raise InvalidState(f"run {run_id} is already {status}; nothing to cancel")
        ids = [
            r[0]
            for r in db.execute(
                "WITH RECURSIVE tree(id) AS (SELECT ? UNION ALL"
                " SELECT r.id FROM runs r JOIN tree t ON r.parent_run_id = t.id)"
                " SELECT tree.id FROM tree JOIN runs USING (id)"
                f" WHERE runs.status NOT IN {TERMINAL}",
                (run_id,),
            ).fetchall()
        ]
        for rid in ids:
            cancel_open_steps(db, rid, now)
            finish(db, rid, model.CANCELLED, None, "cancelled", None, now)
        return ids


def retry_run(conn: Connection, run_id: str, now: float) -> None:
    """Resume a failed or cancelled run as a new attempt; completed steps are kept."""
    with conn.write() as db:
        status, _ = _require_run(db, run_id)
        if status not in (model.FAILED, model.CANCELLED):
            hint = "; use `sylphrun replay` to run it again" if status == model.COMPLETED else ""
            raise InvalidState(
                f"run {run_id} is {status}: only a failed or cancelled run can be retried{hint}"
            )
        compensated = db.execute(
            "SELECT 1 FROM steps WHERE run_id = ? AND kind = 'compensation'"
            " AND status = 'completed' LIMIT 1",
            (run_id,),
        ).fetchone()
        if compensated:
            # Its compensations undid earlier steps' effects; resuming would skip those
            # steps as done and act on effects that no longer exist (ship an order whose
            # payment was refunded). Starting over is the safe choice.
            raise InvalidState(
                f"run {run_id} ran compensations that undid its completed steps; retrying would "
                f"skip them. Use `sylphrun replay {run_id}` to start it over"
            )
        # A cancel cascades to unfinished children; so does the retry that undoes it, or the
        # parent would resume only to collect the children's "cancelled" results.
        revived = (
            [run_id]
            + [
                r[0]
                for r in db.execute(
                    "WITH RECURSIVE tree(id) AS"
                    " (SELECT id FROM runs WHERE parent_run_id = ? UNION ALL"
                    " SELECT r.id FROM runs r JOIN tree t ON r.parent_run_id = t.id)"
                    " SELECT tree.id FROM tree JOIN runs USING (id)"
                    " WHERE runs.status = 'cancelled'",
                    (run_id,),
                ).fetchall()
            ]
            if status == model.CANCELLED
            else [run_id]
        )
        for rid in revived:
            was = db.execute("SELECT status FROM runs WHERE id = ?", (rid,)).fetchone()[0]
            parent = db.execute(
                "UPDATE runs SET status = 'queued', attempt = attempt + 1, ready_at = ?,"
                " error = NULL, output = NULL, finished_at = NULL, crash_count = 0, updated_at = ?"
                " WHERE id = ? RETURNING parent_run_id",
                (now, now, rid),
            ).fetchone()[0]
            if parent:
                column = "children_cancelled" if was == model.CANCELLED else "children_failed"
                db.execute(
                    "UPDATE runs SET children_done = MAX(children_done - 1, 0),"
                    f" {column} = MAX({column} - 1, 0) WHERE id = ?",
                    (parent,),
                )


class _OldStep(NamedTuple):
    key: str
    name: str
    kind: str
    status: str
    seq: int
    output: str | None
    started_at: float | None
    finished_at: float | None
    child_run_ids: str | None
    fn: str | None
    args_hash: str | None


def replay_run(conn: Connection, run_id: str, *, from_step: str | None, now: float) -> str:
    """A new run with the same payload; with `from_step`, the completed steps before it are
    copied, except those whose effect a compensation undid (see `_steps_to_copy`). The new
    run's log says which were not copied and why."""
    with conn.write() as db:
        _require_run(db, run_id)
        task_id, payload = db.execute(
            "SELECT task_id, payload FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        copy: list[_OldStep] = []
        skipped: list[str] = []
        if from_step is not None:
            steps = [
                _OldStep(*r)
                for r in db.execute(
                    f"SELECT {', '.join(_OldStep._fields)} FROM steps"
                    " WHERE run_id = ? ORDER BY seq",
                    (run_id,),
                )
            ]
            copy, skipped = _steps_to_copy(run_id, steps, from_step)
        [(new_id, _)] = insert_runs(db, [RunSpec(task_id, payload, replay_of=run_id)], now)
        flow.copy_flow_keys(db, run_id, new_id)
        for s in copy:
            db.execute(
                "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
                " output, started_at, finished_at, child_run_ids, fn, args_hash, copied)"
                " VALUES (?, ?, ?, ?, 'completed', ?, 1, 1, ?, ?, ?, ?, ?, ?, 1)",
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
            db.execute(
                "INSERT INTO logs (run_id, at, level, message, step_key) VALUES (?, ?, ?, ?, NULL)",
                (
                    new_id,
                    now,
                    "WARNING",
                    f"replay of run {run_id} from step {from_step!r}: not "
                    f"copied, so they run again: {'; '.join(skipped)}",
                ),
            )
        return new_id


def _steps_to_copy(
    run_id: str, steps: list[_OldStep], from_step: str
) -> tuple[list[_OldStep], list[str]]:
    """The completed steps before `from_step` that a replay may take as done, and why the
    others among them were left out.

    A replay must never build on an effect that was undone: a step whose registered undo
    (`compensate:<key>`) completed runs again. The seed's try/except saga journals its undo
    steps as `kind = "compensation"` but not which steps they undid, so every forward step
    before the first of them runs again too (conservative: a repeated effect has an
    idempotency key; a refunded charge taken as paid has nothing). Compensations themselves
    are never copied: they belong to the original run's effects.
    """
    keys = [s.key for s in steps]
    if from_step not in keys:
        shown = ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else "")
        raise InvalidState(
            f"run {run_id} has no step {from_step!r}; its steps are: {shown or '(none)'}"
        )
    start = steps[keys.index(from_step)]
    if start.kind == model.COMPENSATION or from_step.startswith(COMPENSATE_PREFIX):
        raise ReplayFromCompensation(
            f"step {from_step!r} of run {run_id} is a compensation (it undid other steps); "
            "replay from a forward step, or without --from-step"
        )
    undone = {
        s.key[len(COMPENSATE_PREFIX) :]
        for s in steps
        if s.kind == model.COMPENSATION
        and s.status == model.STEP_COMPLETED
        and s.key.startswith(COMPENSATE_PREFIX)
    }
    first_seed_undo = min(
        (
            s.seq
            for s in steps
            if s.kind == model.COMPENSATION
            and s.status == model.STEP_COMPLETED
            and not s.key.startswith(COMPENSATE_PREFIX)
        ),
        default=None,
    )
    copy: list[_OldStep] = []
    skipped: list[str] = []
    for s in steps:
        if s.seq >= start.seq or s.status != model.STEP_COMPLETED or s.kind == model.COMPENSATION:
            continue
        if s.key in undone:
            skipped.append(f"{s.key!r} (undone by {COMPENSATE_PREFIX + s.key!r})")
        elif first_seed_undo is not None and s.seq < first_seed_undo:
            skipped.append(
                f"{s.key!r} (a compensation step ran after it; what it undid is not recorded)"
            )
        else:
            copy.append(s)
    return copy, skipped


def wake_run(conn: Connection, run_id: str, now: float) -> str:
    """Move a sleeping run's wake time, or a retry's back-off, to `now` (a developer testing
    a flow does not want to wait an hour). Returns what was woken, e.g. "its sleep 'x'".

    A sleep step keeps its wake time in its output (`{"wake_at": ...}`) and a retrying step
    in `retry_at`; the run is claimable at `ready_at`. All three move, so the resumed run
    finds its sleep over (the step completes as usual) and its step's retry due.
    """
    with conn.write() as db:
        status, _ = _require_run(db, run_id)
        ready_at, attempt = db.execute(
            "SELECT ready_at, attempt FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if status not in (model.WAITING, model.QUEUED) or ready_at is None or ready_at <= now:
            raise InvalidState(
                _waits_for_an_event(db, run_id, status)
                or _nothing_to_wake(run_id, status, ready_at)
            )
        woken: list[str] = []
        for key, output in db.execute(
            "SELECT key, output FROM steps WHERE run_id = ? AND kind = 'sleep'"
            " AND status = 'waiting'",
            (run_id,),
        ).fetchall():
            try:
                wake_at = codec.loads(output)["wake_at"] if output else None
            except (ValueError, TypeError, KeyError):
                wake_at = None  # a damaged row: the run's ready_at still moves
            if wake_at is not None and wake_at > now:
                db.execute(
                    "UPDATE steps SET output = ? WHERE run_id = ? AND key = ?",
                    (codec.dumps({"wake_at": now}), run_id, key),
                )
                woken.append(f"its sleep {key!r} ends now")
        woken += _time_out_event_waits(db, run_id, now)
        for (key,) in db.execute(
            "UPDATE steps SET retry_at = ? WHERE run_id = ? AND status = 'retrying'"
            " AND retry_at > ? RETURNING key",
            (now, run_id, now),
        ).fetchall():
            woken.append(f"its step {key!r} is retried now")
        if not woken:
            woken.append(
                f"its retry (attempt {attempt}) starts now"
                if status == model.QUEUED
                else "it resumes now"
            )
        db.execute("UPDATE runs SET ready_at = ?, updated_at = ? WHERE id = ?", (now, now, run_id))
        what = "; ".join(woken)
        # A log line journals the user's action (and its event tells the dashboards).
        db.execute(
            "INSERT INTO logs (run_id, at, level, message, step_key)"
            " VALUES (?, ?, 'INFO', ?, NULL)",
            (run_id, now, f"woken by user: {what}"),
        )
        return what


def _time_out_event_waits(db: sqlite3.Connection, run_id: str, now: float) -> list[str]:
    """A `wait_for_event` with a timeout times out now (as a sleep ends now): its step's
    output holds the timeout the resumed run reads, its wait row the one senders see."""
    woken = []
    for key, name in db.execute(
        "SELECT step_key, name FROM event_waits WHERE run_id = ?"
        " AND timeout_at > ? ORDER BY since, step_key",
        (run_id, now),
    ).fetchall():
        row = db.execute(
            "SELECT output FROM steps WHERE run_id = ? AND key = ? AND status = 'waiting'",
            (run_id, key),
        ).fetchone()
        output = _timed_out_now(row[0] if row else None, now)
        if output is None:
            continue  # a damaged row: the run's ready_at still moves
        db.execute(
            "UPDATE steps SET output = ? WHERE run_id = ? AND key = ?", (output, run_id, key)
        )
        db.execute(
            "UPDATE event_waits SET timeout_at = ? WHERE run_id = ? AND step_key = ?",
            (now, run_id, key),
        )
        woken.append(f"its wait {key!r} for event {name} times out now")
    return woken


def _timed_out_now(output_text: str | None, now: float) -> str | None:
    """A waiting `wait_for_event` step's output with its timeout moved to `now` (None for a
    damaged one). Shared with the PostgreSQL journal: the rule is the journal's, not SQL."""
    try:
        output = codec.loads(output_text) if output_text else None
    except ValueError:
        return None
    if not isinstance(output, dict):
        return None
    output["timeout_at"] = now
    return codec.dumps(output)


def _waits_for_an_event(db: sqlite3.Connection, run_id: str, status: str) -> str | None:
    if status != model.WAITING:
        return None
    waits = db.execute(
        "SELECT name, match FROM event_waits WHERE run_id = ? ORDER BY since, step_key", (run_id,)
    ).fetchall()
    return _event_wait_refusal(run_id, waits)


def _event_wait_refusal(run_id: str, waits: list[tuple[str, str | None]]) -> str | None:
    """A run parked on `wait_for_event` with no timeout: what it waits for and the send
    that ends the wait (wake cannot: an event is the user's data, not a time). `waits`:
    (event name, match as JSON) of its open waits. Shared with the PostgreSQL journal."""
    if not waits:
        return None
    texts, sends = [], []
    for name, match_text in waits:
        try:
            match = codec.loads(match_text) if match_text else {}
        except ValueError:
            match = {}  # a damaged row: still say which event
        match = match if isinstance(match, dict) else {}
        where = ", ".join(f"{k}={codec.dumps(v)}" for k, v in match.items())
        texts.append(f"event {name}" + (f" where {where}" if where else ""))
        data = f" --data {shlex.quote(codec.dumps(match))}" if match else ""
        sends.append(f"sylphrun send {shlex.quote(name)}{data}")
    return (
        f"run {run_id} is waiting for {' and '.join(texts)}, not sleeping: nothing to "
        f"wake; send it: {'; '.join(sends)}"
    )


def _nothing_to_wake(run_id: str, status: str, ready_at: float | None) -> str:
    if status == model.WAITING:
        return (
            f"run {run_id} is waiting for its child runs, not sleeping: nothing to wake "
            "(it resumes when they finish)"
        )
    if status == model.QUEUED:
        return f"run {run_id} is queued and due now: nothing to wake (is a worker running?)"
    return f"run {run_id} is {status}: only a sleeping run or one waiting for a retry can be woken"
