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

from typing import NamedTuple

from sylphrun.journal.fence import LeaseLost
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


__all__ = [
    "MAX_CRASHES",
    "NOTABLE_LEVELS",
    "STATE_CHANGE_KINDS",
    "UNKNOWN_TASK_GRACE",
    "Claim",
    "Created",
    "Event",
    "JournaledStep",
    "LeaseHolder",
    "LeaseLost",
    "LogRecord",
    "OverdueRun",
    "RunSpec",
    "RunSummary",
    "StateChange",
    "StepChange",
    "TaskTerms",
]
