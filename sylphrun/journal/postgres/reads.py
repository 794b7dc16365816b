"""Every read of a PostgreSQL journal: the twin of `journal.queries` and `journal.logs`,
building the same `model` records with the same row converters. Never writes."""

from __future__ import annotations

from collections.abc import Sequence

from sylphrun import model
from sylphrun.errors import UnknownRun
from sylphrun.journal.logs import NOTABLE_LEVELS, LogRecord
from sylphrun.journal.postgres.transitions import Cursor
from sylphrun.journal.queries.feed import _SUMMARY_COLUMNS, RunSummary
from sylphrun.journal.queries.runs import _RUN_COLUMNS, _loads, _run
from sylphrun.journal.queries.steps import JournaledStep

_FINISHED = "('completed','failed','cancelled')"

# -- runs ------------------------------------------------------------------------------------


def get_run(cur: Cursor, run_id: str) -> model.Run:
    cur.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = %s", (run_id,))
    row = cur.fetchone()
    if row is None:
        raise UnknownRun(f"no run {run_id!r} in this journal; `sylphrun runs` lists them")
    return _run(row)


def resolve_run_id(cur: Cursor, prefix: str) -> str:
    if not prefix.strip():
        raise UnknownRun("no run id given; `sylphrun runs` lists them")
    cur.execute("SELECT 1 FROM runs WHERE id = %s", (prefix,))
    if cur.fetchone():
        return prefix
    # `runs.id` is COLLATE "C": a bytewise range on the primary key, as on SQLite.
    cur.execute(
        "SELECT id FROM runs WHERE id >= %s AND id < %s LIMIT 2", (prefix, prefix + "\uffff")
    )
    rows = cur.fetchall()
    if len(rows) == 1:
        return rows[0][0]
    if not rows:
        raise UnknownRun(f"no run {prefix!r} in this journal; `sylphrun runs` lists them")
    raise UnknownRun(f"run id prefix {prefix!r} is ambiguous; give more characters")


def list_runs(
    cur: Cursor,
    *,
    status: str | None,
    task_id: str | None,
    parent_run_id: str | None,
    limit: int,
    top_level_only: bool,
) -> list[model.Run]:
    where, args = [], []
    for column, value in (
        ("status", status),
        ("task_id", task_id),
        ("parent_run_id", parent_run_id),
    ):
        if value:
            where.append(f"{column} = %s")
            args.append(value)
    if top_level_only:
        where.append("parent_run_id IS NULL")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    cur.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs{clause} ORDER BY created_at DESC, id DESC LIMIT %s",
        (*args, limit),
    )
    return [_run(r) for r in cur.fetchall()]


def children_of(cur: Cursor, run_id: str) -> list[model.Run]:
    cur.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE parent_run_id = %s ORDER BY created_at, id",
        (run_id,),
    )
    return [_run(r) for r in cur.fetchall()]


def _result(rid: str, status: str, output: str | None, error: str | None) -> model.RunResult:
    return model.RunResult(rid, status, status == model.COMPLETED, _loads(output), error)


def run_results(cur: Cursor, run_ids: Sequence[str]) -> dict[str, model.RunResult]:
    cur.execute(
        f"SELECT id, status, output, error FROM runs WHERE id = ANY(%s) AND status IN {_FINISHED}",
        (list(run_ids),),
    )
    return {r[0]: _result(*r) for r in cur.fetchall()}


def children_results(cur: Cursor, parent_run_id: str) -> dict[str, model.RunResult | None]:
    cur.execute(
        "SELECT id, status, output, error FROM runs WHERE parent_run_id = %s", (parent_run_id,)
    )
    return {r[0]: (_result(*r) if r[1] in model.TERMINAL_STATES else None) for r in cur.fetchall()}


def run_attempts(cur: Cursor, run_id: str) -> list[model.RunAttempt]:
    cur.execute(
        "SELECT attempt, status, error, traceback, started_at, finished_at"
        " FROM run_attempts WHERE run_id = %s ORDER BY attempt",
        (run_id,),
    )
    return [model.RunAttempt(*r) for r in cur.fetchall()]


def run_fields(cur: Cursor, run_id: str) -> tuple[int, str | None]:
    cur.execute("SELECT attempt, status FROM runs WHERE id = %s", (run_id,))
    row = cur.fetchone()
    if row is None:
        raise UnknownRun(f"no run {run_id!r} in this journal")
    return row[0], row[1]


def status_counts(cur: Cursor) -> dict[str, int]:
    cur.execute("SELECT status, COUNT(*) FROM runs GROUP BY status")
    return dict(cur.fetchall())


def next_ready_at(cur: Cursor) -> float | None:
    cur.execute("SELECT MIN(ready_at) FROM runs WHERE ready_at IS NOT NULL")
    return cur.fetchone()[0]


def has_ready_work(cur: Cursor, now: float) -> bool:
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE ready_at <= %s) OR EXISTS"
        " (SELECT 1 FROM runs WHERE status = 'running' AND lease_expires_at < %s)",
        (now, now),
    )
    return bool(cur.fetchone()[0])


def lease_states(cur: Cursor, run_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    if not run_ids:
        return {}
    cur.execute("SELECT id, lease_epoch, status FROM runs WHERE id = ANY(%s)", (list(run_ids),))
    return {r[0]: (r[1], r[2]) for r in cur.fetchall()}


def lease_holder(cur: Cursor, run_id: str) -> tuple[str, int, int] | None:
    cur.execute(
        "SELECT r.lease_owner, w.pid, r.lease_epoch FROM runs r JOIN workers w"
        " ON w.id = r.lease_owner WHERE r.id = %s AND r.status = 'running'",
        (run_id,),
    )
    row = cur.fetchone()
    return None if row is None else (row[0], row[1], row[2])


def overdue_runs(
    cur: Cursor, worker_ids: Sequence[str], *, now: float
) -> list[tuple[str, str, str]]:
    if not worker_ids:
        return []
    cur.execute(
        "SELECT id, task_id, lease_owner FROM runs WHERE status = 'running'"
        " AND deadline_at < %s AND lease_owner = ANY(%s)",
        (now, list(worker_ids)),
    )
    return cur.fetchall()


# -- steps and logs --------------------------------------------------------------------------


def steps_of(cur: Cursor, run_id: str, *, with_attempts: bool) -> list[model.Step]:
    cur.execute(
        "SELECT run_id, key, name, kind, status, seq, attempts, output, error,"
        " started_at, finished_at, child_run_ids, retry_at, fn, args_hash, copied"
        " FROM steps WHERE run_id = %s ORDER BY seq",
        (run_id,),
    )
    rows = cur.fetchall()
    attempts: dict[str, list[model.StepAttempt]] = {}
    if with_attempts:
        cur.execute(
            "SELECT step_key, attempt, run_attempt, status, error, traceback,"
            " started_at, finished_at FROM step_attempts WHERE run_id = %s"
            " ORDER BY step_key, attempt",
            (run_id,),
        )
        for key, attempt, run_attempt, status, error, tb, started, finished in cur.fetchall():
            attempts.setdefault(key, []).append(
                model.StepAttempt(attempt, status, error, tb, started, finished, run_attempt)
            )
    return [
        model.Step(
            run_id=r[0],
            key=r[1],
            name=r[2],
            kind=r[3],
            status=r[4],
            seq=r[5],
            attempts=r[6],
            output=_loads(r[7]),
            error=r[8],
            started_at=r[9],
            finished_at=r[10],
            child_run_ids=_loads(r[11]) or [],
            retry_at=r[12],
            attempt_log=attempts.get(r[1], []),
            fn=r[13],
            args_hash=r[14],
            copied=bool(r[15]),
        )
        for r in rows
    ]


def replay_state(cur: Cursor, run_id: str) -> dict[str, JournaledStep]:
    cur.execute(
        "SELECT key, status, kind, output, error, attempts, run_attempt, seq, retry_at,"
        " fatal, compensate, fn, args_hash, copied FROM steps WHERE run_id = %s",
        (run_id,),
    )
    return {
        r[0]: JournaledStep(*r[1:9], bool(r[9]), r[10], r[11], r[12], bool(r[13]))
        for r in cur.fetchall()
    }


def step_tries_in_attempt(cur: Cursor, run_id: str, step_key: str, run_attempt: int) -> int:
    cur.execute(
        "SELECT COUNT(*) FROM step_attempts WHERE run_id = %s AND step_key = %s"
        " AND run_attempt = %s",
        (run_id, step_key, run_attempt),
    )
    return cur.fetchone()[0]


def logs_of(cur: Cursor, run_id: str, *, after_id: int) -> list[model.LogLine]:
    cur.execute(
        "SELECT run_id, at, level, message, step_key FROM logs WHERE run_id = %s"
        " AND id > %s ORDER BY id",
        (run_id, after_id),
    )
    return [model.LogLine(*r) for r in cur.fetchall()]


def log_lines_after(
    cur: Cursor, run_id: str, after_id: int, limit: int
) -> list[tuple[int, model.LogLine]]:
    cur.execute(
        "SELECT id, run_id, at, level, message, step_key FROM logs WHERE run_id = %s"
        " AND id > %s ORDER BY id LIMIT %s",
        (run_id, after_id, limit),
    )
    return [(r[0], model.LogLine(*r[1:])) for r in cur.fetchall()]


def body_lines_of_attempt(cur: Cursor, run_id: str, attempt: int) -> list[tuple[str, str]]:
    cur.execute(
        "SELECT level, message FROM logs WHERE run_id = %s AND step_key IS NULL"
        " AND at > COALESCE((SELECT finished_at FROM run_attempts WHERE run_id = %s"
        " AND attempt = %s), 0) ORDER BY id",
        (run_id, run_id, attempt - 1),
    )
    return [tuple(r) for r in cur.fetchall()]


# -- workers and tasks -----------------------------------------------------------------------


def live_workers(cur: Cursor, *, now: float, stale_after: float) -> list[model.WorkerInfo]:
    cur.execute(
        "SELECT id, pid, host, started_at, heartbeat_at, wake_addr FROM workers"
        " WHERE stopped_at IS NULL AND heartbeat_at >= %s",
        (now - stale_after,),
    )
    return [model.WorkerInfo(*r) for r in cur.fetchall()]


def registered_tasks(cur: Cursor) -> dict[str, model.TaskRecord]:
    cur.execute(
        "SELECT id, options, source_file, source_line, fingerprint, registered_by,"
        ' registered_at FROM tasks ORDER BY id COLLATE "C"'
    )
    out = {}
    for tid, options, source_file, source_line, fingerprint, by, at in cur.fetchall():
        opts = _loads(options)
        out[tid] = model.TaskRecord(
            tid,
            opts if isinstance(opts, dict) else {},
            source_file,
            source_line,
            fingerprint,
            by,
            at,
        )
    return out


# -- the dashboard's lists and the feed -----------------------------------------------------

# SQLite's substr() is 1-based like PostgreSQL's: the summary columns read the same.
_SUMMARY = _SUMMARY_COLUMNS


def run_summaries(cur: Cursor, *, limit: int, parent_run_id: str | None) -> list[RunSummary]:
    if parent_run_id is None:
        cur.execute(
            f"SELECT {_SUMMARY} FROM runs ORDER BY created_at DESC, id DESC LIMIT %s", (limit,)
        )
    else:
        cur.execute(
            f"SELECT {_SUMMARY} FROM runs WHERE parent_run_id = %s"
            " ORDER BY created_at, id LIMIT %s",
            (parent_run_id, limit),
        )
    return [RunSummary._make(r) for r in cur.fetchall()]


def run_summaries_by_ids(cur: Cursor, run_ids: Sequence[str]) -> list[RunSummary]:
    cur.execute(f"SELECT {_SUMMARY} FROM runs WHERE id = ANY(%s)", (list(run_ids),))
    return [RunSummary._make(r) for r in cur.fetchall()]


def runs_with_payload_text(
    cur: Cursor, text: str, *, limit: int, run_ids: Sequence[str] | None
) -> list[str]:
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    # ILIKE folds case as SQLite's LIKE does (beyond ASCII too, where the locale knows how).
    if run_ids is None:
        cur.execute(
            "SELECT id FROM runs WHERE payload ILIKE %s ESCAPE '\\'"
            " ORDER BY created_at DESC LIMIT %s",
            (pattern, limit),
        )
    else:
        cur.execute(
            "SELECT id FROM runs WHERE id = ANY(%s) AND payload ILIKE %s ESCAPE '\\'",
            (list(run_ids), pattern),
        )
    return [r[0] for r in cur.fetchall()]


def last_event_id(cur: Cursor) -> int:
    cur.execute("SELECT COALESCE(MAX(id), 0) FROM events")
    return cur.fetchone()[0]


def events_since(cur: Cursor, after_id: int, limit: int) -> list[tuple]:
    cur.execute(
        "SELECT id, at, run_id, kind, step_key FROM events WHERE id > %s ORDER BY id LIMIT %s",
        (after_id, limit),
    )
    return cur.fetchall()


def run_state_changes(cur: Cursor, run_id: str, *, up_to: int) -> list[tuple]:
    cur.execute(
        "SELECT id, at, kind, step_key FROM events WHERE run_id = %s AND id <= %s"
        " AND (kind LIKE 'run.%%' OR kind = 'step.waiting') ORDER BY id",
        (run_id, up_to),
    )
    return cur.fetchall()


def last_log_id(cur: Cursor) -> int:
    cur.execute("SELECT COALESCE(MAX(id), 0) FROM logs")
    return cur.fetchone()[0]


def notable_logs_since(cur: Cursor, after_id: int, limit: int) -> list[LogRecord]:
    cur.execute(
        "SELECT id, run_id, at, level, message FROM logs WHERE id > %s"
        " AND level = ANY(%s) ORDER BY id LIMIT %s",
        (after_id, list(NOTABLE_LEVELS), limit),
    )
    return [LogRecord(*r) for r in cur.fetchall()]


def change_token(cur: Cursor) -> int:
    # The cluster's snapshot (xmin:xmax:in-progress xids) changes whenever a transaction
    # that wrote anything commits, ours or another's: SQLite's `data_version` in one read.
    cur.execute("SELECT hashtext(pg_current_snapshot()::text)")
    return cur.fetchone()[0]
