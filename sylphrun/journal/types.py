"""The records that cross the journal interface (`interface.Journal`), in one place.

Nothing here knows SQL or a database driver: a second backend (PostgreSQL) builds the same
records from its rows. The older types are still defined beside the SQLite code that builds
them (`transitions.RunSpec`, `lifecycle.Claim`, `queries.JournaledStep` ...) and only named
here, with the journal's policy constants (`MAX_CRASHES`, `UNKNOWN_TASK_GRACE`) and the
feed's kinds and levels. Callers outside the package import them from here, so moving the
definitions here (re-exports left behind) touches nothing outside `journal/`; it waits for
the branches editing those modules (flow control's claim terms, the feed) to land.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from sylphrun.journal.fence import LeaseLost
from sylphrun.journal.flow import Debouncing, Hold
from sylphrun.journal.lifecycle import UNKNOWN_TASK_GRACE, Claim, TaskTerms
from sylphrun.journal.logs import NOTABLE_LEVELS, LogRecord
from sylphrun.journal.queries import STATE_CHANGE_KINDS, JournaledStep, RunSummary, StepChange
from sylphrun.journal.transitions import MAX_CRASHES, RunSpec


class Event(NamedTuple):
    """One entry of the change feed. Ids only grow: a reader keeps the last id it saw as
    its cursor and asks for what came after it."""

    id: int
    at: float
    run_id: str
    kind: str  # "run.<status>", "step.<status>", "log"
    step_key: str | None


class StateChange(NamedTuple):
    """A run's status change (`run.*`) or a step of it going 'waiting', from the feed."""

    event_id: int
    at: float
    kind: str
    step_key: str | None


class OverdueRun(NamedTuple):
    """A running run past its task's timeout, and the worker holding it."""

    run_id: str
    task_id: str
    worker_id: str


class LeaseHolder(NamedTuple):
    """The worker holding a running run's lease, and the epoch it holds it under."""

    worker_id: str
    pid: int
    epoch: int


class Created(NamedTuple):
    """A run asked for: its id, and whether this call created it (False: an idempotency
    key handed back the run created earlier)."""

    run_id: str
    created: bool


# -- user events (issue 14: send_event, wait_for_event, on_event, cancel_on) ------------


class SentEvent(NamedTuple):
    """An event as `send_event` left it: `created` False when its id had been sent before
    (nothing new happened). `matched_runs`: runs with a waiting `wait_for_event` it
    matched (woken); `triggered_runs`: runs of `on_event` tasks; `cancelled_runs`: runs a
    `cancel_on` stopped, children included."""

    event_id: str
    seq: int
    name: str
    data: str  # JSON text
    sent_at: float
    created: bool
    matched_runs: list[str]
    triggered_runs: list[str]
    cancelled_runs: list[str]


class TakenEvent(NamedTuple):
    """What a `wait_for_event` step found: `outcome` is "received" (it consumed the event
    `event_id`, whose data is `data`), "timed_out", or "waiting" (registered, not yet).
    `output` is the step's journaled output (JSON text)."""

    outcome: str
    event_id: str | None
    data: str | None
    output: str


class EventWait(NamedTuple):
    """An open `wait_for_event` step: what the run waits for, and until when."""

    run_id: str
    step_key: str
    event: str
    match: dict | None
    timeout_at: float | None
    since: float


class EventRecord(NamedTuple):
    """A sent event with what it did so far: runs whose wait consumed it or that it woke
    (`matched_runs`), triggered and cancelled."""

    event_id: str
    seq: int
    name: str
    data: str  # JSON text
    sent_at: float
    sent_by: str | None
    matched_runs: list[str]
    triggered_runs: list[str]
    cancelled_runs: list[str]


# -- schedules ------------------------------------------------------------------------


class ScheduleState(NamedTuple):
    """A scheduled task's state in the journal: every slot at or before `settled_through`
    was fired or skipped; the latest fired slot, its run and that run's status (None: none
    fired yet, or the run is gone); whether it is paused."""

    task_id: str
    settled_through: float
    last_slot: float | None
    last_run_id: str | None
    last_run_status: str | None
    paused: bool
    updated_at: float


class ScheduleTick(NamedTuple):
    """One slot of a schedule to fire: its time (seconds since the epoch) and the run to
    create for it (keyed `schedule:<task>:<slot>`)."""

    slot: float
    run: RunSpec


# -- change feed (seams-feed) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedCursor:
    """A place in the change feed. Opaque: a journal makes it, a reader keeps it and hands
    it back to the same journal, never looks inside or compares two. (SQLite: the last
    event id read; a PostgreSQL journal keeps what it needs, see `JournalReader.changes_since`.)"""

    token: tuple[int, ...]


class Change(NamedTuple):
    """One entry of the change feed: a run's status changed, a step change was announced,
    or a log line was written. `cursor` is the feed just after it: `step_changes(until=
    change.cursor)` gives the step changes its run made before it. `id` names the entry
    (unique, but not a cursor: in PostgreSQL ids need not follow commit order)."""

    id: int
    at: float
    run_id: str
    kind: str  # "run.<status>", "step.<status>", "log"
    step_key: str | None
    cursor: FeedCursor


class ChangePage(NamedTuple):
    """What `changes_since` read: the changes, oldest first; where to read from next;
    and whether it stopped at its limit with more to read (no commit will say so)."""

    changes: list[Change]
    cursor: FeedCursor
    more: bool


# -- workers and their hosts (issue 17: workers on several machines) ---------------------


class WorkerLoad(NamedTuple):
    """A live worker, where it runs, and the running runs whose lease it holds now."""

    worker_id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    runs: tuple[str, ...]


__all__ = [
    "MAX_CRASHES",
    "NOTABLE_LEVELS",
    "STATE_CHANGE_KINDS",
    "UNKNOWN_TASK_GRACE",
    "Change",
    "ChangePage",
    "Claim",
    "Created",
    "Debouncing",
    "Event",
    "EventRecord",
    "EventWait",
    "Hold",
    "FeedCursor",
    "JournaledStep",
    "LeaseHolder",
    "LeaseLost",
    "LogRecord",
    "OverdueRun",
    "RunSpec",
    "RunSummary",
    "SentEvent",
    "ScheduleState",
    "ScheduleTick",
    "StateChange",
    "StepChange",
    "TakenEvent",
    "TaskTerms",
    "WorkerLoad",
]
