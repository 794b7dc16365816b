"""Reads of runs: one run, a list of them, their results, attempts and counts. Never writes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from sylphrun import model
from sylphrun.errors import UnknownRun
from sylphrun.journal.connection import Connection

_RUN_COLUMNS = (
    "id, task_id, status, payload, output, error, attempt, parent_run_id, idempotency_key,"
    " created_at, started_at, finished_at, ready_at, children_total, children_done,"
    " children_failed, replay_of, children_cancelled, priority"
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
        id=row[0],
        task_id=row[1],
        status=row[2],
        payload=_loads(row[3]),
        output=_loads(row[4]),
        error=row[5],
        attempt=row[6],
        parent_run_id=row[7],
        idempotency_key=row[8],
        created_at=row[9],
        started_at=row[10],
        finished_at=row[11],
        ready_at=row[12],
        children_total=row[13],
        children_done=row[14],
        children_failed=row[15],
        replay_of=row[16],
        children_cancelled=row[17],
        priority=row[18],
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
    conn: Connection,
    *,
    status: str | None = None,
    task_id: str | None = None,
    parent_run_id: str | None = None,
    limit: int = 100,
    top_level_only: bool = False,
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
            chunk = run_ids[start : start + 500]
            rows = db.execute(
                "SELECT id, status, output, error FROM runs"
                f" WHERE id IN ({','.join('?' * len(chunk))})"
                " AND status IN ('completed','failed','cancelled')",
                chunk,
            ).fetchall()
            for rid, status, output, error in rows:
                out[rid] = model.RunResult(
                    rid, status, status == model.COMPLETED, _loads(output), error
                )
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
        rid: (
            model.RunResult(rid, status, status == model.COMPLETED, _loads(output), error)
            if status in model.TERMINAL_STATES
            else None
        )
        for rid, status, output, error in rows
    }


def run_attempts(conn: Connection, run_id: str) -> list[model.RunAttempt]:
    with conn.read() as db:
        rows = db.execute(
            "SELECT attempt, status, error, traceback, started_at, finished_at FROM run_attempts"
            " WHERE run_id = ? ORDER BY attempt",
            (run_id,),
        ).fetchall()
    return [model.RunAttempt(*r) for r in rows]


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


def next_ready_at(conn: Connection) -> float | None:
    """The earliest time a queued or waiting run becomes claimable (retries, sleeps)."""
    with conn.read() as db:
        return db.execute("SELECT MIN(ready_at) FROM runs WHERE ready_at IS NOT NULL").fetchone()[0]


def has_ready_work(conn: Connection, now: float) -> bool:
    """Is any run claimable now? A read-only check before taking the write lock."""
    with conn.read() as db:
        return (
            db.execute(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE ready_at <= ?)"
                " OR EXISTS (SELECT 1 FROM runs WHERE status = 'running' AND lease_expires_at < ?)",
                (now, now),
            ).fetchone()[0]
            == 1
        )
