"""Reading the journaled run logs across runs, for the line log of `dev --no-tui`.

(A run's own log lines are `queries.logs_of`.) Log ids only grow, so "since id N" is a
range read on the primary key.
"""

from __future__ import annotations

from typing import NamedTuple

from sylphrun.journal.connection import Connection

# Levels the line log prints: the rest stays in the dashboard and `show`.
NOTABLE_LEVELS = ("WARNING", "ERROR", "CRITICAL")


class LogRecord(NamedTuple):
    id: int
    run_id: str
    at: float
    level: str
    message: str


def last_log_id(conn: Connection) -> int:
    with conn.read() as db:
        return db.execute("SELECT COALESCE(MAX(id), 0) FROM logs").fetchone()[0]


def notable_logs_since(conn: Connection, after_id: int, limit: int = 1000) -> list[LogRecord]:
    """Warnings and errors of any run journaled after log `after_id`, oldest first."""
    with conn.read() as db:
        rows = db.execute(
            "SELECT id, run_id, at, level, message FROM logs WHERE id > ? AND level IN "
            f"({', '.join('?' * len(NOTABLE_LEVELS))}) ORDER BY id LIMIT ?",
            (after_id, *NOTABLE_LEVELS, limit),
        ).fetchall()
    return [LogRecord(*row) for row in rows]


def body_lines_of_attempt(conn: Connection, run_id: str, attempt: int) -> list[tuple[str, str]]:
    """(level, message) of the lines a run's task body journaled outside any step in
    `attempt` so far: the lines a resumed execution writes again as it replays."""
    with conn.read() as db:
        return db.execute(
            "SELECT level, message FROM logs WHERE run_id = ? AND step_key IS NULL AND at >"
            " COALESCE((SELECT finished_at FROM run_attempts WHERE run_id = ? AND attempt = ?),"
            " 0) ORDER BY id",
            (run_id, run_id, attempt - 1),
        ).fetchall()
