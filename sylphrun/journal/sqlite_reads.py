"""The reads of the SQLite journal (`JournalReader`): the half of `SqliteJournal` a
dashboard, `show` or a watchdog needs. Thin as the writes are: each method hands its
`Connection` to the function in `queries`, `logs`, `flow`, `schedules` or `sent_events`
that does the work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from sylphrun import model
from sylphrun.journal import (
    connection,
    flow,
    lock_holder,
    logs,
    queries,
    schedules,
    sent_events,
    worker_loads,
)
from sylphrun.journal.connection import Connection
from sylphrun.journal.types import (
    Change,
    ChangePage,
    Event,
    EventRecord,
    EventWait,
    FeedCursor,
    Hold,
    JournaledStep,
    LeaseHolder,
    LogRecord,
    OverdueRun,
    RunSummary,
    ScheduleState,
    StateChange,
    StepChange,
    WorkerLoad,
)


class SqliteReads:
    """What may be asked of a SQLite journal without writing to it. A change-feed cursor
    is (event id,): see `queries.feed` for why that is exact on SQLite."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn  # the journal's own; tests of the SQLite internals reach for it

    @property
    def location(self) -> str:
        return str(self.conn.path)

    def close(self) -> None:
        self.conn.close()

    def replaced(self) -> bool:
        return self.conn.file_replaced()

    def schema_version(self) -> int:
        with self.conn.read() as db:
            return db.execute("PRAGMA user_version").fetchone()[0]

    def check_integrity(self) -> str:
        return queries.integrity_check(self.conn)

    def get_run(self, run_id: str) -> model.Run:
        return queries.get_run(self.conn, run_id)

    def resolve_run_id(self, prefix: str) -> str:
        return queries.resolve_run_id(self.conn, prefix)

    def list_runs(
        self,
        *,
        status: str | None = None,
        task_id: str | None = None,
        parent_run_id: str | None = None,
        limit: int = 100,
        top_level_only: bool = False,
    ) -> list[model.Run]:
        return queries.list_runs(
            self.conn,
            status=status,
            task_id=task_id,
            parent_run_id=parent_run_id,
            limit=limit,
            top_level_only=top_level_only,
        )

    def children_of(self, run_id: str) -> list[model.Run]:
        return queries.children_of(self.conn, run_id)

    def run_fields(self, run_id: str) -> tuple[int, str | None]:
        return queries.run_fields(self.conn, run_id)

    def run_results(self, run_ids: Sequence[str]) -> dict[str, model.RunResult]:
        return queries.run_results(self.conn, run_ids)

    def children_results(self, parent_run_id: str) -> dict[str, model.RunResult | None]:
        return queries.children_results(self.conn, parent_run_id)

    def run_attempts(self, run_id: str) -> list[model.RunAttempt]:
        return queries.run_attempts(self.conn, run_id)

    def status_counts(self) -> dict[str, int]:
        return queries.status_counts(self.conn)

    def next_ready_at(self) -> float | None:
        return queries.next_ready_at(self.conn)

    def has_ready_work(self, now: float) -> bool:
        return queries.has_ready_work(self.conn, now)

    def lease_states(self, run_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        return queries.lease_states(self.conn, run_ids)

    def lease_holder(self, run_id: str) -> LeaseHolder | None:
        found = queries.lease_holder(self.conn, run_id)
        return None if found is None else LeaseHolder(*found)

    def overdue_runs(self, worker_ids: Sequence[str], *, now: float) -> list[OverdueRun]:
        return [OverdueRun(*r) for r in queries.overdue_runs(self.conn, worker_ids, now=now)]

    def steps_of(self, run_id: str, *, with_attempts: bool = True) -> list[model.Step]:
        return queries.steps_of(self.conn, run_id, with_attempts=with_attempts)

    def replay_state(self, run_id: str) -> dict[str, JournaledStep]:
        return queries.replay_state(self.conn, run_id)

    def step_tries_in_attempt(self, run_id: str, step_key: str, run_attempt: int) -> int:
        return queries.step_tries_in_attempt(self.conn, run_id, step_key, run_attempt)

    def logs_of(self, run_id: str, *, after_id: int = 0) -> list[model.LogLine]:
        return queries.logs_of(self.conn, run_id, after_id=after_id)

    def log_lines_after(
        self, run_id: str, after_id: int = 0, limit: int = 5_000
    ) -> list[tuple[int, model.LogLine]]:
        return queries.log_lines_after(self.conn, run_id, after_id, limit)

    def body_lines_of_attempt(self, run_id: str, attempt: int) -> list[tuple[str, str]]:
        return logs.body_lines_of_attempt(self.conn, run_id, attempt)

    def live_workers(self, *, now: float, stale_after: float) -> list[model.WorkerInfo]:
        return queries.live_workers(self.conn, now=now, stale_after=stale_after)

    def registered_tasks(self) -> dict[str, model.TaskRecord]:
        return queries.registered_tasks(self.conn)

    def run_summaries(
        self, *, limit: int = 50_000, parent_run_id: str | None = None
    ) -> list[RunSummary]:
        return queries.run_summaries(self.conn, limit=limit, parent_run_id=parent_run_id)

    def run_summaries_by_ids(self, run_ids: Sequence[str]) -> list[RunSummary]:
        return queries.run_summaries_by_ids(self.conn, run_ids)

    def runs_with_payload_text(
        self, text: str, *, limit: int = 1_000, run_ids: Sequence[str] | None = None
    ) -> list[str]:
        return queries.runs_with_payload_text(self.conn, text, limit=limit, run_ids=run_ids)

    def last_event_id(self) -> int:
        return queries.last_event_id(self.conn)

    def events_since(self, after_id: int, limit: int = 10_000) -> list[Event]:
        return list(map(Event._make, queries.events_since(self.conn, after_id, limit)))

    def run_state_changes(self, run_id: str, *, up_to: int) -> list[StateChange]:
        return list(
            map(StateChange._make, queries.run_state_changes(self.conn, run_id, up_to=up_to))
        )

    def last_log_id(self) -> int:
        return logs.last_log_id(self.conn)

    def notable_logs_since(self, after_id: int, limit: int = 1000) -> list[LogRecord]:
        return logs.notable_logs_since(self.conn, after_id, limit)

    def change_token(self) -> int:
        return self.conn.data_version()

    def write_lock_holder(self) -> int | None:
        # Asked of the kernel (/proc/locks), not of the connection, which may be waiting
        # on the very lock a frozen writer holds.
        return connection.write_lock_holder(self.conn.path)

    def stopped_writer(self) -> str | None:
        return lock_holder.stopped_lock_holder(self.conn.path)

    def write_progress(self) -> object:
        # A commit writes the WAL file: its mtime and size move, and a stat never waits.
        try:
            st = os.stat(f"{self.conn.path}-wal")
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def event_waits_of(self, run_id: str) -> list[EventWait]:
        return sent_events.event_waits_of(self.conn, run_id)

    def recent_events(self, *, name: str | None = None, limit: int = 50) -> list[EventRecord]:
        return sent_events.recent_events(self.conn, name=name, limit=limit)

    def schedule_states(self) -> dict[str, ScheduleState]:
        return schedules.schedule_states(self.conn)

    def held_by(self, run_id: str, *, now: float) -> Hold | None:
        return flow.run_hold(self.conn, run_id, now)

    def feed_cursor(self, *, from_start: bool = False) -> FeedCursor:
        return FeedCursor((0 if from_start else queries.last_event_id(self.conn),))

    def changes_since(self, cursor: FeedCursor, *, limit: int = 10_000) -> ChangePage:
        rows = queries.events_since(self.conn, cursor.token[0], limit)
        changes = [Change(*row, FeedCursor((row[0],))) for row in rows]
        return ChangePage(changes, changes[-1].cursor if changes else cursor, len(changes) == limit)

    def step_changes(
        self, run_id: str, after: FeedCursor, *, until: FeedCursor | None = None
    ) -> tuple[list[StepChange], FeedCursor]:
        steps, upto = queries.step_changes(
            self.conn, run_id, after.token[0], None if until is None else until.token[0]
        )
        return steps, FeedCursor((upto,))

    def run_state_changes_until(self, run_id: str, until: FeedCursor) -> list[StateChange]:
        return self.run_state_changes(run_id, up_to=until.token[0])

    # -- workers and their hosts (issue 17) -------------------------------------------

    def worker_loads(self, *, now: float, stale_after: float) -> list[WorkerLoad]:
        return worker_loads.worker_loads(self.conn, now=now, stale_after=stale_after)
