"""The domain's plain data: run states, step kinds, and the records read from the journal.

No I/O here; the journal builds these from rows, the CLI and dashboard render them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

QUEUED = "queued"
RUNNING = "running"
WAITING = "waiting"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"

RUN_STATES = (QUEUED, RUNNING, WAITING, COMPLETED, FAILED, CANCELLED)
TERMINAL_STATES = frozenset({COMPLETED, FAILED, CANCELLED})

# Step kinds (DESIGN section 2).
STEP = "step"
COMPENSATION = "compensation"
TRIGGER = "trigger"
WAIT = "wait"
SLEEP = "sleep"
STEP_KINDS = (STEP, COMPENSATION, TRIGGER, WAIT, SLEEP)

# Step statuses. "interrupted" is an attempt that started but has no result after a crash.
STEP_RUNNING = "running"
STEP_COMPLETED = "completed"
STEP_FAILED = "failed"
STEP_RETRYING = "retrying"
STEP_WAITING = "waiting"
STEP_INTERRUPTED = "interrupted"
# An open step (running, waiting, retrying) of a run that was cancelled.
STEP_CANCELLED = "cancelled"


@dataclass(frozen=True)
class RunResult:
    """The outcome of a finished run, as a parent sees it.

    Journaled inside a step it becomes a JSON object with these keys.
    """

    run_id: str
    status: str
    ok: bool
    output: Any = None
    error: str | None = None

    def unwrap(self) -> Any:
        """The run's output, or `ChildRunFailed` if it did not complete."""
        if not self.ok:
            from sylphrun.errors import ChildRunFailed

            raise ChildRunFailed(self.run_id, self.status, self.error)
        return self.output

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "run_id": self.run_id,
        }


@dataclass(frozen=True)
class StepAttempt:
    attempt: int
    status: str
    error: str | None
    traceback: str | None
    started_at: float | None
    finished_at: float | None
    run_attempt: int


@dataclass(frozen=True)
class Step:
    run_id: str
    key: str
    name: str
    kind: str
    status: str
    seq: int
    attempts: int
    output: Any
    error: str | None
    started_at: float | None
    finished_at: float | None
    child_run_ids: list[str] = field(default_factory=list)
    retry_at: float | None = None
    attempt_log: list[StepAttempt] = field(default_factory=list)
    # The call the result was journaled for: the step function's `module:qualname` and a
    # hash of its arguments (None on steps journaled before they were recorded).
    fn: str | None = None
    args_hash: str | None = None
    # Copied from the original run by `replay --from-step` (its effect is that run's).
    copied: bool = False


@dataclass(frozen=True)
class RunAttempt:
    attempt: int
    status: str
    error: str | None
    traceback: str | None
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class Run:
    id: str
    task_id: str
    status: str
    payload: Any
    output: Any
    error: str | None
    attempt: int
    parent_run_id: str | None
    idempotency_key: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    ready_at: float | None
    children_total: int = 0
    children_done: int = 0
    children_failed: int = 0
    replay_of: str | None = None
    children_cancelled: int = 0
    priority: int = 0  # flow control: higher is claimed first

    @property
    def children_completed(self) -> int:
        return self.children_done - self.children_failed - self.children_cancelled

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATES

    def result(self) -> RunResult:
        return RunResult(
            run_id=self.id,
            status=self.status,
            ok=self.status == COMPLETED,
            output=self.output,
            error=self.error,
        )


@dataclass(frozen=True)
class TaskRecord:
    """A task as the workers registered it in the journal: what the CLI needs to trigger
    and list it without importing the user's code. `options` holds `retry` (a `Retry` as
    JSON), `concurrency`, `timeout` and `async`."""

    id: str
    options: dict[str, Any]
    source_file: str
    source_line: int
    fingerprint: str
    registered_by: str = ""
    registered_at: float | None = None


@dataclass(frozen=True)
class LogLine:
    run_id: str
    at: float
    level: str
    message: str
    step_key: str | None


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    pid: int
    host: str
    started_at: float
    heartbeat_at: float
    wake_addr: str | None


@dataclass(frozen=True)
class ReloadStatus:
    """The last reload of the project's tasks, as `sylphrun dev`'s reloader keeps it and
    the dashboard shows it (replaced whole on each reload: a reader in another thread never
    sees half of one).

    `at` is when it finished (epoch seconds) and `duration` how long it took; `error` is
    the import error that blocks it (the old workers keep running meanwhile), with the
    user's frames of it in `traceback`; `task_ids` are the tasks the running workers know.
    """

    at: float | None = None
    duration: float | None = None
    error: str | None = None
    task_ids: tuple[str, ...] = ()
    traceback: str | None = None
