"""The reads of the PostgreSQL journal (`JournalReader`): the half of `PostgresJournal` a
dashboard, `show` or a watchdog needs, each in one read transaction of the pool.
"""

from __future__ import annotations

from collections.abc import Sequence

from sylphrun import model
from sylphrun.journal.postgres import (
    events,
    feed,
    flow,
    reads,
    schedules,
    schema,
    worker_loads,
)
from sylphrun.journal.postgres.connection import PgConnection
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


class PostgresReads:
    """What may be asked of a PostgreSQL journal without writing to it."""

    def __init__(self, pg: PgConnection) -> None:
        self.pg = pg

    @property
    def location(self) -> str:
        return self.pg.location

    def close(self) -> None:
        self.pg.close()

    def replaced(self) -> bool:
        return False  # a database cannot be swapped under a connection like a file

    def schema_version(self) -> int:
        return self.pg.read(schema.current_version) or 0

    def check_integrity(self) -> str:
        # PostgreSQL checks its own pages; what can go wrong in ours is the feed's numbering.
        def unnumbered(cur) -> int:
            cur.execute("SELECT COUNT(*) FROM events WHERE id IS NULL")
            return cur.fetchone()[0]

        count = self.pg.read(unnumbered)
        return "ok" if count == 0 else f"{count} events were committed without an id"

    def get_run(self, run_id: str) -> model.Run:
        return self.pg.read(lambda cur: reads.get_run(cur, run_id))

    def resolve_run_id(self, prefix: str) -> str:
        return self.pg.read(lambda cur: reads.resolve_run_id(cur, prefix))

    def list_runs(
        self,
        *,
        status: str | None = None,
        task_id: str | None = None,
        parent_run_id: str | None = None,
        limit: int = 100,
        top_level_only: bool = False,
    ) -> list[model.Run]:
        return self.pg.read(
            lambda cur: reads.list_runs(
                cur,
                status=status,
                task_id=task_id,
                parent_run_id=parent_run_id,
                limit=limit,
                top_level_only=top_level_only,
            )
        )

    def children_of(self, run_id: str) -> list[model.Run]:
        return self.pg.read(lambda cur: reads.children_of(cur, run_id))

    def run_fields(self, run_id: str) -> tuple[int, str | None]:
        return self.pg.read(lambda cur: reads.run_fields(cur, run_id))

    def run_results(self, run_ids: Sequence[str]) -> dict[str, model.RunResult]:
        return self.pg.read(lambda cur: reads.run_results(cur, run_ids))

    def children_results(self, parent_run_id: str) -> dict[str, model.RunResult | None]:
        return self.pg.read(lambda cur: reads.children_results(cur, parent_run_id))

    def run_attempts(self, run_id: str) -> list[model.RunAttempt]:
        return self.pg.read(lambda cur: reads.run_attempts(cur, run_id))

    def status_counts(self) -> dict[str, int]:
        return self.pg.read(reads.status_counts)

    def next_ready_at(self) -> float | None:
        return self.pg.read(reads.next_ready_at)

    def has_ready_work(self, now: float) -> bool:
        return self.pg.read(lambda cur: reads.has_ready_work(cur, now))

    def lease_states(self, run_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        return self.pg.read(lambda cur: reads.lease_states(cur, run_ids))

    def lease_holder(self, run_id: str) -> LeaseHolder | None:
        found = self.pg.read(lambda cur: reads.lease_holder(cur, run_id))
        return None if found is None else LeaseHolder(*found)

    def overdue_runs(self, worker_ids: Sequence[str], *, now: float) -> list[OverdueRun]:
        return [
            OverdueRun(*r)
            for r in self.pg.read(lambda cur: reads.overdue_runs(cur, worker_ids, now=now))
        ]

    def steps_of(self, run_id: str, *, with_attempts: bool = True) -> list[model.Step]:
        return self.pg.read(
            lambda cur: reads.steps_of(cur, run_id, with_attempts=with_attempts),
            snapshot=with_attempts,
        )

    def replay_state(self, run_id: str) -> dict[str, JournaledStep]:
        return self.pg.read(lambda cur: reads.replay_state(cur, run_id))

    def step_tries_in_attempt(self, run_id: str, step_key: str, run_attempt: int) -> int:
        return self.pg.read(
            lambda cur: reads.step_tries_in_attempt(cur, run_id, step_key, run_attempt)
        )

    def logs_of(self, run_id: str, *, after_id: int = 0) -> list[model.LogLine]:
        return self.pg.read(lambda cur: reads.logs_of(cur, run_id, after_id=after_id))

    def log_lines_after(
        self, run_id: str, after_id: int = 0, limit: int = 5_000
    ) -> list[tuple[int, model.LogLine]]:
        return self.pg.read(lambda cur: reads.log_lines_after(cur, run_id, after_id, limit))

    def body_lines_of_attempt(self, run_id: str, attempt: int) -> list[tuple[str, str]]:
        return self.pg.read(lambda cur: reads.body_lines_of_attempt(cur, run_id, attempt))

    def live_workers(self, *, now: float, stale_after: float) -> list[model.WorkerInfo]:
        return self.pg.read(lambda cur: reads.live_workers(cur, now=now, stale_after=stale_after))

    def registered_tasks(self) -> dict[str, model.TaskRecord]:
        return self.pg.read(reads.registered_tasks)

    def run_summaries(
        self, *, limit: int = 50_000, parent_run_id: str | None = None
    ) -> list[RunSummary]:
        return self.pg.read(
            lambda cur: reads.run_summaries(cur, limit=limit, parent_run_id=parent_run_id)
        )

    def run_summaries_by_ids(self, run_ids: Sequence[str]) -> list[RunSummary]:
        return self.pg.read(lambda cur: reads.run_summaries_by_ids(cur, run_ids))

    def runs_with_payload_text(
        self, text: str, *, limit: int = 1_000, run_ids: Sequence[str] | None = None
    ) -> list[str]:
        return self.pg.read(
            lambda cur: reads.runs_with_payload_text(cur, text, limit=limit, run_ids=run_ids)
        )

    def last_event_id(self) -> int:
        return self.pg.read(reads.last_event_id)

    def events_since(self, after_id: int, limit: int = 10_000) -> list[Event]:
        return list(
            map(Event._make, self.pg.read(lambda cur: reads.events_since(cur, after_id, limit)))
        )

    def run_state_changes(self, run_id: str, *, up_to: int) -> list[StateChange]:
        return list(
            map(
                StateChange._make,
                self.pg.read(lambda cur: reads.run_state_changes(cur, run_id, up_to=up_to)),
            )
        )

    def last_log_id(self) -> int:
        return self.pg.read(reads.last_log_id)

    def notable_logs_since(self, after_id: int, limit: int = 1000) -> list[LogRecord]:
        return self.pg.read(lambda cur: reads.notable_logs_since(cur, after_id, limit))

    def change_token(self) -> int:
        return self.pg.read(reads.change_token)

    def write_lock_holder(self) -> int | None:
        return None

    def stopped_writer(self) -> str | None:
        return None

    def write_progress(self) -> object:
        return None

    def schedule_states(self) -> dict[str, ScheduleState]:
        return self.pg.read(schedules.schedule_states, snapshot=True)

    def held_by(self, run_id: str, *, now: float) -> Hold | None:
        return self.pg.read(lambda cur: flow.held_by(cur, run_id, now), snapshot=True)

    def feed_cursor(self, *, from_start: bool = False) -> FeedCursor:
        return FeedCursor((0 if from_start else self.last_event_id(),))

    def changes_since(self, cursor: FeedCursor, *, limit: int = 10_000) -> ChangePage:
        rows = self.pg.read(lambda cur: reads.events_since(cur, cursor.token[0], limit))
        changes = [Change(*row, FeedCursor((row[0],))) for row in rows]
        return ChangePage(changes, changes[-1].cursor if changes else cursor, len(changes) == limit)

    def step_changes(
        self, run_id: str, after: FeedCursor, *, until: FeedCursor | None = None
    ) -> tuple[list[StepChange], FeedCursor]:
        found, upto = self.pg.read(
            lambda cur: feed.step_changes(
                cur, run_id, after.token[0], None if until is None else until.token[0]
            ),
            snapshot=True,
        )
        return found, FeedCursor((upto,))

    def run_state_changes_until(self, run_id: str, until: FeedCursor) -> list[StateChange]:
        return self.run_state_changes(run_id, up_to=until.token[0])

    def event_waits_of(self, run_id: str) -> list[EventWait]:
        return self.pg.read(lambda cur: events.event_waits_of(cur, run_id))

    def recent_events(self, *, name: str | None = None, limit: int = 50) -> list[EventRecord]:
        return self.pg.read(
            lambda cur: events.recent_events(cur, name=name, limit=limit), snapshot=True
        )

    # -- workers and their hosts (issue 17) -------------------------------------------

    def worker_loads(self, *, now: float, stale_after: float) -> list[WorkerLoad]:
        return self.pg.read(
            lambda cur: worker_loads.worker_loads(cur, now=now, stale_after=stale_after)
        )
