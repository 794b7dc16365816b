"""`PostgresJournal`: the `Journal` interface on a PostgreSQL database (`opening` opens one).

Each method runs one operation of `lifecycle`, `steps`, `actions`, `workers` or `reads` in
one transaction of the pool (`connection.PgConnection`). The contracts are in
`journal.interface`; the SQLite implementation's semantics are the spec, and
`tests/journal/` runs the same suite on both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sylphrun import model
from sylphrun.journal.interface import WorkListener
from sylphrun.journal.postgres import (
    actions,
    events,
    feed,
    flow,
    lifecycle,
    reads,
    schedules,
    schema,
    steps,
    workers,
)
from sylphrun.journal.postgres.connection import PgConnection
from sylphrun.journal.postgres.transitions import insert_children, insert_runs
from sylphrun.journal.types import (
    Change,
    ChangePage,
    Claim,
    Created,
    Event,
    EventRecord,
    EventWait,
    FeedCursor,
    Hold,
    JournaledStep,
    LeaseHolder,
    LogRecord,
    OverdueRun,
    RunSpec,
    RunSummary,
    ScheduleState,
    ScheduleTick,
    SentEvent,
    StateChange,
    StepChange,
    TakenEvent,
    TaskTerms,
)


class PostgresJournal:
    """A `Journal` on one PostgreSQL database, through a pool of connections."""

    def __init__(self, pg: PgConnection) -> None:
        self.pg = pg

    # -- the handle ----------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.pg.location

    def close(self) -> None:
        self.pg.close()

    def listen_for_work(self):
        """A `listen.WorkListener` on this journal: wakes when a run becomes claimable,
        from any host."""
        from sylphrun.journal.postgres.listen import WorkListener

        return WorkListener(self.pg.url)

    def work_listener(self) -> WorkListener | None:
        """`Journal.work_listener`: LISTEN on its own connection."""
        return self.listen_for_work()

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

    # -- runs ------------------------------------------------------------------------------

    def enqueue_runs(self, specs: Sequence[RunSpec], now: float) -> list[Created]:
        return [Created(*r) for r in self.pg.write(lambda cur: insert_runs(cur, specs, now))]

    def enqueue_children(
        self, run_id: str, epoch: int, specs: Sequence[RunSpec], now: float
    ) -> list[Created]:
        return [Created(*r) for r in self.pg.write(
            lambda cur: insert_children(cur, run_id, epoch, specs, now))]

    def claim_runs(
        self, worker_id: str, limit: int, *, lease_seconds: float,
        known_tasks: Mapping[str, TaskTerms], now: float,
    ) -> tuple[list[Claim], list[str]]:
        return self.pg.write(lambda cur: lifecycle.claim_runs(
            cur, worker_id, limit, lease_seconds=lease_seconds, known_tasks=known_tasks,
            now=now))

    def keyed_batch_children(self, run_id: str, step_key: str) -> list[str]:
        return self.pg.read(lambda cur: lifecycle.keyed_batch_children(cur, run_id, step_key))

    def suspend_run(
        self, run_id: str, epoch: int, *, children: Sequence[str], wake_at: float | None,
        now: float,
    ) -> None:
        self.pg.write(lambda cur: lifecycle.suspend_run(cur, run_id, epoch, children=children,
                                                        wake_at=wake_at, now=now))

    def release_run(self, run_id: str, epoch: int, now: float) -> None:
        self.pg.write(lambda cur: lifecycle.release_run(cur, run_id, epoch, now))

    def requeue_after_error(self, run_id: str, epoch: int, *, error: str, now: float) -> bool:
        return self.pg.write(lambda cur: lifecycle.requeue_after_error(cur, run_id, epoch,
                                                                       error=error, now=now))

    def finish_run(
        self, run_id: str, epoch: int, *, status: str, output: str | None, error: str | None,
        traceback: str | None, now: float,
    ) -> None:
        self.pg.write(lambda cur: lifecycle.finish_run(
            cur, run_id, epoch, status=status, output=output, error=error, traceback=traceback,
            now=now))

    def schedule_retry(
        self, run_id: str, epoch: int, *, error: str, traceback: str | None, retry_at: float,
        now: float,
    ) -> None:
        self.pg.write(lambda cur: lifecycle.schedule_retry(
            cur, run_id, epoch, error=error, traceback=traceback, retry_at=retry_at, now=now))

    # -- steps and logs --------------------------------------------------------------------

    def record_step_start(
        self, run_id: str, epoch: int, *, key: str, name: str, kind: str, seq: int,
        run_attempt: int, now: float, notify: bool = True, fn: str | None = None,
        args_hash: str | None = None,
    ) -> None:
        steps.record_step_start(self.pg, run_id, epoch, key=key, name=name, kind=kind, seq=seq,
                                run_attempt=run_attempt, now=now, notify=notify, fn=fn,
                                args_hash=args_hash)

    def record_step_result(
        self, run_id: str, epoch: int, *, key: str, output: str, now: float,
        compensate: str | None = None, notify: bool = True,
    ) -> None:
        steps.record_step_result(self.pg, run_id, epoch, key=key, output=output, now=now,
                                 compensate=compensate, notify=notify)

    def note_step_change(
        self, run_id: str, epoch: int, *, key: str, status: str, now: float
    ) -> None:
        self.pg.write(lambda cur: steps.note_step_change(cur, run_id, epoch, key=key,
                                                         status=status, now=now))

    def record_step_failure(
        self, run_id: str, epoch: int, *, key: str, error: str, traceback: str | None,
        retry_at: float | None, fatal: bool = False, now: float,
    ) -> None:
        self.pg.write(lambda cur: steps.record_step_failure(
            cur, run_id, epoch, key=key, error=error, traceback=traceback, retry_at=retry_at,
            fatal=fatal, now=now))

    def record_step_interrupted(
        self, run_id: str, epoch: int, *, key: str, reason: str, now: float
    ) -> None:
        self.pg.write(lambda cur: steps.record_step_interrupted(cur, run_id, epoch, key=key,
                                                                reason=reason, now=now))

    def record_step_waiting(
        self, run_id: str, epoch: int, *, key: str, name: str, kind: str, seq: int,
        run_attempt: int, output: str, now: float,
    ) -> None:
        self.pg.write(lambda cur: steps.record_step_waiting(
            cur, run_id, epoch, key=key, name=name, kind=kind, seq=seq, run_attempt=run_attempt,
            output=output, now=now))

    def record_completed_step(
        self, run_id: str, epoch: int, *, key: str, name: str, kind: str, seq: int,
        run_attempt: int, output: str, started_at: float, now: float,
    ) -> None:
        self.pg.write(lambda cur: steps.record_completed_step(
            cur, run_id, epoch, key=key, name=name, kind=kind, seq=seq, run_attempt=run_attempt,
            output=output, started_at=started_at, now=now))

    def record_trigger_step(
        self, run_id: str, epoch: int, *, key: str, name: str, seq: int, run_attempt: int,
        specs: Sequence[RunSpec], output_of: Callable[[list[str]], str], now: float,
        list_children: bool = True,
    ) -> tuple[list[str], str]:
        return self.pg.write(lambda cur: steps.record_trigger_step(
            cur, run_id, epoch, key=key, name=name, seq=seq, run_attempt=run_attempt,
            specs=specs, output_of=output_of, now=now, list_children=list_children))

    def mark_step_diverged(self, run_id: str, epoch: int, *, key: str, error: str | None) -> None:
        self.pg.write(lambda cur: steps.mark_step_diverged(cur, run_id, epoch, key=key,
                                                           error=error))

    def record_divergence(
        self, run_id: str, epoch: int, *, key: str, error: str, now: float
    ) -> None:
        self.pg.write(lambda cur: steps.record_divergence(cur, run_id, epoch, key=key,
                                                          error=error, now=now))

    def append_log(
        self, run_id: str, *, level: str, message: str, step_key: str | None, now: float,
        epoch: int | None = None,
    ) -> None:
        self.pg.write(lambda cur: steps.append_log(cur, run_id, level=level, message=message,
                                                   step_key=step_key, now=now, epoch=epoch))

    # -- workers and tasks -----------------------------------------------------------------

    def register_worker(
        self, worker_id: str, *, pid: int, host: str, supervisor_pid: int | None,
        wake_addr: str | None, now: float,
    ) -> None:
        self.pg.write(lambda cur: workers.register_worker(
            cur, worker_id, pid=pid, host=host, supervisor_pid=supervisor_pid,
            wake_addr=wake_addr, now=now))

    def heartbeat(
        self, worker_id: str, held: Mapping[str, int], *, lease_seconds: float, now: float
    ) -> list[str]:
        return self.pg.write(lambda cur: workers.heartbeat(
            cur, worker_id, held, lease_seconds=lease_seconds, now=now))

    def renew_leases_for(self, worker_id: str, *, lease_seconds: float, now: float) -> int:
        return self.pg.write(lambda cur: workers.renew_leases_for(
            cur, worker_id, lease_seconds=lease_seconds, now=now))

    def unregister_worker(self, worker_id: str, now: float) -> None:
        self.pg.write(lambda cur: workers.unregister_worker(cur, worker_id, now))

    def release_worker_runs(
        self, worker_id: str, *, reason: str, crashed: bool, now: float
    ) -> tuple[list[str], list[str]]:
        return self.pg.write(lambda cur: workers.release_worker_runs(
            cur, worker_id, reason=reason, crashed=crashed, now=now))

    def doom_run(self, run_id: str, *, error: str, now: float,
                 worker_id: str | None = None) -> bool:
        return self.pg.write(lambda cur: workers.doom_run(
            cur, run_id, error=error, now=now, worker_id=worker_id))

    def register_tasks(
        self, records: Sequence[model.TaskRecord], *, registered_by: str,
        project_dir: str | None, now: float,
    ) -> bool:
        return self.pg.write(lambda cur: workers.register_tasks(
            cur, records, registered_by=registered_by, project_dir=project_dir, now=now))

    # -- user actions ----------------------------------------------------------------------

    def cancel_run(self, run_id: str, now: float) -> list[str]:
        return self.pg.write(lambda cur: actions.cancel_run(cur, run_id, now))

    def retry_run(self, run_id: str, now: float) -> None:
        self.pg.write(lambda cur: actions.retry_run(cur, run_id, now))

    def replay_run(self, run_id: str, *, from_step: str | None, now: float) -> str:
        return self.pg.write(lambda cur: actions.replay_run(cur, run_id, from_step=from_step,
                                                            now=now))

    def wake_run(self, run_id: str, now: float) -> str:
        return self.pg.write(lambda cur: actions.wake_run(cur, run_id, now))

    # -- reads: runs -----------------------------------------------------------------------

    def get_run(self, run_id: str) -> model.Run:
        return self.pg.read(lambda cur: reads.get_run(cur, run_id))

    def resolve_run_id(self, prefix: str) -> str:
        return self.pg.read(lambda cur: reads.resolve_run_id(cur, prefix))

    def list_runs(
        self, *, status: str | None = None, task_id: str | None = None,
        parent_run_id: str | None = None, limit: int = 100, top_level_only: bool = False,
    ) -> list[model.Run]:
        return self.pg.read(lambda cur: reads.list_runs(
            cur, status=status, task_id=task_id, parent_run_id=parent_run_id, limit=limit,
            top_level_only=top_level_only))

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
        return [OverdueRun(*r) for r in self.pg.read(
            lambda cur: reads.overdue_runs(cur, worker_ids, now=now))]

    # -- reads: steps and logs -------------------------------------------------------------

    def steps_of(self, run_id: str, *, with_attempts: bool = True) -> list[model.Step]:
        return self.pg.read(lambda cur: reads.steps_of(cur, run_id, with_attempts=with_attempts),
                            snapshot=with_attempts)

    def replay_state(self, run_id: str) -> dict[str, JournaledStep]:
        return self.pg.read(lambda cur: reads.replay_state(cur, run_id))

    def step_tries_in_attempt(self, run_id: str, step_key: str, run_attempt: int) -> int:
        return self.pg.read(lambda cur: reads.step_tries_in_attempt(cur, run_id, step_key,
                                                                    run_attempt))

    def steps_changed_since(self, run_id: str, since: float,
                            key: str | None = None) -> list[StepChange]:
        return self.pg.read(lambda cur: reads.steps_changed_since(cur, run_id, since, key))

    def logs_of(self, run_id: str, *, after_id: int = 0) -> list[model.LogLine]:
        return self.pg.read(lambda cur: reads.logs_of(cur, run_id, after_id=after_id))

    def log_lines_after(self, run_id: str, after_id: int = 0,
                        limit: int = 5_000) -> list[tuple[int, model.LogLine]]:
        return self.pg.read(lambda cur: reads.log_lines_after(cur, run_id, after_id, limit))

    def body_lines_of_attempt(self, run_id: str, attempt: int) -> list[tuple[str, str]]:
        return self.pg.read(lambda cur: reads.body_lines_of_attempt(cur, run_id, attempt))

    # -- reads: workers and tasks ----------------------------------------------------------

    def live_workers(self, *, now: float, stale_after: float) -> list[model.WorkerInfo]:
        return self.pg.read(lambda cur: reads.live_workers(cur, now=now,
                                                           stale_after=stale_after))

    def registered_tasks(self) -> dict[str, model.TaskRecord]:
        return self.pg.read(reads.registered_tasks)

    # -- reads for the dashboard -----------------------------------------------------------

    def run_summaries(self, *, limit: int = 50_000,
                      parent_run_id: str | None = None) -> list[RunSummary]:
        return self.pg.read(lambda cur: reads.run_summaries(cur, limit=limit,
                                                            parent_run_id=parent_run_id))

    def run_summaries_by_ids(self, run_ids: Sequence[str]) -> list[RunSummary]:
        return self.pg.read(lambda cur: reads.run_summaries_by_ids(cur, run_ids))

    def runs_with_payload_text(self, text: str, *, limit: int = 1_000,
                               run_ids: Sequence[str] | None = None) -> list[str]:
        return self.pg.read(lambda cur: reads.runs_with_payload_text(cur, text, limit=limit,
                                                                     run_ids=run_ids))

    # -- the change feed -------------------------------------------------------------------

    def last_event_id(self) -> int:
        return self.pg.read(reads.last_event_id)

    def events_since(self, after_id: int, limit: int = 10_000) -> list[Event]:
        return list(map(Event._make, self.pg.read(
            lambda cur: reads.events_since(cur, after_id, limit))))

    def run_state_changes(self, run_id: str, *, up_to: int) -> list[StateChange]:
        return list(map(StateChange._make, self.pg.read(
            lambda cur: reads.run_state_changes(cur, run_id, up_to=up_to))))

    def last_log_id(self) -> int:
        return self.pg.read(reads.last_log_id)

    def notable_logs_since(self, after_id: int, limit: int = 1000) -> list[LogRecord]:
        return self.pg.read(lambda cur: reads.notable_logs_since(cur, after_id, limit))

    def change_token(self) -> int:
        return self.pg.read(reads.change_token)

    # -- the write lock, for the supervisor's watchdog --------------------------------------
    # Writers on a server are not local processes holding one lock: a frozen writer holds
    # only the rows it locked, and the watchdog's question has no answer here. None for
    # all three, as the contract allows (documented in the README's Postgres section).

    def write_lock_holder(self) -> int | None:
        return None

    def stopped_writer(self) -> str | None:
        return None

    def write_progress(self) -> object:
        return None

    # -- schedules (issue 15) -----------------------------------------------------------------

    def start_schedule(self, task_id: str, *, settled_through: float, now: float) -> bool:
        return self.pg.write(lambda cur: schedules.start_schedule(
            cur, task_id, settled_through=settled_through, now=now))

    def fire_schedule(self, task_id: str, ticks: Sequence[ScheduleTick], *,
                      settled_through: float, now: float) -> list[Created]:
        return self.pg.write(lambda cur: schedules.fire_schedule(
            cur, task_id, ticks, settled_through=settled_through, now=now))

    def set_schedule_paused(self, task_id: str, paused: bool, *, now: float) -> bool:
        return self.pg.write(lambda cur: schedules.set_schedule_paused(cur, task_id, paused,
                                                                       now=now))

    def schedule_states(self) -> dict[str, ScheduleState]:
        return self.pg.read(schedules.schedule_states, snapshot=True)

    # -- flow control ---------------------------------------------------------------------

    def held_by(self, run_id: str, *, now: float) -> Hold | None:
        return self.pg.read(lambda cur: flow.held_by(cur, run_id, now), snapshot=True)

    # -- change feed (seams-feed): a cursor is (event id,), exact as on SQLite because ids
    # and step stamps are given at commit under the feed lock (schema V9_STEP_CHANGE_SEQ).

    def feed_cursor(self, *, from_start: bool = False) -> FeedCursor:
        return FeedCursor((0 if from_start else self.last_event_id(),))

    def changes_since(self, cursor: FeedCursor, *, limit: int = 10_000) -> ChangePage:
        rows = self.pg.read(lambda cur: reads.events_since(cur, cursor.token[0], limit))
        changes = [Change(*row, FeedCursor((row[0],))) for row in rows]
        return ChangePage(changes, changes[-1].cursor if changes else cursor,
                          len(changes) == limit)

    def step_changes(self, run_id: str, after: FeedCursor, *,
                     until: FeedCursor | None = None) -> tuple[list[StepChange], FeedCursor]:
        found, upto = self.pg.read(lambda cur: feed.step_changes(
            cur, run_id, after.token[0], None if until is None else until.token[0]),
            snapshot=True)
        return found, FeedCursor((upto,))

    def run_state_changes_until(self, run_id: str, until: FeedCursor) -> list[StateChange]:
        return self.run_state_changes(run_id, up_to=until.token[0])

    # -- user events (issue 14) -------------------------------------------------------------

    def send_event(self, *, event_id: str | None, name: str, data: str,
                   derived_id: bool = False, sent_by: str | None = None,
                   now: float) -> SentEvent:
        return self.pg.write(lambda cur: events.send_event(
            cur, event_id=event_id, name=name, data=data, derived_id=derived_id,
            sent_by=sent_by, now=now))

    def take_event(self, run_id: str, epoch: int, *, key: str, name: str, seq: int,
                   run_attempt: int, event: str, match: dict | None,
                   timeout_at: float | None, now: float) -> TakenEvent:
        return self.pg.write(lambda cur: events.take_event(
            cur, run_id, epoch, key=key, name=name, seq=seq, run_attempt=run_attempt,
            event=event, match=match, timeout_at=timeout_at, now=now))

    def event_waits_of(self, run_id: str) -> list[EventWait]:
        return self.pg.read(lambda cur: events.event_waits_of(cur, run_id))

    def recent_events(self, *, name: str | None = None, limit: int = 50) -> list[EventRecord]:
        return self.pg.read(lambda cur: events.recent_events(cur, name=name, limit=limit),
                            snapshot=True)
