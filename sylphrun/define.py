"""Defining tasks: `task()`, `Retry`, and the task registry.

The registry is the one global mutable object sylphrun keeps: task modules register their
tasks at import time, exactly as a web framework's route decorators do.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sylphrun.errors import DiscoveryError, ScheduleError
from sylphrun.flow import (
    Concurrency,
    Debounce,
    FlowOptions,
    RateLimit,
    check_option,
    split_concurrency,
)
from sylphrun.schedules import Schedule, parse_schedule

if TYPE_CHECKING:
    from sylphrun.model import RunResult
    from sylphrun.trigger import BatchHandle, RunHandle


@dataclass(frozen=True)
class Retry:
    """A retry policy: exponential backoff between `min_delay` and `max_delay` seconds.

    `jitter` is a fraction: 0.1 spreads each delay by up to +-10% so that runs failing
    together do not retry together.
    """

    max_attempts: int = 3
    min_delay: float = 1.0
    max_delay: float = 60.0
    factor: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("Retry.max_attempts must be at least 1")
        if self.min_delay < 0 or self.max_delay < self.min_delay:
            raise ValueError("Retry needs 0 <= min_delay <= max_delay")

    def delay(self, failed_attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after attempt number `failed_attempt` (1-based) failed."""
        base = min(self.max_delay, self.min_delay * self.factor ** (failed_attempt - 1))
        if self.jitter:
            base *= 1 + self.jitter * (2 * rand() - 1)
        return max(0.0, base)

    def to_json(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "min_delay": self.min_delay,
            "max_delay": self.max_delay,
            "factor": self.factor,
            "jitter": self.jitter,
        }


# A task without `retry=` runs once: retrying is a decision about side effects that the
# task's author should make explicitly (DBOS and Temporal activities differ here; we pick
# the conservative default and make the policy one argument away).
NO_RETRY = Retry(max_attempts=1, min_delay=0.0, max_delay=0.0, jitter=0.0)


class Task:
    """A durable task. Create with `task(...)`; trigger with `.trigger()` and friends."""

    def __init__(
        self,
        id: str,
        run: Callable[..., Any],
        *,
        retry: Retry | None = None,
        concurrency: int | Concurrency | None = None,
        timeout: float | None = None,
        on_event: str | Iterable[str] | None = None,
        cancel_on: Iterable[Any] | None = None,
        schedule: str | float | None = None,
        tz: str | None = None,
        catchup: str = "latest",
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
    ) -> None:
        if not isinstance(id, str) or not id.strip():
            raise ValueError("task id must be a non-empty string")
        if not callable(run):
            raise TypeError(f"task {id!r}: run must be a function taking (payload, ctx)")
        # A task-wide limit stays `self.concurrency` (an int); a keyed one is flow control.
        concurrency, per_key = split_concurrency(id, concurrency)
        check_option(id, "rate_limit", rate_limit, RateLimit)
        check_option(id, "debounce", debounce, Debounce)
        if timeout is not None and timeout <= 0:
            raise ValueError(f"task {id!r}: timeout must be positive seconds")
        self.id = id
        self.fn = run
        self.retry = retry or NO_RETRY
        self.concurrency = concurrency
        self.flow = FlowOptions(id, per_key, rate_limit, debounce)
        self.timeout = timeout
        self.on_event, self.cancel_on = _event_options(id, on_event, cancel_on)
        self.schedule = _schedule_of(id, schedule, tz, catchup)
        self.is_async = inspect.iscoroutinefunction(run)
        self.source_file, self.source_line = _source_of(run)
        self._fingerprint: str | None = None

    def __repr__(self) -> str:
        return f"<Task {self.id!r} at {self.source_file}:{self.source_line}>"

    async def trigger(
        self,
        payload: dict | None = None,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
    ) -> RunHandle:
        """Enqueue one run. Inside a run this is a journaled step: never duplicated on retry.
        `priority`: higher is started first among runs ready at the same time."""
        from sylphrun.trigger import trigger

        return await trigger(self.id, payload, idempotency_key=idempotency_key, priority=priority)

    async def batch_trigger(self, payloads: Iterable[dict], *, priority: int = 0) -> BatchHandle:
        """Enqueue one run per payload, in one transaction."""
        from sylphrun.trigger import batch_trigger

        return await batch_trigger(self.id, list(payloads), priority=priority)

    async def trigger_and_wait(
        self,
        payload: dict | None = None,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
    ) -> RunResult:
        """Trigger one run and wait for its result. Inside a run the parent suspends meanwhile."""
        from sylphrun.trigger import trigger_and_wait

        return await trigger_and_wait(
            self.id, payload, idempotency_key=idempotency_key, priority=priority
        )

    def source_fingerprint(self) -> str:
        """A hash of the source of the module defining the task, recorded with each
        execution: when a resumed run's fingerprint changed, the runtime checks the replay
        for steps the new code no longer calls in the journal's order."""
        if self._fingerprint is None:
            self._fingerprint = file_fingerprint(self.source_file) or _fingerprint(
                repr(self.fn).encode()
            )
        return self._fingerprint


def file_fingerprint(path: str) -> str | None:
    """The fingerprint of a source file as it is on disk now (None: it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return _fingerprint(f.read())
    except OSError:
        return None


def _fingerprint(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:12]


def _schedule_of(id: str, schedule: Any, tz: Any, catchup: Any) -> Schedule | None:
    """The task's schedule, checked now: a bad expression or zone fails at decoration
    (one line, `ScheduleError`), not at the first tick."""
    if schedule is None:
        if tz is not None or catchup != "latest":
            raise ScheduleError(f"task {id!r}: tz= and catchup= need a schedule=")
        return None
    return parse_schedule(id, schedule, tz, catchup)


def _source_of(fn: Callable[..., Any]) -> tuple[str, int]:
    code = getattr(fn, "__code__", None)
    if code is None:
        return ("<unknown>", 0)
    return (code.co_filename, code.co_firstlineno)


_registry: dict[str, Task] = {}


def task(
    id: str,
    *,
    run: Callable[..., Any] | None = None,
    retry: Retry | None = None,
    concurrency: int | Concurrency | None = None,
    timeout: float | None = None,
    on_event: str | Iterable[str] | None = None,
    cancel_on: Iterable[Any] | None = None,
    schedule: str | float | None = None,
    tz: str | None = None,
    catchup: str = "latest",
    rate_limit: RateLimit | None = None,
    debounce: Debounce | None = None,
) -> Any:
    """Define a task, as a decorator or with `run=`.

    `schedule="*/5 * * * *"` (5-field cron, UTC unless `tz="Europe/Paris"`) or
    `schedule=10` (seconds) runs it by itself, once per slot, with payload
    `{"scheduled_at": "<ISO time of the slot>"}`; `catchup` says what happens to slots
    missed while no worker ran: "latest" (one run, the default), "all" or "none".

    >>> @task(id="hello")
    ... async def hello(payload, ctx):
    ...     return await ctx.step.run("greet", lambda: f"hi {payload.get('name')}")
    """

    def register(fn: Callable[..., Any]) -> Task:
        t = Task(
            id,
            fn,
            retry=retry,
            concurrency=concurrency,
            timeout=timeout,
            on_event=on_event,
            cancel_on=cancel_on,
            schedule=schedule,
            tz=tz,
            catchup=catchup,
            rate_limit=rate_limit,
            debounce=debounce,
        )
        existing = _registry.get(id)
        # The same definition imported again (a re-import in one process) replaces itself;
        # two different places claiming one id is the user's mistake to fix.
        if existing is not None and (existing.source_file, existing.source_line) != (
            t.source_file,
            t.source_line,
        ):
            raise DiscoveryError(
                f"duplicate task id {id!r}: defined at {existing.source_file}:"
                f"{existing.source_line} and at {t.source_file}:{t.source_line}; rename one"
            )
        _registry[id] = t
        return t

    if run is not None:
        return register(run)
    return register


def registered_tasks() -> dict[str, Task]:
    """A snapshot of the registry, by id."""
    return dict(_registry)


def clear_registry() -> None:
    """Forget every task (discovery does this before importing a project's modules)."""
    _registry.clear()


def _event_options(task_id: str, on_event: Any, cancel_on: Any) -> tuple[list[str], list[Any]]:
    """`on_event` (an event name or a list of them) and `cancel_on` (a list of `CancelOn`),
    checked at decoration: a bad value is one line naming the task (issue 14)."""
    if on_event is None and cancel_on is None:
        return [], []
    from sylphrun.errors import InvalidEvent
    from sylphrun.events import CancelOn, check_event_name

    names = [on_event] if isinstance(on_event, str) else on_event or []
    if not isinstance(names, (list, tuple)):
        raise DiscoveryError(
            f"task {task_id!r}: on_event takes an event name or a list of "
            f"them, not {type(on_event).__name__}"
        )
    try:
        names = [check_event_name(n) for n in names]
    except InvalidEvent as exc:
        raise DiscoveryError(f"task {task_id!r}: on_event: {exc}") from None
    rules = [cancel_on] if isinstance(cancel_on, CancelOn) else cancel_on or []
    for rule in rules if isinstance(rules, (list, tuple)) else [rules]:
        if not isinstance(rule, CancelOn):
            raise DiscoveryError(
                f"task {task_id!r}: cancel_on takes a list of "
                f"sylphrun.CancelOn(event, match=field), not {rule!r:.60}"
            )
    return list(names), list(rules)
