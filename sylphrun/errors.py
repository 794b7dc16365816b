"""Every exception a user can see.

Each carries a one-line message that says what to do; `cli.py` alone turns them into exit
codes. Control-flow signals that must cross user code (suspension, cancellation, fencing)
live in `runtime/signals.py`, not here: they are not errors.
"""

from __future__ import annotations


class SylphrunError(Exception):
    """Base of errors caused by input or configuration: the CLI shows the message, exit 2."""


class ConfigError(SylphrunError):
    pass


class DiscoveryError(SylphrunError):
    """A task module failed to import, or two tasks share an id."""


class UnknownTask(SylphrunError):
    pass


class UnknownRun(SylphrunError):
    pass


class InvalidPayload(SylphrunError):
    pass


class IdempotencyConflict(SylphrunError):
    """An idempotency key reused with a different payload. The key names one run; handing
    that run back for other data would silently drop the new request."""

    def __init__(self, key: str, run_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} belongs to run {run_id}, triggered with a different payload"
        )
        self.key = key
        self.run_id = run_id


class InvalidState(SylphrunError):
    """An action that the run's current state does not allow (retry a completed run...)."""


class ReplayFromCompensation(InvalidState):
    """`replay --from-step` naming a compensation step: it undid other steps' effects, so
    there is no state of the run "before" it that a replay could build on."""


class ScheduleError(SylphrunError, ValueError):
    """A task's `schedule=`, `tz=` or `catchup=` that cannot be used (a bad cron expression,
    an unknown time zone), raised at decoration; `sylphrun schedules pause` of a task that
    has no schedule."""


class JournalError(SylphrunError):
    """The journal file is corrupt, locked by another program, or from a newer sylphrun."""


class JournalBusy(JournalError):
    """The journal's server refused a connection for lack of room (PostgreSQL: too many
    clients, its `max_connections` reached). A worker waits and tries again; a command
    says what to do and exits 2."""


class JournalUnreachable(JournalError):
    """The journal's server could not be reached (down, restarting, the network): nothing
    about the run caused it, so the runs a worker held go back to the queue with no crash
    counted, as a lease running out counts none. A run that meets three restarts must not
    fail as if its code had crashed the worker three times."""


class NotAJournal(JournalError):
    """The journal path names an SQLite database that sylphrun did not write: refused, and
    the file is left exactly as it was."""


class NotJSONSerializable(TypeError):
    """A step result or output that JSON cannot carry; names the offending type and path."""


class ValueTooLarge(NotJSONSerializable):
    """A step result or task output larger as JSON than `max_step_output`: the step fails
    at once, naming itself, the size and the limit, and is not retried (the same value
    would be refused again)."""


class NonRetriableError(Exception):
    """Raise to fail the run at once, without the retries its policy would allow.

    Raised inside a step it fails the step and then the run; compensations still run.
    """


class StepFailed(Exception):
    """A step failed for good (its own retries, if any, are used up).

    `step.run` raises this, not the step function's original exception, so that the first
    execution and a replay from the journal behave the same: the journal keeps the error's
    type name and message, not a live object. The original is `__cause__` on first execution.
    """

    def __init__(self, step: str, error_type: str, message: str, non_retriable: bool = False):
        super().__init__(f"step {step!r} failed: {error_type}: {message}")
        self.step = step
        self.error_type = error_type
        self.message = message
        self.non_retriable = non_retriable


class ChildRunFailed(Exception):
    """`RunResult.unwrap()` on a child run that failed or was cancelled."""

    def __init__(self, run_id: str, status: str, error: str | None):
        super().__init__(f"child run {run_id} {status}: {error}")
        self.run_id = run_id
        self.status = status
        self.error = error


class TaskTimeout(Exception):
    """One execution of the run exceeded its task's `timeout`.

    `timeout` bounds execution time, as Trigger.dev's `maxDuration` does: the clock runs
    while the task function executes and starts again at every resume (after a durable
    sleep, a wait on children, a retry, a reload), so time spent suspended never counts.
    """


def timeout_error(task_id: str, seconds: float | None = None) -> str:
    """The journaled error of a run that overran its timeout (`"TaskTimeout: ..."`)."""
    limit = f" of {seconds:g} s" if seconds else ""
    return (
        f"TaskTimeout: task {task_id!r} exceeded its timeout{limit} of execution time "
        "(the clock restarts at every resume; time suspended does not count)"
    )


class CorruptRecord(NonRetriableError):
    """A journal row the runtime must read is not what sylphrun wrote (invalid JSON: a
    damaged file, a hand edit): the run fails at once; retrying would read it again."""


class WorkerCrashed(NonRetriableError):
    """The run's worker process died `MAX_CRASHES` times while running it (a segfault, an
    OOM kill, `os._exit`): the run fails at the step it was in, and is not retried."""


def split_error_text(text: str) -> tuple[str, str]:
    """A journaled error (a step's, a run's doom) is `"Type: message"`: its two parts."""
    error_type, _, message = text.partition(": ")
    return error_type, message


def doom_is_fatal(doom: str) -> bool:
    """A run doomed by worker crashes is not retried; one doomed by its timeout may be."""
    return split_error_text(doom)[0] == "WorkerCrashed"


def doom_error(doom: str) -> Exception:
    """The exception a doomed run fails with, from the journaled `"Type: message"` text."""
    kind, message = split_error_text(doom)
    return WorkerCrashed(message) if kind == "WorkerCrashed" else TaskTimeout(message)


class InvalidEvent(SylphrunError):
    """A bad `send_event` / `wait_for_event` / `cancel_on` argument: an event name that is
    not a non-empty string, data that is not a JSON object, a `match` that is not a dict
    of JSON scalars."""


class EventIdConflict(SylphrunError):
    """An event id sent again with another name or other data: the id names one event, and
    handing that one back for other data would silently drop the new one."""

    def __init__(self, event_id: str) -> None:
        super().__init__(
            f"event id {event_id!r} was sent before with different data; "
            "use a new id for a new event"
        )
        self.event_id = event_id
