"""Every write to the journal.

Each function is one short transaction under the fair write lock. Writes a worker makes
for a run it executes carry the lease epoch it claimed the run with, and check it in the
same transaction (`_fence`): a worker that was paused past its lease (SIGSTOP, a long GC,
a suspended laptop) cannot overwrite the work of the worker that took the run over.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sylphrun import model
from sylphrun.errors import InvalidState, UnknownRun
from sylphrun.journal.connection import Connection
from sylphrun.journal.ids import new_run_id

_TERMINAL = "('completed','failed','cancelled')"
MAX_CRASHES = 3
# How long a run of a task no worker knows stays queued before it fails as unknown: long
# enough for a reload to bring up workers running the code that defines it.
UNKNOWN_TASK_GRACE = 30.0


class LeaseLost(BaseException):
    """The run is no longer this worker's: it was cancelled, or another worker claimed it.

    A BaseException so that a user's `except Exception` around `step.run` cannot swallow
    it and carry on writing as if it still owned the run.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


@dataclass(frozen=True)
class RunSpec:
    """A run to create. `payload` is already JSON text (the codec ran at the caller)."""

    task_id: str
    payload: str
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    parent_step_key: str | None = None
    replay_of: str | None = None


@dataclass(frozen=True)
class TaskTerms:
    """What the claim path needs to know of a task a worker can run."""

    concurrency: int | None = None
    timeout: float | None = None
    fingerprint: str | None = None


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


# The fence as a condition inside a write, for the two writes every step makes: one
# statement instead of a SELECT and a write. Parameters: run id, lease epoch.
_OWNED = "EXISTS (SELECT 1 FROM runs WHERE id = ? AND lease_epoch = ? AND status = 'running')"


def _fence(db: sqlite3.Connection, run_id: str, epoch: int) -> None:
    row = db.execute("SELECT lease_epoch, status FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None or row[0] != epoch or row[1] != model.RUNNING:
        raise LeaseLost(run_id)


def _insert_runs(db: sqlite3.Connection, specs: Iterable[RunSpec], now: float) -> list[tuple[str, bool]]:
    """Insert runs, honouring idempotency keys: (run id, created) for each spec, in order."""
    out: list[tuple[str, bool]] = []
    for spec in specs:
        run_id = new_run_id()
        cur = db.execute(
            "INSERT INTO runs (id, task_id, status, payload, idempotency_key, parent_run_id,"
            " parent_step_key, replay_of, created_at, updated_at, ready_at)"
            " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (run_id, spec.task_id, spec.payload, spec.idempotency_key, spec.parent_run_id,
             spec.parent_step_key, spec.replay_of, now, now, now),
        )
        if cur.rowcount == 1:
            out.append((run_id, True))
            continue
        existing = db.execute(
            "SELECT id FROM runs WHERE task_id = ? AND idempotency_key = ?",
            (spec.task_id, spec.idempotency_key),
        ).fetchone()
        if existing is None:  # pragma: no cover - a random id collision; astronomically rare
            raise RuntimeError("run id collision; try again")
        out.append((existing[0], False))
    return out


def enqueue_runs(conn: Connection, specs: Sequence[RunSpec], now: float) -> list[tuple[str, bool]]:
    """Create runs from outside any run (the CLI, a script): one transaction for all."""
    with conn.write() as db:
        return _insert_runs(db, specs, now)


def enqueue_children(
    conn: Connection, run_id: str, epoch: int, specs: Sequence[RunSpec], now: float
) -> list[tuple[str, bool]]:
    """Children created inside a step function (deduplicated by their idempotency keys)."""
    with conn.write() as db:
        return _insert_children(db, run_id, epoch, specs, now)


def _insert_children(
    db: sqlite3.Connection, run_id: str, epoch: int, specs: Sequence[RunSpec], now: float
) -> list[tuple[str, bool]]:
    """Fenced insert of a parent's children; the parent counts only the ones created (an
    idempotency key may hand back an existing run)."""
    _fence(db, run_id, epoch)
    results = _insert_runs(db, specs, now)
    created = sum(1 for _, c in results if c)
    if created:
        db.execute(
            "UPDATE runs SET children_total = children_total + ? WHERE id = ?", (created, run_id)
        )
    return results


def record_trigger_step(
    conn: Connection, run_id: str, epoch: int, *, key: str, name: str, seq: int,
    run_attempt: int, specs: Sequence[RunSpec], output_of: Callable[[list[str]], str], now: float,
) -> tuple[list[str], str]:
    """A parent's trigger step: its children and the completed step, in one transaction.

    Either both exist after a crash or neither does, so a resumed parent finds the step
    and never creates its children twice. `output_of(child_ids)` builds the step's JSON.
    """
    with conn.write() as db:
        child_ids = [rid for rid, _ in _insert_children(db, run_id, epoch, specs, now)]
        output = output_of(child_ids)
        db.execute(
            "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
            " output, started_at, finished_at, child_run_ids)"
            " VALUES (?, ?, ?, 'trigger', 'completed', ?, 1, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, key) DO UPDATE SET status = 'completed', output = excluded.output,"
            " finished_at = excluded.finished_at, child_run_ids = excluded.child_run_ids",
            (run_id, key, name, seq, run_attempt, output, now, now, _json_list(child_ids)),
        )
        db.execute(_STEP_EVENT, (now, run_id, "step.completed", key))
        return child_ids, output


def _json_list(ids: Sequence[str]) -> str:
    return json.dumps(list(ids), separators=(",", ":"))


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
        quota: dict[str, int] = {}
        for task_id, terms in known_tasks.items():
            concurrency = terms.concurrency
            if concurrency is not None:
                # Only live leases: a run whose worker froze past its lease must not hold its
                # own slot, or nobody could take it over (it is claimable below).
                running = db.execute(
                    "SELECT COUNT(*) FROM runs WHERE status = 'running' AND task_id = ?"
                    " AND lease_expires_at >= ?",
                    (task_id, now),
                ).fetchone()[0]
                quota[task_id] = concurrency - running
        blocked = [t for t, q in quota.items() if q <= 0]
        skip = f" AND task_id NOT IN ({','.join('?' * len(blocked))})" if blocked else ""
        # A run of a task this worker does not know may be newer than its code (a task
        # saved and triggered before the reload replaced the workers): leave it to workers
        # that know it. Only after `UNKNOWN_TASK_GRACE` is it taken, to be failed as unknown
        # (a renamed or deleted task) rather than sit in the queue with no word.
        known = json.dumps(list(known_tasks))
        mine = "(task_id IN (SELECT value FROM json_each(?)) OR {col} <= ?)"
        candidates = db.execute(
            f"SELECT id, task_id, crash_count FROM runs WHERE ready_at <= ?{skip}"
            f" AND {mine.format(col='ready_at')} ORDER BY ready_at LIMIT ?",
            (now, *blocked, known, now - UNKNOWN_TASK_GRACE, limit),
        ).fetchall()
        if len(candidates) < limit:
            candidates += db.execute(
                "SELECT id, task_id, crash_count FROM runs WHERE status = 'running'"
                f" AND lease_expires_at < ?{skip} AND {mine.format(col='lease_expires_at')}"
                " LIMIT ?",
                (now, *blocked, known, now - UNKNOWN_TASK_GRACE, limit - len(candidates)),
            ).fetchall()
        # A run that was on a worker when it crashed is a suspect: it may have killed it, or
        # merely shared it. A worker holds at most one suspect, so two suspects never crash
        # together again: an innocent run is blamed at most once per run that crashes its
        # workers, and only that run reaches MAX_CRASHES.
        holds_suspect = db.execute(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE lease_owner = ? AND status = 'running'"
            " AND crash_count > 0)",
            (worker_id,),
        ).fetchone()[0] == 1
        for run_id, task_id, crash_count in candidates:
            if task_id not in known_tasks:
                unknown.append(run_id)
                _finish(db, run_id, model.FAILED, None,
                        f"UnknownTask: no task {task_id!r} is defined in this project "
                        "(was it renamed or deleted?)", None, now)
                continue
            if quota.get(task_id, 1) <= 0 or (crash_count and holds_suspect):
                continue
            if task_id in quota:
                quota[task_id] -= 1
            holds_suspect = holds_suspect or crash_count > 0
            terms = known_tasks[task_id]
            _interrupt_running_steps(db, run_id, now)
            previous = db.execute(
                "SELECT code_fingerprint FROM runs WHERE id = ?", (run_id,)
            ).fetchone()[0]
            row = db.execute(
                "UPDATE runs SET status = 'running', lease_owner = ?, lease_epoch = lease_epoch + 1,"
                " lease_expires_at = ?, ready_at = NULL, deadline_at = ?, code_fingerprint = ?,"
                " started_at = COALESCE(started_at, ?), updated_at = ?"
                " WHERE id = ? RETURNING payload, attempt, lease_epoch, parent_run_id, crash_count, doom",
                (worker_id, now + lease_seconds, now + terms.timeout if terms.timeout else None,
                 terms.fingerprint, now, now, run_id),
            ).fetchone()
            claims.append(Claim(run_id, task_id, *row, previous_fingerprint=previous))
    return claims, unknown


_RUNS_AGAIN = (
    "interrupted: the worker stopped before the step finished; it runs again with the same "
    "idempotency key"
)


def _interrupt_running_steps(
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
            "INSERT OR REPLACE INTO step_attempts VALUES (?, ?, ?, ?, 'interrupted', ?, NULL, ?, ?)",
            (run_id, key, attempts, run_attempt, why, started_at, now),
        )
        db.execute(
            "UPDATE steps SET status = 'interrupted', finished_at = ? WHERE run_id = ? AND key = ?",
            (now, run_id, key),
        )


def record_step_interrupted(
    conn: Connection, run_id: str, epoch: int, *, key: str, reason: str, now: float
) -> None:
    """A step whose execution ended without a result while its run goes on (the user's
    code cancelled it): journaled as an interrupted attempt, not left 'running'."""
    with conn.write() as db:
        _fence(db, run_id, epoch)
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


_STEP_EVENT = "INSERT INTO events (at, run_id, kind, step_key) VALUES (?, ?, ?, ?)"


def _fenced_step_write(conn: Connection, sql: str, params: tuple, *, run_id: str, key: str,
                       status: str, now: float, notify: bool, sync: bool = True) -> int:
    """One fenced step write; with `notify`, its event row in the same commit (see schema V2:
    the two hot step writes announce themselves only when the worker asks)."""
    if not notify:
        return conn.write_one(sql, params, sync=sync)
    with conn.write(sync=sync) as db:
        changed = db.execute(sql, params).rowcount
        if changed:
            db.execute(_STEP_EVENT, (now, run_id, f"step.{status}", key))
        return changed


_START_STEP = (
    "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt, started_at)"
    f" SELECT ?, ?, ?, ?, 'running', ?, 1, ?, ? WHERE {_OWNED}"
    " ON CONFLICT (run_id, key) DO UPDATE SET status = 'running', kind = excluded.kind,"
    " attempts = attempts + (status != 'waiting'), run_attempt = excluded.run_attempt,"
    " started_at = excluded.started_at, finished_at = NULL, error = NULL, retry_at = NULL,"
    " fatal = 0"
)


def record_step_start(
    conn: Connection, run_id: str, epoch: int, *, key: str, name: str, kind: str, seq: int,
    run_attempt: int, now: float, notify: bool = True,
) -> None:
    """Journal that a step is about to run, before its function is called.

    A start with no result after a crash is an in-doubt attempt, shown as interrupted.
    Not synced even with durability "full": the step's result commit is, and syncing the
    WAL syncs this earlier commit with it. A power cut before then loses only the marker;
    the step runs again with the same idempotency key either way. One fsync per step
    instead of two. `notify=False` leaves the event to a coalesced `note_step_change`.
    """
    changed = _fenced_step_write(
        conn, _START_STEP, (run_id, key, name, kind, seq, run_attempt, now, run_id, epoch),
        run_id=run_id, key=key, status=model.STEP_RUNNING, now=now, notify=notify, sync=False,
    )
    if not changed:
        raise LeaseLost(run_id)


_STEP_RESULT = (
    "UPDATE steps SET status = 'completed', output = ?, finished_at = ?, error = NULL,"
    f" compensate = ? WHERE run_id = ? AND key = ? AND {_OWNED}"
)


def record_step_result(
    conn: Connection, run_id: str, epoch: int, *, key: str, output: str, now: float,
    compensate: str | None = None, notify: bool = True,
) -> None:
    changed = _fenced_step_write(
        conn, _STEP_RESULT, (output, now, compensate, run_id, key, run_id, epoch),
        run_id=run_id, key=key, status=model.STEP_COMPLETED, now=now, notify=notify,
    )
    if not changed:
        with conn.read() as db:
            _fence(db, run_id, epoch)  # raises LeaseLost if that is why nothing changed
        raise RuntimeError(f"step {key!r} of run {run_id} has no start record")


def note_step_change(conn: Connection, run_id: str, *, key: str, status: str, now: float) -> None:
    """The event for step changes written without one (the last of a burst). Not fenced
    and not synced: it only tells readers to look at the run's steps again."""
    conn.write_one(_STEP_EVENT, (now, run_id, f"step.{status}", key), sync=False)


def record_step_failure(
    conn: Connection, run_id: str, epoch: int, *, key: str, error: str, traceback: str | None,
    retry_at: float | None, fatal: bool = False, now: float,
) -> None:
    """A failed step attempt: 'retrying' if the step's own policy runs it again at
    `retry_at`, else 'failed' for this run attempt."""
    status = model.STEP_RETRYING if retry_at is not None else model.STEP_FAILED
    with conn.write() as db:
        _fence(db, run_id, epoch)
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
    conn: Connection, run_id: str, epoch: int, *, key: str, name: str, kind: str, seq: int,
    run_attempt: int, output: str, now: float,
) -> None:
    """A sleep or wait step that has begun: `output` holds what it waits for (a wake time)."""
    with conn.write() as db:
        _fence(db, run_id, epoch)
        db.execute(
            "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
            " output, started_at) VALUES (?, ?, ?, ?, 'waiting', ?, 1, ?, ?, ?)"
            " ON CONFLICT (run_id, key) DO NOTHING",
            (run_id, key, name, kind, seq, run_attempt, output, now),
        )


def record_completed_step(
    conn: Connection, run_id: str, epoch: int, *, key: str, name: str, kind: str, seq: int,
    run_attempt: int, output: str, started_at: float, now: float,
) -> None:
    """A step whose start and result are written together (a wait that found its answer)."""
    with conn.write() as db:
        _fence(db, run_id, epoch)
        db.execute(
            "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
            " output, started_at, finished_at) VALUES (?, ?, ?, ?, 'completed', ?, 1, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, key) DO UPDATE SET status = 'completed',"
            " output = excluded.output, finished_at = excluded.finished_at",
            (run_id, key, name, kind, seq, run_attempt, output, started_at, now),
        )
        db.execute(_STEP_EVENT, (now, run_id, "step.completed", key))


def suspend_run(
    conn: Connection, run_id: str, epoch: int, *, children: Sequence[str],
    wake_at: float | None, now: float,
) -> None:
    """Park a run that waits on children and/or a time, freeing its worker slot.

    Waits are registered only for children still unfinished, in the same transaction a
    finishing child uses to wake its waiters, so a wake-up can never be lost between
    "the child is not done" and "the parent is parked".
    """
    with conn.write() as db:
        _fence(db, run_id, epoch)
        pending = 0
        for child in children:
            pending += db.execute(
                "INSERT OR IGNORE INTO waits (child_run_id, run_id) SELECT ?, ?"
                f" WHERE EXISTS (SELECT 1 FROM runs WHERE id = ? AND status NOT IN {_TERMINAL})",
                (child, run_id, child),
            ).rowcount
        ready_at = now if (children and not pending) else wake_at
        # A step whose function was waiting (a fan-in collecting children) is parked with
        # the run, not interrupted: resuming it is not a new attempt.
        db.execute(
            "UPDATE steps SET status = 'waiting' WHERE run_id = ? AND status = 'running'",
            (run_id,),
        )
        db.execute(
            "UPDATE runs SET status = 'waiting', ready_at = ?, lease_owner = NULL,"
            " lease_expires_at = NULL, deadline_at = NULL, updated_at = ? WHERE id = ?",
            (ready_at, now, run_id),
        )


def release_run(conn: Connection, run_id: str, epoch: int, now: float) -> None:
    """Give a run back to the queue at a step boundary (shutdown, reload): no crash counted."""
    with conn.write() as db:
        try:
            _fence(db, run_id, epoch)
        except LeaseLost:
            return
        _requeue(db, run_id, now, crashed=False)


def requeue_after_error(
    conn: Connection, run_id: str, epoch: int, *, error: str, now: float
) -> bool:
    """A run whose execution hit an error of sylphrun's own (a bug, the journal failing):
    back to the queue after a growing delay, counted as a crash; failed with `error` once
    that has happened `MAX_CRASHES` times. Returns True if it failed."""
    with conn.write() as db:
        try:
            _fence(db, run_id, epoch)
        except LeaseLost:
            return False
        crashes = db.execute("SELECT crash_count FROM runs WHERE id = ?", (run_id,)).fetchone()[0] + 1
        if crashes >= MAX_CRASHES:
            _interrupt_running_steps(db, run_id, now, "interrupted: sylphrun failed while the step "
                                     "ran; the run failed (InternalError)")
            _finish(db, run_id, model.FAILED, None,
                    f"InternalError: executing this run failed {crashes} times inside sylphrun "
                    f"(last: {error}); not retried again", None, now)
            return True
        _requeue(db, run_id, now, crashed=True)
        # A short pause, growing: no hot loop, and MAX_CRASHES bounds the tries anyway.
        db.execute("UPDATE runs SET ready_at = ? WHERE id = ?", (now + 0.1 * crashes, run_id))
        return False


def _requeue(db: sqlite3.Connection, run_id: str, now: float, *, crashed: bool) -> None:
    _interrupt_running_steps(db, run_id, now)
    db.execute(
        "UPDATE runs SET status = 'queued', ready_at = ?, lease_owner = NULL,"
        " lease_expires_at = NULL, deadline_at = NULL, lease_epoch = lease_epoch + 1,"
        " crash_count = crash_count + ?, updated_at = ? WHERE id = ?",
        (now, 1 if crashed else 0, now, run_id),
    )


def release_worker_runs(
    conn: Connection, worker_id: str, *, reason: str, crashed: bool, now: float
) -> tuple[list[str], list[str]]:
    """Release every run a dead (or deliberately killed) worker held: (requeued, failed).

    A run that has now killed its worker `MAX_CRASHES` times (a poisoned run: a segfaulting
    C extension, an OOM) is not looped: it is requeued doomed, so that its next execution
    replays the completed steps, fails with WorkerCrashed at the step that was in flight,
    and runs the compensations a saga registered. Failing it here directly (as we once did)
    skipped them: a card charged before the poisoned step was never refunded. A doomed run
    that kills its worker once more (the undo itself crashes) is failed at once.
    """
    requeued: list[str] = []
    failed: list[str] = []
    with conn.write() as db:
        rows = db.execute(
            "SELECT id, crash_count FROM runs WHERE lease_owner = ? AND status = 'running'",
            (worker_id,),
        ).fetchall()
        for run_id, crash_count in rows:
            crashes = crash_count + 1
            error = (f"WorkerCrashed: this run's worker process died {MAX_CRASHES} times while "
                     f"running it (last: {reason}); not retried again. "
                     "`sylphrun show` names the step it was in")
            if crashed and crashes > MAX_CRASHES:
                _interrupt_running_steps(db, run_id, now, f"interrupted: the worker died ({reason})"
                                         " while the step ran; the run failed (WorkerCrashed)")
                _finish(db, run_id, model.FAILED, None, error.replace(
                    f"{MAX_CRASHES} times", f"{crashes} times", 1)
                    + "; the last time while failing, so its compensations did not all run",
                    None, now)
                failed.append(run_id)
            elif crashed and crashes == MAX_CRASHES:
                _interrupt_running_steps(db, run_id, now, f"interrupted: the worker died ({reason})"
                                         " while the step ran; the run fails here (WorkerCrashed)")
                db.execute("UPDATE runs SET doom = ? WHERE id = ?", (error, run_id))
                _requeue(db, run_id, now, crashed=True)
                failed.append(run_id)
            else:
                _requeue(db, run_id, now, crashed=crashed)
                requeued.append(run_id)
    return requeued, failed


def doom_run(conn: Connection, run_id: str, *, error: str, now: float,
             worker_id: str | None = None) -> bool:
    """Mark a run whose worker is about to be replaced because a step overran the task's
    timeout: its next execution replays the completed steps, then fails with `error` at
    the step that was stuck, so its compensations and retry policy still apply. With
    `worker_id`, only while that worker still holds it (it may have finished meanwhile)."""
    owner = " AND lease_owner = ?" if worker_id else ""
    with conn.write() as db:
        return db.execute(
            f"UPDATE runs SET doom = ?, updated_at = ? WHERE id = ? AND status = 'running'{owner}",
            (error, now, run_id, *((worker_id,) if worker_id else ())),
        ).rowcount == 1


def finish_run(
    conn: Connection, run_id: str, epoch: int, *, status: str, output: str | None,
    error: str | None, traceback: str | None, now: float,
) -> None:
    with conn.write() as db:
        _fence(db, run_id, epoch)
        _finish(db, run_id, status, output, error, traceback, now)


def _finish(
    db: sqlite3.Connection, run_id: str, status: str, output: str | None, error: str | None,
    traceback: str | None, now: float,
) -> None:
    # A step still 'running' at the end (a task the user started and never awaited) did
    # not finish: say so rather than leave it running forever.
    _interrupt_running_steps(db, run_id, now, "interrupted: the run ended while it ran")
    row = db.execute(
        "UPDATE runs SET status = ?, output = ?, error = ?, finished_at = ?, ready_at = NULL,"
        " doom = NULL, lease_owner = NULL, lease_expires_at = NULL, deadline_at = NULL,"
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
    _wake_waiters(db, run_id, row[2], ok=status == model.COMPLETED, now=now)


def _wake_waiters(
    db: sqlite3.Connection, run_id: str, parent_run_id: str | None, *, ok: bool, now: float
) -> None:
    if parent_run_id:
        db.execute(
            "UPDATE runs SET children_done = children_done + 1,"
            " children_failed = children_failed + ? WHERE id = ?",
            (0 if ok else 1, parent_run_id),
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


def schedule_retry(
    conn: Connection, run_id: str, epoch: int, *, error: str, traceback: str | None,
    retry_at: float, now: float,
) -> None:
    """A failed attempt with attempts left: back to the queue, not before `retry_at`."""
    with conn.write() as db:
        _fence(db, run_id, epoch)
        _schedule_retry(db, run_id, error, traceback, retry_at, now)


def _schedule_retry(
    db: sqlite3.Connection, run_id: str, error: str, traceback: str | None, retry_at: float,
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
        " doom = NULL, lease_owner = NULL, lease_expires_at = NULL, deadline_at = NULL,"
        " lease_epoch = lease_epoch + 1, updated_at = ? WHERE id = ?",
        (retry_at, error, now, run_id),
    )




def append_log(
    conn: Connection, run_id: str, *, level: str, message: str, step_key: str | None, now: float,
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
            f" SELECT ?, ?, ?, ?, ? WHERE {_OWNED}",
            (run_id, now, level, message, step_key, run_id, epoch),
        ).rowcount
        if not changed:
            raise LeaseLost(run_id)




# -- actions a user takes (CLI and dashboard) ------------------------------------------


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
            f" SELECT tree.id FROM tree JOIN runs USING (id) WHERE runs.status NOT IN {_TERMINAL}",
            (run_id,),
        ).fetchall()]
        for rid in ids:
            _interrupt_running_steps(db, rid, now, "interrupted: the run was cancelled while "
                                     "the step ran; whatever it returns is not journaled")
            _finish(db, rid, model.CANCELLED, None, "cancelled", None, now)
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
        [(new_id, _)] = _insert_runs(db, [RunSpec(task_id, payload, replay_of=run_id)], now)
        for key, name, kind, _, seq, output, started, finished, children in copy:
            db.execute(
                "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
                " output, started_at, finished_at, child_run_ids)"
                " VALUES (?, ?, ?, ?, 'completed', ?, 1, 1, ?, ?, ?, ?)",
                (new_id, key, name, kind, seq, output, started, finished, children),
            )
        return new_id


# -- workers -------------------------------------------------------------------------


def register_worker(
    conn: Connection, worker_id: str, *, pid: int, host: str, supervisor_pid: int | None,
    wake_addr: str | None, now: float,
) -> None:
    with conn.write() as db:
        # Every reload and restart registers new workers: forget those stopped a day ago.
        db.execute("DELETE FROM workers WHERE stopped_at < ?", (now - 86_400,))
        db.execute(
            "INSERT OR REPLACE INTO workers (id, pid, host, supervisor_pid, started_at,"
            " heartbeat_at, wake_addr) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (worker_id, pid, host, supervisor_pid, now, now, wake_addr),
        )


def heartbeat(
    conn: Connection, worker_id: str, held: Mapping[str, int], *, lease_seconds: float, now: float
) -> list[str]:
    """Renew the leases of the runs this worker executes (`held`: run id -> epoch); return
    the ones it no longer owns (cancelled, or taken over after its lease expired), so it
    can stop executing them.

    Only `held`, not every run whose lease names this worker: a run the worker stopped
    executing but could not hand back (the journal failed under the release) must see its
    lease run out, or a live worker would hold it, unexecuted, forever."""
    lost: list[str] = []
    with conn.write() as db:
        db.execute("UPDATE workers SET heartbeat_at = ? WHERE id = ?", (now, worker_id))
        for run_id, epoch in held.items():
            renewed = db.execute(
                "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_epoch = ?"
                " AND status = 'running'",
                (now + lease_seconds, run_id, epoch),
            ).rowcount
            if not renewed:
                lost.append(run_id)
    return lost


def unregister_worker(conn: Connection, worker_id: str, now: float) -> None:
    with conn.write() as db:
        db.execute("UPDATE workers SET stopped_at = ? WHERE id = ?", (now, worker_id))
