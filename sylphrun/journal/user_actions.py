"""Actions a user takes on runs, from the CLI or the dashboard: cancel, retry, replay.

Unlike a worker's writes these are not fenced: they act on a run whoever holds it, and
fence out its worker instead (a cancel bumps the lease epoch, so the worker's next write
fails and it stops at that step boundary). They check what the user asked for and raise
the errors a user can cause (`UnknownRun`, `InvalidState`).
"""

from __future__ import annotations

import json
import sqlite3

from sylphrun import model
from sylphrun.errors import InvalidState, UnknownRun
from sylphrun.journal.connection import Connection
from sylphrun.journal.transitions import (
    TERMINAL,
    RunSpec,
    finish,
    insert_runs,
    interrupt_running_steps,
)


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
        ids = [r[0] for r in db.execute(
            "WITH RECURSIVE tree(id) AS (SELECT ? UNION ALL"
            " SELECT r.id FROM runs r JOIN tree t ON r.parent_run_id = t.id)"
            f" SELECT tree.id FROM tree JOIN runs USING (id) WHERE runs.status NOT IN {TERMINAL}",
            (run_id,),
        ).fetchall()]
        for rid in ids:
            interrupt_running_steps(db, rid, now, "interrupted: the run was cancelled while "
                                     "the step ran; whatever it returns is not journaled")
            finish(db, rid, model.CANCELLED, None, "cancelled", None, now)
        return ids


def retry_run(conn: Connection, run_id: str, now: float) -> None:
    """Resume a failed or cancelled run as a new attempt; completed steps are kept."""
    with conn.write() as db:
        status, _ = _require_run(db, run_id)
        if status not in (model.FAILED, model.CANCELLED):
            hint = "; use `sylphrun replay` to run it again" if status == model.COMPLETED else ""
            raise InvalidState(f"run {run_id} is {status}: only a failed or cancelled run can be retried{hint}")
        compensated = db.execute(
            "SELECT 1 FROM steps WHERE run_id = ? AND kind = 'compensation' AND status = 'completed' LIMIT 1",
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
        revived = [run_id] + [r[0] for r in db.execute(
            "WITH RECURSIVE tree(id) AS (SELECT id FROM runs WHERE parent_run_id = ? UNION ALL"
            " SELECT r.id FROM runs r JOIN tree t ON r.parent_run_id = t.id)"
            " SELECT tree.id FROM tree JOIN runs USING (id) WHERE runs.status = 'cancelled'",
            (run_id,),
        ).fetchall()] if status == model.CANCELLED else [run_id]
        for rid in revived:
            parent = db.execute(
                "UPDATE runs SET status = 'queued', attempt = attempt + 1, ready_at = ?,"
                " error = NULL, output = NULL, finished_at = NULL, crash_count = 0, updated_at = ?"
                " WHERE id = ? RETURNING parent_run_id",
                (now, now, rid),
            ).fetchone()[0]
            if parent:
                db.execute(
                    "UPDATE runs SET children_done = MAX(children_done - 1, 0),"
                    " children_failed = MAX(children_failed - 1, 0) WHERE id = ?",
                    (parent,),
                )


def replay_run(conn: Connection, run_id: str, *, from_step: str | None, now: float) -> str:
    """A new run with the same payload; with `from_step`, earlier completed steps are copied."""
    with conn.write() as db:
        _require_run(db, run_id)
        task_id, payload = db.execute(
            "SELECT task_id, payload FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        copy: list[tuple] = []
        if from_step is not None:
            steps = db.execute(
                "SELECT key, name, kind, status, seq, output, started_at, finished_at, child_run_ids"
                " FROM steps WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
            keys = [s[0] for s in steps]
            if from_step not in keys:
                shown = ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else "")
                raise InvalidState(
                    f"run {run_id} has no step {from_step!r}; its steps are: {shown or '(none)'}"
                )
            cut = steps[keys.index(from_step)][4]
            copy = [s for s in steps if s[4] < cut and s[3] == model.STEP_COMPLETED
                    and s[2] != model.COMPENSATION]
        [(new_id, _)] = insert_runs(db, [RunSpec(task_id, payload, replay_of=run_id)], now)
        for key, name, kind, _, seq, output, started, finished, children in copy:
            db.execute(
                "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
                " output, started_at, finished_at, child_run_ids)"
                " VALUES (?, ?, ?, ?, 'completed', ?, 1, 1, ?, ?, ?, ?)",
                (new_id, key, name, kind, seq, output, started, finished, children),
            )
        return new_id


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
            "SELECT ready_at, attempt FROM runs WHERE id = ?", (run_id,)).fetchone()
        if status not in (model.WAITING, model.QUEUED) or ready_at is None or ready_at <= now:
            raise InvalidState(_nothing_to_wake(run_id, status, ready_at))
        woken: list[str] = []
        for key, output in db.execute(
            "SELECT key, output FROM steps WHERE run_id = ? AND kind = 'sleep'"
            " AND status = 'waiting'", (run_id,),
        ).fetchall():
            try:
                wake_at = json.loads(output)["wake_at"] if output else None
            except (ValueError, TypeError, KeyError):
                wake_at = None  # a damaged row: the run's ready_at still moves
            if wake_at is not None and wake_at > now:
                db.execute("UPDATE steps SET output = ? WHERE run_id = ? AND key = ?",
                           (json.dumps({"wake_at": now}), run_id, key))
                woken.append(f"its sleep {key!r} ends now")
        for (key,) in db.execute(
            "UPDATE steps SET retry_at = ? WHERE run_id = ? AND status = 'retrying'"
            " AND retry_at > ? RETURNING key", (now, run_id, now),
        ).fetchall():
            woken.append(f"its step {key!r} is retried now")
        if not woken:
            woken.append(f"its retry (attempt {attempt}) starts now" if status == model.QUEUED
                         else "it resumes now")
        db.execute("UPDATE runs SET ready_at = ?, updated_at = ? WHERE id = ?", (now, now, run_id))
        what = "; ".join(woken)
        # A log line journals the user's action (and its event tells the dashboards).
        db.execute(
            "INSERT INTO logs (run_id, at, level, message, step_key) VALUES (?, ?, 'INFO', ?, NULL)",
            (run_id, now, f"woken by user: {what}"),
        )
        return what


def _nothing_to_wake(run_id: str, status: str, ready_at: float | None) -> str:
    if status == model.WAITING:
        return (f"run {run_id} is waiting for its child runs, not sleeping: nothing to wake "
                "(it resumes when they finish)")
    if status == model.QUEUED:
        return f"run {run_id} is queued and due now: nothing to wake (is a worker running?)"
    return (f"run {run_id} is {status}: only a sleeping run or one waiting for a retry "
            "can be woken")
