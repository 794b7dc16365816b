"""The reading half of the journal interface: what a follower of the journal (the CLI,
the dashboard, `trigger --wait`, the line log) may ask, and the handle itself.

`interface.Journal` extends it with the writes; the contracts common to both (time as an
argument, JSON as text, named errors, the change feed's ordering) are in `interface`.
Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sylphrun import model
from sylphrun.journal.types import (
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


@runtime_checkable
class JournalReader(Protocol):
    """The reads of one project's journal: runs, steps, logs, workers, and the feed."""

    # -- the handle ----------------------------------------------------------------------

    @property
    def location(self) -> str:
        """Where the journal lives, for messages (a file path; a URL without its password)."""
        ...

    def close(self) -> None:
        """Release the connection. The journal's data stays; other handles are unaffected."""
        ...

    def replaced(self) -> bool:
        """Has the journal at `location` been deleted or replaced by another since this
        handle opened it (writes would go where nobody reads)? Cheap enough for a heartbeat;
        a backend where this cannot happen returns False."""
        ...

    def schema_version(self) -> int:
        """The schema version the journal is at: the current one once opened (opening
        migrates an older journal forward and refuses a newer one with `JournalError`)."""
        ...

    def check_integrity(self) -> str:
        """ "ok", or what the backend's own consistency check found wrong."""
        ...

    # -- reads: runs -------------------------------------------------------------------------

    def get_run(self, run_id: str) -> model.Run:
        """The run; `UnknownRun` if there is none. A damaged JSON column reads as a string
        saying so, never an exception (the same for every read of JSON below)."""
        ...

    def resolve_run_id(self, prefix: str) -> str:
        """The full id of the run `prefix` names (an id, or a unique prefix of one);
        `UnknownRun` for none, an ambiguous prefix, or an empty one."""
        ...

    def list_runs(
        self,
        *,
        status: str | None = None,
        task_id: str | None = None,
        parent_run_id: str | None = None,
        limit: int = 100,
        top_level_only: bool = False,
    ) -> list[model.Run]:
        """Runs matching every filter given, newest first (created_at, then id)."""
        ...

    def children_of(self, run_id: str) -> list[model.Run]:
        """The run's children, oldest first."""
        ...

    def run_fields(self, run_id: str) -> tuple[int, str | None]:
        """(attempt, status) of a run, cheaply; `UnknownRun` if there is none."""
        ...

    def run_results(self, run_ids: Sequence[str]) -> dict[str, model.RunResult]:
        """Results of those of the runs that finished; unfinished and unknown are absent."""
        ...

    def children_results(self, parent_run_id: str) -> dict[str, model.RunResult | None]:
        """Every child of a parent in one read: its result, or None while unfinished."""
        ...

    def run_attempts(self, run_id: str) -> list[model.RunAttempt]:
        """The run's attempts that did not complete, oldest first."""
        ...

    def status_counts(self) -> dict[str, int]:
        """How many runs are in each status (statuses with none are absent)."""
        ...

    def next_ready_at(self) -> float | None:
        """The earliest time a queued or waiting run becomes claimable, or None."""
        ...

    def has_ready_work(self, now: float) -> bool:
        """Is anything claimable at `now` (ready, or a lease expired)? Read-only: checked
        before asking for the write of a claim."""
        ...

    def lease_states(self, run_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """(epoch, status) of each of the runs: a worker checks it still owns them."""
        ...

    def lease_holder(self, run_id: str) -> LeaseHolder | None:
        """The registered worker holding a running run, or None."""
        ...

    def overdue_runs(self, worker_ids: Sequence[str], *, now: float) -> list[OverdueRun]:
        """Running runs held by these workers whose timeout deadline passed before `now`."""
        ...

    # -- reads: steps and logs -------------------------------------------------------------

    def steps_of(self, run_id: str, *, with_attempts: bool = True) -> list[model.Step]:
        """The run's steps in `seq` order, outputs decoded, with their failed and
        interrupted attempts unless `with_attempts=False`."""
        ...

    def replay_state(self, run_id: str) -> dict[str, JournaledStep]:
        """What a resuming execution needs of each step, by key; outputs as JSON text."""
        ...

    def step_tries_in_attempt(self, run_id: str, step_key: str, run_attempt: int) -> int:
        """The failed or interrupted tries of a step within one run attempt."""
        ...

    def logs_of(self, run_id: str, *, after_id: int = 0) -> list[model.LogLine]:
        """A run's log lines after log id `after_id`, in the order written."""
        ...

    def log_lines_after(
        self, run_id: str, after_id: int = 0, limit: int = 5_000
    ) -> list[tuple[int, model.LogLine]]:
        """(log id, line) of a run's lines after `after_id`: a follower's cursor read."""
        ...

    def body_lines_of_attempt(self, run_id: str, attempt: int) -> list[tuple[str, str]]:
        """(level, message) of the lines the task body (outside steps) wrote in `attempt`."""
        ...

    # -- reads: workers and tasks ----------------------------------------------------------

    def live_workers(self, *, now: float, stale_after: float) -> list[model.WorkerInfo]:
        """Registered workers not stopped, with a heartbeat within `stale_after` of `now`."""
        ...

    def registered_tasks(self) -> dict[str, model.TaskRecord]:
        """The registered tasks by id (empty: no worker ever registered)."""
        ...

    # -- reads for the dashboard -----------------------------------------------------------

    def run_summaries(
        self, *, limit: int = 50_000, parent_run_id: str | None = None
    ) -> list[RunSummary]:
        """Newest runs first without payloads (or one parent's children, oldest first)."""
        ...

    def run_summaries_by_ids(self, run_ids: Sequence[str]) -> list[RunSummary]:
        """Summaries of these runs, unknown ids absent, in no particular order."""
        ...

    def runs_with_payload_text(
        self, text: str, *, limit: int = 1_000, run_ids: Sequence[str] | None = None
    ) -> list[str]:
        """Ids of the newest runs (or of these) whose payload JSON text contains `text`,
        ASCII case ignored, taken literally (no wildcard characters)."""
        ...

    # -- the change feed ---------------------------------------------------------------------

    def last_event_id(self) -> int:
        """The feed's cursor now (0 for an empty feed): read from here on to follow it."""
        ...

    def events_since(self, after_id: int, limit: int = 10_000) -> list[Event]:
        """Events after cursor `after_id`, in id order, at most `limit`."""
        ...

    def run_state_changes(self, run_id: str, *, up_to: int) -> list[StateChange]:
        """A run's `run.*` events and its steps' `step.waiting` ones, up to event `up_to`."""
        ...

    def last_log_id(self) -> int:
        """The log's cursor now (0 when empty)."""
        ...

    def notable_logs_since(self, after_id: int, limit: int = 1000) -> list[LogRecord]:
        """WARNING and above of any run after log id `after_id`, oldest first."""
        ...

    def change_token(self) -> int:
        """A cheap "anything new?": a value that changes when another handle commits.
        Compare two readings for equality only; no order is promised."""
        ...

    # -- the write lock, for the supervisor's watchdog (seams-callsites) ---------------------

    def write_lock_holder(self) -> int | None:
        """The pid of the local process holding the journal's write lock now, or None (the
        lock is free, or this backend's writers are not local processes). Never waits on
        the journal: a watchdog asks it while a frozen writer holds up every other one."""
        ...

    def stopped_writer(self) -> str | None:
        """One line naming a stopped local process (SIGSTOP, a debugger) that holds the
        journal's write lock, for a status bar: every writer is frozen until it continues.
        None otherwise, and always None where writers are not local processes."""
        ...

    def write_progress(self) -> object:
        """A value that changes whenever a write commits, read without waiting on the
        journal (None when unknown): with `write_lock_holder`, it tells a writer that
        holds the lock while committing apart from one frozen inside a transaction.
        Compare two readings for equality only."""
        ...

    # -- user events (issue 14) --------------------------------------------------------------

    def event_waits_of(self, run_id: str) -> list[EventWait]:
        """The run's open `wait_for_event` steps: event, match, timeout time, since when."""
        ...

    def recent_events(self, *, name: str | None = None, limit: int = 50) -> list[EventRecord]:
        """Sent events, newest first (only those named `name`), with the runs each matched
        (woke or was consumed by), triggered and cancelled."""

    # -- schedules (issue 15) ---------------------------------------------------------------

    def schedule_states(self) -> dict[str, ScheduleState]:
        """Every schedule's state, by task id (a task never seen by a supervisor, nor
        paused, has none), with its last run's status read in the same snapshot."""

    # -- flow control (journal/flow.py) ------------------------------------------------------

    def held_by(self, run_id: str, *, now: float) -> Hold | None:
        """Why a queued run whose time has come is not starting at `now`: its key's (or
        task's) concurrency is full, its rate window is spent (with when it frees up), or
        it is still debouncing (with when it starts). Judged by the limits the workers
        registered for its task. None: not held, not queued, or no such run."""
        ...

    # -- change feed (seams-feed) --------------------------------------------------------------
    #
    # The exact cursor readers follow (the dashboard, `dev --no-tui`): no clock, no slack.
    # Each change is read once and in order: `changes_since` for the feed's entries,
    # `step_changes` for the step changes of a run an entry names (a step's start and result
    # write no entry of their own: schema V2). How a backend keeps this exact:
    #
    # - SQLite: one writer at a time, so event ids are commit-ordered; a step row carries the
    #   newest event id when it was written (`steps.change_seq`), set in the same statement.
    # - PostgreSQL must not use a bare SERIAL/sequence as the cursor: ids are taken before
    #   commit, so a transaction can commit after one that took a larger id, and a reader
    #   that moved past the larger id skips it for ever. Two ways that stay exact, as
    #   Postgres-based queues do: (1) stamp each change, event rows and step rows alike, with
    #   the writing transaction's `pg_current_xact_id()` (xid8), and read only the changes of
    #   transactions below `pg_snapshot_xmin(pg_current_snapshot())`: all of those have
    #   finished, so nothing can still land in that range; the cursor keeps the xmin read up
    #   to (plus the position inside it, for `limit`). (2) A per-run change counter on the
    #   run's row, incremented (and read back) in the same transaction as the change: the
    #   row lock orders a run's changes by commit, so `step_changes` follows it exactly per
    #   run; the journal-wide order across runs then still needs (1).
    #   Either way step changes are found through their run (the primary key's prefix), and
    #   the cursor stays opaque to readers.

    def feed_cursor(self, *, from_start: bool = False) -> FeedCursor:
        """The feed's place now (follow from here), or before its first change."""
        ...

    def changes_since(self, cursor: FeedCursor, *, limit: int = 10_000) -> ChangePage:
        """The changes committed after `cursor`, oldest first, at most `limit`, and the
        cursor to read from next. Exact: read page after page, every change comes once,
        none is skipped however late its transaction commits, and a run's changes come in
        the order they were made."""
        ...

    def step_changes(
        self, run_id: str, after: FeedCursor, *, until: FeedCursor | None = None
    ) -> tuple[list[StepChange], FeedCursor]:
        """The run's steps changed after `after` and before `until` (a `Change.cursor`: what
        the run did before that change; None: up to now), oldest change first, and the
        cursor to pass as `after` next time. Each step once per call, in its state now: a
        step that started and finished in between is one change, 'completed'; one changed
        again after `until` is left for a later call. Calls chained by their cursors see
        every step change once, with no gap."""
        ...

    def run_state_changes_until(self, run_id: str, until: FeedCursor) -> list[StateChange]:
        """`run_state_changes` up to a place in the feed: with the changes read after
        `until`, the run's whole history of parking and resuming, each once."""
        ...

    # -- workers and their hosts (issue 17: workers on several machines) -----------------

    def worker_loads(self, *, now: float, stale_after: float) -> list[WorkerLoad]:
        """The live workers (as `live_workers`: not stopped, a heartbeat within
        `stale_after` of `now`), each with the ids of the running runs it holds the lease
        of, in id order; by host, then oldest first. What `sylphrun workers` and the
        dashboard's Workers view show."""
        ...


__all__ = ["JournalReader"]
