"""Reads for followers (the dashboard, dev --no-tui): events after an id, summaries of
thousands of runs, new log lines, a run's state changes, payload search. Never writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sylphrun import model
from sylphrun.journal.connection import Connection
from sylphrun.journal.queries.steps import StepChange


class JournalCursor:
    """A follower's place in the journal, for the loops that poll it (`trigger --wait`,
    `dev --no-tui`, the dashboard's feed).

    `changed()` is one `PRAGMA data_version` (microseconds): whether any connection
    committed since the last call (True on the first), or the last `new_events()` stopped
    at its limit with more to read. `new_events()` reads the events after the last one it
    read (after `after` at first)."""

    def __init__(self, conn: Connection, *, after: int = 0) -> None:
        self.conn = conn
        self.last_event = after
        self._version: int | None = None
        # The last read filled its limit: the rest of a burst is there to read, and no
        # commit may come to say so (the dashboard waited for one, showing a stale list).
        self._behind = False

    def changed(self) -> bool:
        version = self.conn.data_version()
        if version == self._version and not self._behind:
            return False
        self._version = version
        return True

    def new_events(self, limit: int) -> list[tuple[int, float, str, str, str | None]]:
        events = events_since(self.conn, self.last_event, limit=limit)
        if events:
            self.last_event = events[-1][0]
        self._behind = len(events) == limit
        return events


def events_since(
    conn: Connection, after_id: int, limit: int = 10_000
) -> list[tuple[int, float, str, str, str | None]]:
    """(id, at, run_id, kind, step_key) of events after `after_id`: what changed since."""
    with conn.read() as db:
        return db.execute(
            "SELECT id, at, run_id, kind, step_key FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()


def last_event_id(conn: Connection) -> int:
    with conn.read() as db:
        return db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]


# -- the change feed's exact cursor (schema V6_STEP_CHANGE_SEQ) ---------------------------
#
# A place in the feed is an event id n: the events up to n, and the step rows stamped below
# n (`steps.change_seq`), have been read. A row stamped s sits between event s and event
# s + 1; SQLite's one writer means no row is stamped s once event s + 1 is committed, so a
# bound at or below the newest event id only ever covers rows that are final. The two hot
# step writes stamp their row and write no event (schema V2), so step changes are found
# through the run (its rows share the primary key's prefix), never by a scan of `steps`.


def step_changes(
    conn: Connection, run_id: str, after: int, until: int | None
) -> tuple[list[StepChange], int]:
    """A run's steps whose row was last written in [after, until) of the feed (`until`
    None: up to the newest event, read in the same snapshot), and the place to read from
    next. Each row once, with its state now; one written again at or after `until` is left
    for a later read. Oldest change first: by stamp, then by time and seq within one."""
    with conn.read() as db:
        if until is None:
            until = db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        if until <= after:
            return [], after
        rows = db.execute(
            "SELECT key, kind, status, attempts, started_at, finished_at, error FROM steps"
            " WHERE run_id = ? AND change_seq >= ? AND change_seq < ?"
            " ORDER BY change_seq, MAX(COALESCE(started_at, 0), COALESCE(finished_at, 0)), seq",
            (run_id, after, until),
        ).fetchall()
    return [StepChange._make(r) for r in rows], until


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
    conn: Connection,
    *,
    limit: int = 50_000,
    parent_run_id: str | None = None,
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
            chunk = ids[start : start + 500]
            rows = db.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            out.extend(RunSummary._make(r) for r in rows)
    return out


def log_lines_after(
    conn: Connection,
    run_id: str,
    after_id: int = 0,
    limit: int = 5_000,
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
    conn: Connection,
    run_id: str,
    *,
    up_to: int,
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
    conn: Connection,
    text: str,
    *,
    limit: int = 1_000,
    run_ids: Sequence[str] | None = None,
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
            chunk = ids[start : start + 500]
            out += [
                r[0]
                for r in db.execute(
                    f"SELECT id FROM runs WHERE id IN ({','.join('?' * len(chunk))})"
                    " AND payload LIKE ? ESCAPE '\\'",
                    (*chunk, pattern),
                )
            ]
        return out
