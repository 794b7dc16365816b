"""Every read of the journal. Returns `model` records; never writes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from sylphrun import model
from sylphrun.errors import UnknownRun
from sylphrun.journal.connection import Connection

_RUN_COLUMNS = (
    "id, task_id, status, payload, output, error, attempt, parent_run_id, idempotency_key,"
    " created_at, started_at, finished_at, ready_at, children_total, children_done,"
    " children_failed, replay_of, children_cancelled"
)


def _loads(text: str | None):
    """A JSON column as a value. A row that is not valid JSON (a damaged file, a hand edit)
    is shown as a string saying so: one bad row must not make `runs`, `show` or the
    dashboard crash (the runtime, which must not guess, fails such a run instead)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return f"<not valid JSON in the journal: {text[:200]!r}>"


def _run(row: sqlite3.Row | tuple) -> model.Run:
    return model.Run(
        id=row[0], task_id=row[1], status=row[2], payload=_loads(row[3]), output=_loads(row[4]),
        error=row[5], attempt=row[6], parent_run_id=row[7], idempotency_key=row[8],
        created_at=row[9], started_at=row[10], finished_at=row[11], ready_at=row[12],
        children_total=row[13], children_done=row[14], children_failed=row[15], replay_of=row[16],
        children_cancelled=row[17],
    )


def get_run(conn: Connection, run_id: str) -> model.Run:
    with conn.read() as db:
        row = db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise UnknownRun(f"no run {run_id!r} in this journal; `sylphrun runs` lists them")
    return _run(row)


def resolve_run_id(conn: Connection, prefix: str) -> str:
    """A full run id from a unique prefix (or the id itself), as git does for commits."""
    if not prefix.strip():
        raise UnknownRun("no run id given; `sylphrun runs` lists them")
    with conn.read() as db:
        if db.execute("SELECT 1 FROM runs WHERE id = ?", (prefix,)).fetchone():
            return prefix
        rows = db.execute(
            "SELECT id FROM runs WHERE id >= ? AND id < ? LIMIT 2", (prefix, prefix + "\uffff")
        ).fetchall()
    if len(rows) == 1:
        return rows[0][0]
    if not rows:
        raise UnknownRun(f"no run {prefix!r} in this journal; `sylphrun runs` lists them")
    raise UnknownRun(f"run id prefix {prefix!r} is ambiguous; give more characters")


def list_runs(
    conn: Connection, *, status: str | None = None, task_id: str | None = None,
    parent_run_id: str | None = None, limit: int = 100, top_level_only: bool = False,
) -> list[model.Run]:
    where, args = [], []
    if status:
        where.append("status = ?")
        args.append(status)
    if task_id:
        where.append("task_id = ?")
        args.append(task_id)
    if parent_run_id:
        where.append("parent_run_id = ?")
        args.append(parent_run_id)
    if top_level_only:
        where.append("parent_run_id IS NULL")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    with conn.read() as db:
        rows = db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs{clause} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
    return [_run(r) for r in rows]


def children_of(conn: Connection, run_id: str) -> list[model.Run]:
    with conn.read() as db:
        rows = db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE parent_run_id = ? ORDER BY created_at, id",
            (run_id,),
        ).fetchall()
    return [_run(r) for r in rows]


def run_results(conn: Connection, run_ids: Sequence[str]) -> dict[str, model.RunResult]:
    """Results of the given runs that have finished (unfinished ones are absent)."""
    out: dict[str, model.RunResult] = {}
    with conn.read() as db:
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start:start + 500]
            rows = db.execute(
                f"SELECT id, status, output, error FROM runs WHERE id IN ({','.join('?' * len(chunk))})"
                " AND status IN ('completed','failed','cancelled')",
                chunk,
            ).fetchall()
            for rid, status, output, error in rows:
                out[rid] = model.RunResult(rid, status, status == model.COMPLETED, _loads(output), error)
    return out


def children_results(conn: Connection, parent_run_id: str) -> dict[str, model.RunResult | None]:
    """Every child of a parent in one read: its result, or None while it is unfinished.
    A fan-in over 1,000 children then costs one query, not one per unfinished child."""
    with conn.read() as db:
        rows = db.execute(
            "SELECT id, status, output, error FROM runs WHERE parent_run_id = ?",
            (parent_run_id,),
        ).fetchall()
    return {
        rid: (model.RunResult(rid, status, status == model.COMPLETED, _loads(output), error)
              if status in model.TERMINAL_STATES else None)
        for rid, status, output, error in rows
    }


def steps_of(conn: Connection, run_id: str, *, with_attempts: bool = True) -> list[model.Step]:
    with conn.read() as db:
        rows = db.execute(
            "SELECT run_id, key, name, kind, status, seq, attempts, output, error, started_at,"
            " finished_at, child_run_ids, retry_at, fn, args_hash, copied FROM steps"
            " WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        attempts: dict[str, list[model.StepAttempt]] = {}
        if with_attempts:
            for key, attempt, run_attempt, status, error, tb, started, finished in db.execute(
                "SELECT step_key, attempt, run_attempt, status, error, traceback, started_at,"
                " finished_at FROM step_attempts WHERE run_id = ? ORDER BY step_key, attempt",
                (run_id,),
            ):
                attempts.setdefault(key, []).append(
                    model.StepAttempt(attempt, status, error, tb, started, finished, run_attempt)
                )
    return [
        model.Step(
            run_id=r[0], key=r[1], name=r[2], kind=r[3], status=r[4], seq=r[5], attempts=r[6],
            output=_loads(r[7]), error=r[8], started_at=r[9], finished_at=r[10],
            child_run_ids=_loads(r[11]) or [], retry_at=r[12], attempt_log=attempts.get(r[1], []),
            fn=r[13], args_hash=r[14], copied=bool(r[15]),
        )
        for r in rows
    ]


class StepChange(NamedTuple):
    """A step as a follower of the journal prints it (no output, no attempt log)."""

    key: str
    kind: str
    status: str
    attempts: int
    started_at: float | None
    finished_at: float | None
    error: str | None


def steps_changed_since(conn: Connection, run_id: str, since: float,
                        key: str | None = None) -> list[StepChange]:
    """A run's steps started or finished at or after `since`, and the step `key` whatever
    its times (an event named it: parking a step changes no timestamp), oldest first.

    Step events are coalesced (schema V2), so a follower asks the steps table what changed
    instead of expecting one event per change. The scan stays within the run's rows (the
    primary key starts with run_id) and returns only the recent ones.
    """
    with conn.read() as db:
        rows = db.execute(
            "SELECT key, kind, status, attempts, started_at, finished_at, error FROM steps"
            " WHERE run_id = ? AND (MAX(COALESCE(started_at, 0), COALESCE(finished_at, 0)) >= ?"
            " OR key = ?)"
            " ORDER BY MAX(COALESCE(started_at, 0), COALESCE(finished_at, 0)), seq",
            (run_id, since, key),
        ).fetchall()
    return [StepChange._make(r) for r in rows]


class JournaledStep(NamedTuple):
    """What a resuming execution needs of a step. `output` stays JSON text: the runtime
    decodes only the steps it actually replays. A named tuple: one is built per step the
    run records, and a frozen dataclass's __init__ costs several times as much."""

    status: str
    kind: str
    output: str | None
    error: str | None
    attempts: int
    run_attempt: int
    seq: int
    retry_at: float | None
    fatal: bool
    # `module:qualname` of the undo registered with `compensate=`, if any.
    compensate: str | None = None
    # The call it was journaled for (schema V3_STEP_CALLS; None on older rows), and
    # whether `replay --from-step` copied it from the original run.
    fn: str | None = None
    args_hash: str | None = None
    copied: bool = False


def replay_state(conn: Connection, run_id: str) -> dict[str, JournaledStep]:
    with conn.read() as db:
        rows = db.execute(
            "SELECT key, status, kind, output, error, attempts, run_attempt, seq, retry_at, fatal,"
            " compensate, fn, args_hash, copied FROM steps WHERE run_id = ?",
            (run_id,),
        ).fetchall()
    return {r[0]: JournaledStep(*r[1:9], bool(r[9]), r[10], r[11], r[12], bool(r[13]))
            for r in rows}


def step_tries_in_attempt(conn: Connection, run_id: str, step_key: str, run_attempt: int) -> int:
    """The failed or interrupted tries of a step within one run attempt: a step's own retry
    policy starts afresh when a run-level retry re-executes the function."""
    with conn.read() as db:
        return db.execute(
            "SELECT COUNT(*) FROM step_attempts WHERE run_id = ? AND step_key = ?"
            " AND run_attempt = ?",
            (run_id, step_key, run_attempt),
        ).fetchone()[0]


def run_attempts(conn: Connection, run_id: str) -> list[model.RunAttempt]:
    with conn.read() as db:
        rows = db.execute(
            "SELECT attempt, status, error, traceback, started_at, finished_at FROM run_attempts"
            " WHERE run_id = ? ORDER BY attempt",
            (run_id,),
        ).fetchall()
    return [model.RunAttempt(*r) for r in rows]


def logs_of(conn: Connection, run_id: str, *, after_id: int = 0) -> list[model.LogLine]:
    with conn.read() as db:
        rows = db.execute(
            "SELECT run_id, at, level, message, step_key FROM logs WHERE run_id = ? AND id > ?"
            " ORDER BY id",
            (run_id, after_id),
        ).fetchall()
    return [model.LogLine(*r) for r in rows]


def events_since(conn: Connection, after_id: int, limit: int = 10_000) -> list[tuple[int, float, str, str, str | None]]:
    """(id, at, run_id, kind, step_key) of events after `after_id`: what changed since."""
    with conn.read() as db:
        return db.execute(
            "SELECT id, at, run_id, kind, step_key FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()


def last_event_id(conn: Connection) -> int:
    with conn.read() as db:
        return db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]


def live_workers(conn: Connection, *, now: float, stale_after: float) -> list[model.WorkerInfo]:
    with conn.read() as db:
        rows = db.execute(
            "SELECT id, pid, host, started_at, heartbeat_at, wake_addr FROM workers"
            " WHERE stopped_at IS NULL AND heartbeat_at >= ?",
            (now - stale_after,),
        ).fetchall()
    return [model.WorkerInfo(*r) for r in rows]


def registered_tasks(conn: Connection) -> dict[str, model.TaskRecord]:
    """The tasks the workers registered, by id (empty: no worker ever registered)."""
    with conn.read() as db:
        rows = db.execute(
            "SELECT id, options, source_file, source_line, fingerprint, registered_by,"
            " registered_at FROM tasks ORDER BY id"
        ).fetchall()
    out = {}
    for tid, options, source_file, source_line, fingerprint, by, at in rows:
        opts = _loads(options)
        out[tid] = model.TaskRecord(tid, opts if isinstance(opts, dict) else {}, source_file,
                                    source_line, fingerprint, by, at)
    return out


def next_ready_at(conn: Connection) -> float | None:
    """The earliest time a queued or waiting run becomes claimable (retries, sleeps)."""
    with conn.read() as db:
        return db.execute("SELECT MIN(ready_at) FROM runs WHERE ready_at IS NOT NULL").fetchone()[0]


def overdue_runs(conn: Connection, worker_ids: Sequence[str], *, now: float) -> list[tuple[str, str, str]]:
    """(run id, task id, worker id) of running runs past their timeout deadline."""
    if not worker_ids:
        return []
    with conn.read() as db:
        return db.execute(
            "SELECT id, task_id, lease_owner FROM runs WHERE status = 'running' AND deadline_at < ?"
            f" AND lease_owner IN ({','.join('?' * len(worker_ids))})",
            (now, *worker_ids),
        ).fetchall()


def run_fields(conn: Connection, run_id: str) -> tuple[int, str | None]:
    """(attempt, status) of a run, cheaply."""
    with conn.read() as db:
        row = db.execute("SELECT attempt, status FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise UnknownRun(f"no run {run_id!r} in this journal")
    return row[0], row[1]


def status_counts(conn: Connection) -> dict[str, int]:
    with conn.read() as db:
        return dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())


def integrity_check(conn: Connection) -> str:
    with conn.read() as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def has_ready_work(conn: Connection, now: float) -> bool:
    """Is any run claimable now? A read-only check before taking the write lock."""
    with conn.read() as db:
        return db.execute(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE ready_at <= ?)"
            " OR EXISTS (SELECT 1 FROM runs WHERE status = 'running' AND lease_expires_at < ?)",
            (now, now),
        ).fetchone()[0] == 1


def lease_states(conn: Connection, run_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """(lease epoch, status) of each run: a worker checks it still owns what it executes."""
    if not run_ids:
        return {}
    with conn.read() as db:
        rows = db.execute(
            f"SELECT id, lease_epoch, status FROM runs WHERE id IN ({','.join('?' * len(run_ids))})",
            list(run_ids),
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def lease_holder(conn: Connection, run_id: str) -> tuple[str, int, int] | None:
    """(worker id, worker pid, lease epoch) of the worker holding a running run, or None."""
    with conn.read() as db:
        row = db.execute(
            "SELECT r.lease_owner, w.pid, r.lease_epoch FROM runs r JOIN workers w"
            " ON w.id = r.lease_owner WHERE r.id = ? AND r.status = 'running'",
            (run_id,),
        ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


# -- reads for the dashboard: lists of thousands of runs, and what changed ----------------


class RunSummary(NamedTuple):
    """A run without its payload and output: what a list of thousands of runs needs.

    `error` is cut to its first 500 characters (the full text is on `get_run`). A named
    tuple, not a dataclass: 10,000 of them are built in a few ms."""

    id: str
    task_id: str
    status: str
    attempt: int
    parent_run_id: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    ready_at: float | None
    children_total: int
    children_done: int
    children_failed: int
    error: str | None
    replay_of: str | None
    # Counted apart from `children_failed` (schema V5_CHILDREN_CANCELLED).
    children_cancelled: int = 0


_SUMMARY_COLUMNS = (
    "id, task_id, status, attempt, parent_run_id, created_at, started_at, finished_at, ready_at,"
    " children_total, children_done, children_failed, substr(error, 1, 500), replay_of,"
    " children_cancelled"
)


def run_summaries(
    conn: Connection, *, limit: int = 50_000, parent_run_id: str | None = None,
) -> list[RunSummary]:
    """Summaries of the newest runs (or of one parent's children, oldest first)."""
    with conn.read() as db:
        if parent_run_id is None:
            rows = db.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        else:
            rows = db.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE parent_run_id = ?"
                " ORDER BY created_at, id LIMIT ?",
                (parent_run_id, limit),
            ).fetchall()
    return [RunSummary._make(r) for r in rows]


def run_summaries_by_ids(conn: Connection, run_ids: Sequence[str]) -> list[RunSummary]:
    """Summaries of the given runs (unknown ids are absent), in no particular order."""
    out: list[RunSummary] = []
    ids = list(run_ids)
    with conn.read() as db:
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = db.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            out.extend(RunSummary._make(r) for r in rows)
    return out


def log_lines_after(
    conn: Connection, run_id: str, after_id: int = 0, limit: int = 5_000,
) -> list[tuple[int, model.LogLine]]:
    """(log id, line) of a run's log lines after `after_id`: a follower reads only what is new."""
    with conn.read() as db:
        rows = db.execute(
            "SELECT id, run_id, at, level, message, step_key FROM logs WHERE run_id = ? AND id > ?"
            " ORDER BY id LIMIT ?",
            (run_id, after_id, limit),
        ).fetchall()
    return [(r[0], model.LogLine(*r[1:])) for r in rows]


# The event kinds `run_state_changes` selects (its SQL says the same), as prefixes for a
# follower that keeps the list up to date from the events it reads anyway.
STATE_CHANGE_KINDS = ("run.", "step.waiting")


def run_state_changes(
    conn: Connection, run_id: str, *, up_to: int,
) -> list[tuple[int, float, str, str | None]]:
    """(event id, at, kind, step key) of a run's status changes (`run.*`) and of its steps
    that went 'waiting' (parked with it, or a sleep or wait begun), up to event `up_to`:
    when the run was parked, queued again and resumed, which the runs table does not keep.

    Cost: `events` has no index on run_id, so this scans the table: 9 ms at 12,000 runs
    (84,000 events), 24 ms at 50,000 (350,000 events) on a 2-core VM. A reader calls it
    once per run it opens, then follows the run in the events it reads anyway."""
    with conn.read() as db:
        return db.execute(
            "SELECT id, at, kind, step_key FROM events WHERE run_id = ? AND id <= ?"
            " AND (kind LIKE 'run.%' OR kind = 'step.waiting') ORDER BY id",
            (run_id, up_to),
        ).fetchall()


def runs_with_payload_text(
    conn: Connection, text: str, *, limit: int = 1_000, run_ids: Sequence[str] | None = None,
) -> list[str]:
    """Ids of the newest runs (or of the given ones) whose payload's JSON text contains
    `text`, ignoring ASCII case: the dashboard's search, which holds runs without payloads.

    Cost: no index can serve a substring match, so this walks `runs` newest first (the
    created_at index) and reads each payload until `limit` match: a term that matches
    nothing reads every payload: 4-6 ms at 12,000 runs and 20 ms at 50,000 runs of ~250-byte
    payloads on a 2-core VM; a common term stops early (2,000 matches in ~2 ms). With
    `run_ids` it is primary-key lookups (0.5 ms for 500). LIKE rather than
    instr(lower(payload), ?): it folds ASCII case without building a lowered copy of each
    payload (4 ms against 8 ms at 12,000 runs)."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with conn.read() as db:
        if run_ids is None:
            rows = db.execute(
                "SELECT id FROM runs WHERE payload LIKE ? ESCAPE '\\'"
                " ORDER BY created_at DESC LIMIT ?",
                (pattern, limit),
            ).fetchall()
            return [r[0] for r in rows]
        out: list[str] = []
        ids = list(run_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            out += [r[0] for r in db.execute(
                f"SELECT id FROM runs WHERE id IN ({','.join('?' * len(chunk))})"
                " AND payload LIKE ? ESCAPE '\\'",
                (*chunk, pattern),
            )]
        return out
