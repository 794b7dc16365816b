"""Reads of a run's steps and log lines: the step tree, what changed, and what a
resumed run replays. Never writes."""

from __future__ import annotations

from typing import NamedTuple

from sylphrun import model
from sylphrun.journal.connection import Connection
from sylphrun.journal.queries.runs import _loads


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


class StepChange(NamedTuple):
    """A step as a follower of the journal prints it (no output, no attempt log)."""

    key: str
    kind: str
    status: str
    attempts: int
    started_at: float | None
    finished_at: float | None
    error: str | None


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
    return {
        r[0]: JournaledStep(*r[1:9], bool(r[9]), r[10], r[11], r[12], bool(r[13])) for r in rows
    }


def step_tries_in_attempt(conn: Connection, run_id: str, step_key: str, run_attempt: int) -> int:
    """The failed or interrupted tries of a step within one run attempt: a step's own retry
    policy starts afresh when a run-level retry re-executes the function."""
    with conn.read() as db:
        return db.execute(
            "SELECT COUNT(*) FROM step_attempts WHERE run_id = ? AND step_key = ?"
            " AND run_attempt = ?",
            (run_id, step_key, run_attempt),
        ).fetchone()[0]


def logs_of(conn: Connection, run_id: str, *, after_id: int = 0) -> list[model.LogLine]:
    with conn.read() as db:
        rows = db.execute(
            "SELECT run_id, at, level, message, step_key FROM logs WHERE run_id = ? AND id > ?"
            " ORDER BY id",
            (run_id, after_id),
        ).fetchall()
    return [model.LogLine(*r) for r in rows]
