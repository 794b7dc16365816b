"""The change feed's exact cursor on PostgreSQL (`JournalReader.step_changes`): the twin
of `queries.feed.step_changes`. A cursor is an event id, as on SQLite: event ids are
given at commit under the feed lock, and a step row's `change_seq` is stamped in the same
place (schema V9_STEP_CHANGE_SEQ), so a snapshot that sees event s + 1 sees every row
stamped s. Read in one snapshot (REPEATABLE READ), the bound and the rows agree."""

from __future__ import annotations

from sylphrun.journal.postgres.transitions import Cursor
from sylphrun.journal.queries.steps import StepChange


def step_changes(
    cur: Cursor, run_id: str, after: int, until: int | None
) -> tuple[list[StepChange], int]:
    if until is None:
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM events")
        until = cur.fetchone()[0]
    if until <= after:
        return [], after
    cur.execute(
        "SELECT key, kind, status, attempts, started_at, finished_at, error FROM steps"
        " WHERE run_id = %s AND change_seq >= %s AND change_seq < %s"
        " ORDER BY change_seq, GREATEST(COALESCE(started_at, 0), COALESCE(finished_at, 0)), seq",
        (run_id, after, until),
    )
    return [StepChange._make(r) for r in cur.fetchall()], until
