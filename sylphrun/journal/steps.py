"""The steps of a run and its log, as the worker executing it writes them.

These are the hot writes (two per step), so the two every step makes check the lease inside
the statement (`fence.OWNED`) rather than with a SELECT first, and announce themselves with
an event row only when the worker asks (`notify`; see schema V2). Not to be confused with
`sylphrun.runtime.steps`, the replay-or-record logic that calls them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sylphrun import codec, model
from sylphrun.journal import fence
from sylphrun.journal.connection import Connection
from sylphrun.journal.fence import LeaseLost
from sylphrun.journal.transitions import RunSpec, finish, insert_children, interrupt_running_steps

_STEP_EVENT = "INSERT INTO events (at, run_id, kind, step_key) VALUES (?, ?, ?, ?)"
_RUNNING = f"step.{model.STEP_RUNNING}"
_COMPLETED = f"step.{model.STEP_COMPLETED}"


def record_trigger_step(
    conn: Connection,
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
    list_children: bool = True,
) -> tuple[list[str], str]:
    """A parent's trigger step: its children and the completed step, in one transaction.

    Either both exist after a crash or neither does, so a resumed parent finds the step
    and never creates its children twice. `output_of(child_ids)` builds the step's JSON.
    `list_children=False`: the last chunk of a large batch (see `trigger._trigger_in_run`),
    whose children are found by their keys, not listed in the step (1M ids: 46 MB).
    """
    with conn.write() as db:
        # The step's event goes first: a reader then shows the parent's steps up to here
        # before the lines of the children it queued (their events follow in this commit).
        # Its row is stamped as written before that event, for the same order.
        change_seq = db.execute(f"SELECT {_CHANGE_SEQ}").fetchone()[0]
        db.execute(_STEP_EVENT, (now, run_id, "step.completed", key))
        child_ids = [rid for rid, _ in insert_children(db, run_id, epoch, specs, now)]
        output = output_of(child_ids)
        db.execute(
            "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
            " output, started_at, finished_at, child_run_ids, change_seq)"
            " VALUES (?, ?, ?, 'trigger', 'completed', ?, 1, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, key) DO UPDATE SET status = 'completed',"
            " output = excluded.output,"
            " finished_at = excluded.finished_at, child_run_ids = excluded.child_run_ids,"
            " change_seq = excluded.change_seq",
            (
                run_id,
                key,
                name,
                seq,
                run_attempt,
                output,
                now,
                now,
                _json_list(child_ids) if list_children else None,
                change_seq,
            ),
        )
        return child_ids, output


def _json_list(ids: Sequence[str]) -> str:
    return codec.dumps(list(ids), what="the child run ids")


def record_step_interrupted(
    conn: Connection, run_id: str, epoch: int, *, key: str, reason: str, now: float
) -> None:
    """A step whose execution ended without a result while its run goes on (the user's
    code cancelled it): journaled as an interrupted attempt, not left 'running'."""
    with conn.write() as db:
        fence.check(db, run_id, epoch)
        db.execute(
            "INSERT OR REPLACE INTO step_attempts SELECT run_id, key, attempts, run_attempt,"
            " 'interrupted', ?, NULL, started_at, ? FROM steps"
            " WHERE run_id = ? AND key = ? AND status = 'running'",
            (f"interrupted: {reason}", now, run_id, key),
        )
        db.execute(
            "UPDATE steps SET status = 'interrupted', finished_at = ?"
            " WHERE run_id = ? AND key = ? AND status = 'running'",
            (now, run_id, key),
        )


def _write_with_event(
    conn: Connection,
    sql: str,
    params: tuple,
    run_id: str,
    key: str,
    event: str,
    now: float,
    sync: bool,
) -> int:
    """One fenced step write with its event row in the same commit (see schema V2: the two
    hot step writes announce themselves only when the worker asks, `notify`; without it
    they are one `write_one`, called by them directly: one call less on a step's path)."""
    with conn.write(sync=sync) as db:
        changed = db.execute(sql, params).rowcount
        if changed:
            db.execute(_STEP_EVENT, (now, run_id, event, key))
        return changed


# A step row's place in the change feed (schema V6_STEP_CHANGE_SEQ), set by every write
# that changes what a reader shows of it, in the statement itself: a read of the events
# table's last page, no second page written. The largest event id, read as the last row
# (`id` is the rowid): the same value as MAX(id), without the aggregate's machinery (~2,000
# instructions less per step, measured with callgrind).
_CHANGE_SEQ = "COALESCE((SELECT id FROM events ORDER BY id DESC LIMIT 1), 0)"

_START_STEP = (
    "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt, started_at,"
    f" fn, args_hash, change_seq) SELECT ?, ?, ?, ?, 'running', ?, 1, ?, ?, ?, ?, {_CHANGE_SEQ}"
    f" WHERE {fence.OWNED}"
    " ON CONFLICT (run_id, key) DO UPDATE SET status = 'running', kind = excluded.kind,"
    " attempts = attempts + (status != 'waiting'), run_attempt = excluded.run_attempt,"
    " started_at = excluded.started_at, finished_at = NULL, error = NULL, retry_at = NULL,"
    " fatal = 0, fn = excluded.fn, args_hash = excluded.args_hash,"
    " change_seq = excluded.change_seq"
)


def record_step_start(
    conn: Connection,
    run_id: str,
    epoch: int,
    *,
    key: str,
    name: str,
    kind: str,
    seq: int,
    run_attempt: int,
    now: float,
    notify: bool = True,
    fn: str | None = None,
    args_hash: str | None = None,
) -> None:
    """Journal that a step is about to run, before its function is called, with the call
    its result will belong to (`fn`, `args_hash`: see `runtime.divergence`).

    A start with no result after a crash is an in-doubt attempt, shown as interrupted.
    Not synced even with durability "full": the step's result commit is, and syncing the
    WAL syncs this earlier commit with it. A power cut before then loses only the marker;
    the step runs again with the same idempotency key either way. One fsync per step
    instead of two. `notify=False` leaves the event to a coalesced `note_step_change`.
    """
    params = (run_id, key, name, kind, seq, run_attempt, now, fn, args_hash, run_id, epoch)
    if notify:
        changed = _write_with_event(conn, _START_STEP, params, run_id, key, _RUNNING, now, False)
    else:
        changed = conn.write_one(_START_STEP, params, sync=False)
    if not changed:
        raise LeaseLost(run_id)


_STEP_RESULT = (
    "UPDATE steps SET status = 'completed', output = ?, finished_at = ?, error = NULL,"
    f" compensate = ?, change_seq = {_CHANGE_SEQ} WHERE run_id = ? AND key = ? AND {fence.OWNED}"
)


def record_step_result(
    conn: Connection,
    run_id: str,
    epoch: int,
    *,
    key: str,
    output: str,
    now: float,
    compensate: str | None = None,
    notify: bool = True,
) -> None:
    params = (output, now, compensate, run_id, key, run_id, epoch)
    if notify:
        changed = _write_with_event(conn, _STEP_RESULT, params, run_id, key, _COMPLETED, now, True)
    else:
        changed = conn.write_one(_STEP_RESULT, params)
    if not changed:
        with conn.read() as db:
            fence.check(db, run_id, epoch)  # raises LeaseLost if that is why nothing changed
        raise RuntimeError(f"step {key!r} of run {run_id} has no start record")


def note_step_change(
    conn: Connection, run_id: str, epoch: int, *, key: str, status: str, now: float
) -> None:
    """The event for step changes written without one (the last of a burst). Not synced:
    it only tells readers to look at the run's steps again. Fenced all the same: a flush
    landing after the run was cancelled or taken over would announce stale steps after
    the run's own last event."""
    conn.write_one(
        f"INSERT INTO events (at, run_id, kind, step_key) SELECT ?, ?, ?, ? WHERE {fence.OWNED}",
        (now, run_id, f"step.{status}", key, run_id, epoch),
        sync=False,
    )


def mark_step_diverged(
    conn: Connection, run_id: str, epoch: int, *, key: str, error: str | None
) -> None:
    """Mark a completed step as the one the code diverged at (`error`), or clear the mark
    once a retried run's code matches it again. Its journaled result stays."""
    with conn.write() as db:
        fence.check(db, run_id, epoch)
        db.execute(
            "UPDATE steps SET error = ? WHERE run_id = ? AND key = ? AND status = 'completed'",
            (error, run_id, key),
        )


def record_divergence(
    conn: Connection, run_id: str, epoch: int, *, key: str, error: str, now: float
) -> None:
    """The run stops at step `key` as diverged, in one transaction: the step marked, steps
    left 'running' (the divergence passed through a step calling steps) interrupted, the
    run failed with `error`. No retry is scheduled: the same code would diverge again."""
    with conn.write() as db:
        fence.check(db, run_id, epoch)
        db.execute(
            "UPDATE steps SET error = ? WHERE run_id = ? AND key = ? AND status = 'completed'",
            (error, run_id, key),
        )
        interrupt_running_steps(db, run_id, now, "interrupted: the run stopped as diverged")
        finish(db, run_id, model.FAILED, None, error, None, now)


def record_step_failure(
    conn: Connection,
    run_id: str,
    epoch: int,
    *,
    key: str,
    error: str,
    traceback: str | None,
    retry_at: float | None,
    fatal: bool = False,
    now: float,
) -> None:
    """A failed step attempt: 'retrying' if the step's own policy runs it again at
    `retry_at`, else 'failed' for this run attempt."""
    status = model.STEP_RETRYING if retry_at is not None else model.STEP_FAILED
    with conn.write() as db:
        fence.check(db, run_id, epoch)
        row = db.execute(
            "UPDATE steps SET status = ?, error = ?, retry_at = ?, fatal = ?, finished_at = ?"
            " WHERE run_id = ? AND key = ? RETURNING attempts, run_attempt, started_at",
            (status, error, retry_at, int(fatal), now, run_id, key),
        ).fetchone()
        db.execute(
            "INSERT OR REPLACE INTO step_attempts VALUES (?, ?, ?, ?, 'failed', ?, ?, ?, ?)",
            (run_id, key, row[0], row[1], error, traceback, row[2], now),
        )


def record_step_waiting(
    conn: Connection,
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
    """A sleep or wait step that has begun: `output` holds what it waits for (a wake time).
    A step a cancel ended waits again once the run is retried (the same `output`): `wake`
    and the dashboard find it as the waiting step it is."""
    with conn.write() as db:
        fence.check(db, run_id, epoch)
        db.execute(
            "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
            " output, started_at) VALUES (?, ?, ?, ?, 'waiting', ?, 1, ?, ?, ?)"
            " ON CONFLICT (run_id, key) DO UPDATE SET status = 'waiting', finished_at = NULL"
            " WHERE steps.status = 'cancelled'",
            (run_id, key, name, kind, seq, run_attempt, output, now),
        )


def record_completed_step(
    conn: Connection,
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
    """A step whose start and result are written together (a wait that found its answer)."""
    with conn.write() as db:
        fence.check(db, run_id, epoch)
        db.execute(
            "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
            " output, started_at, finished_at, change_seq)"
            f" VALUES (?, ?, ?, ?, 'completed', ?, 1, ?, ?, ?, ?, {_CHANGE_SEQ})"
            " ON CONFLICT (run_id, key) DO UPDATE SET status = 'completed',"
            " output = excluded.output, finished_at = excluded.finished_at,"
            " change_seq = excluded.change_seq",
            (run_id, key, name, kind, seq, run_attempt, output, started_at, now),
        )
        db.execute(_STEP_EVENT, (now, run_id, "step.completed", key))


def append_log(
    conn: Connection,
    run_id: str,
    *,
    level: str,
    message: str,
    step_key: str | None,
    now: float,
    epoch: int | None = None,
) -> None:
    """A log line of a run. From the run's code, `epoch` fences it like every other write:
    a worker paused past its lease must not add lines to a run another worker now owns."""
    with conn.write() as db:
        if epoch is None:
            db.execute(
                "INSERT INTO logs (run_id, at, level, message, step_key) VALUES (?, ?, ?, ?, ?)",
                (run_id, now, level, message, step_key),
            )
            return
        changed = db.execute(
            "INSERT INTO logs (run_id, at, level, message, step_key)"
            f" SELECT ?, ?, ?, ?, ? WHERE {fence.OWNED}",
            (run_id, now, level, message, step_key, run_id, epoch),
        ).rowcount
        if not changed:
            raise LeaseLost(run_id)
