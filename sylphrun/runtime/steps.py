"""Steps: replay-or-record, as DBOS's step wrapper is shaped.

Each `step.run` either returns the journaled result of a completed step at once
(`_replayed`), or checks the step may start (`_may_start`), calls the step function
(`_attempt`) and journals its result (`runtime.step_outcomes`) before returning. A run
that needs to wait suspends through `runtime.barrier`; a step run while a step failure is
handled is an undo (`runtime.compensation_kind`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
import types
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from sylphrun import codec, model
from sylphrun.define import Retry
from sylphrun.errors import JournalError, StepFailed, split_error_text
from sylphrun.journal.types import JournaledStep, LeaseLost
from sylphrun.runtime.compensation_kind import compensating, is_step_failure
from sylphrun.runtime.divergence import call_of, check_replay, note_step_call
from sylphrun.runtime.execution import Execution
from sylphrun.runtime.notices import NOTICE_EVERY  # noqa: F401 - read by tests/test_eventlog
from sylphrun.runtime.scope import Scope, current_scope, current_step_key
from sylphrun.runtime.signals import JournalFailed, Release, Settled, Suspend
from sylphrun.runtime.sleeps import durable_sleep
from sylphrun.runtime.step_outcomes import (  # COMPENSATION_RETRY: re-exported for run.py
    COMPENSATION_RETRY,  # noqa: F401
    SELF_JSON,
    fail_doomed_step,
    fails_when_doomed,
    journaled_value,
    on_cancelled,
    record_failure,
    record_result,
    record_start,
)


class Steps:
    """`ctx.step`: durable steps for an async task function."""

    def __init__(self, execution: Execution) -> None:
        self._ex = execution

    def run(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retry: Retry | None = None,
        compensate: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> Awaitable[Any]:
        """Run `fn(*args, **kwargs)` as the durable step `name`, or return its journaled result.

        The key is taken here, synchronously, so `asyncio.gather(step.run("a", f),
        step.run("a", g))` gives `a` and `a#2` in argument order on every replay.
        """
        if not isinstance(name, str) or not name:
            raise TypeError("step name must be a non-empty string")
        if not name.isascii() and codec.clean_text(name) != name:
            raise ValueError(f"step name {name!r} is not valid Unicode (a lone surrogate)")
        if not callable(fn):
            raise TypeError(f"step {name!r}: fn must be callable")
        ex = self._ex
        key, kind = _take_key(ex, name, fn, args, kwargs, sys._getframe(1))
        return run_step(ex, key, name, kind, fn, args, kwargs, retry, compensate)

    async def sleep(self, name: str, seconds: float) -> None:
        """A durable sleep: the run suspends and no worker is held while it sleeps."""
        ex = self._ex
        key = ex.next_key(name)
        await durable_sleep(ex, key, name, float(seconds))

    async def wait_for_event(
        self, name: str, event: str, *, match: dict | None = None, timeout: float | None = None
    ) -> dict | None:
        """Suspend until an event named `event` whose data holds every key/value of
        `match` arrives (sent after the run was triggered: before this wait began counts
        too), and return its data; None once `timeout` seconds passed first. Journaled: a
        retry or replay returns the same data. See `runtime.event_waits`."""
        from sylphrun.runtime.event_waits import wait_for_event

        return await wait_for_event(self._ex, name, event, match, timeout)

    async def sleep_until(self, name: str, when: Any) -> None:
        """A durable sleep until `when`: a timezone-aware datetime or a Unix timestamp."""
        from sylphrun.runtime.event_waits import sleep_until_seconds

        seconds = sleep_until_seconds(self._ex, name, when)
        await durable_sleep(self._ex, self._ex.next_key(name), name, seconds)

    @property
    def idempotency_key(self) -> str:
        """A stable string for the current step, the same on every attempt and replay:
        pass it to external APIs so they can deduplicate a retried call."""
        scope = current_scope.get()
        if scope is None or scope.step_key is None:
            raise RuntimeError("ctx.step.idempotency_key is only available inside a step function")
        return f"{scope.execution.run_id}:{scope.step_key}"


class SyncSteps:
    """`ctx.step` for a plain `def` task function, which runs in a thread: each call runs
    the step on the worker's event loop and returns its value."""

    def __init__(self, steps: Steps) -> None:
        self._steps = steps

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        ex = self._steps._ex
        retry = kwargs.pop("retry", None)
        compensate = kwargs.pop("compensate", None)
        # The key and kind are taken here, in the user's thread, where "inside an except
        # block" is true.
        key, kind = _take_key(ex, name, fn, args, kwargs, sys._getframe(1))
        coro = run_step(ex, key, name, kind, fn, args, kwargs, retry, compensate)
        return asyncio.run_coroutine_threadsafe(coro, ex.loop).result()

    def sleep(self, name: str, seconds: float) -> None:
        ex = self._steps._ex
        key = ex.next_key(name)
        coro = durable_sleep(ex, key, name, float(seconds))
        return asyncio.run_coroutine_threadsafe(coro, ex.loop).result()

    def wait_for_event(
        self, name: str, event: str, *, match: dict | None = None, timeout: float | None = None
    ) -> dict | None:
        coro = self._steps.wait_for_event(name, event, match=match, timeout=timeout)
        return asyncio.run_coroutine_threadsafe(coro, self._steps._ex.loop).result()

    def sleep_until(self, name: str, when: Any) -> None:
        coro = self._steps.sleep_until(name, when)
        return asyncio.run_coroutine_threadsafe(coro, self._steps._ex.loop).result()

    @property
    def idempotency_key(self) -> str:
        return self._steps.idempotency_key


def _take_key(
    ex: Execution, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict, caller: FrameType
) -> tuple[str, str]:
    """The step's key and kind, at call time; a replayed call is checked against the
    call it was journaled for (`runtime.divergence`)."""
    key = ex.next_key(name)
    # `compensation_kind.handling_failure()`, inlined: the step path pays for each call.
    handling = sys.exc_info()[1]
    if compensating.get() or (handling is not None and is_step_failure(handling)):
        kind = model.COMPENSATION
    else:
        kind = model.STEP
    rec = ex.journal.get(key)
    if rec is not None and rec.fn is not None and rec.status == model.STEP_COMPLETED:
        check_replay(ex, key, rec, fn, args, kwargs, caller)
    if ex.code_changed:
        note_step_call(ex, key, f"{caller.f_code.co_filename}:{caller.f_lineno}")
    return key, kind


async def run_step(
    ex: Execution,
    key: str,
    name: str,
    kind: str,
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    retry: Retry | None,
    compensate: Callable[[Any], Any] | None,
) -> Any:
    """Replay-or-record for one step. The step function's own errors (even a JournalError
    of its own) become StepFailed inside; a journal error out here is the journal's.
    (`journal_guard` inlined: one generator less on the path every step takes.)"""
    try:
        rec = ex.journal.get(key)
        if rec is not None and rec.status == model.STEP_COMPLETED:
            return _replayed(ex, key, name, rec, compensate)
        if rec is not None or ex.releasing or ex.barrier.suspending or ex.draining:
            await _may_start(ex, key, kind, rec)  # a new step of a running run: nothing to do
        if ex.doom is not None and fails_when_doomed(ex, key, kind, rec):
            # Doomed: fail at the first unfinished step. Compensations still run, except
            # the one that got the run doomed (see `fails_when_doomed`).
            fail_doomed_step(ex, key, name, kind)
        return await _attempt(ex, key, name, kind, fn, args, kwargs, retry, compensate, rec)
    except JournalError as exc:
        raise JournalFailed.of(exc) from None


def _replayed(
    ex: Execution, key: str, name: str, rec: JournaledStep, compensate: Callable[[Any], Any] | None
) -> Any:
    value = journaled_value(key, rec.output)
    if compensate is not None and not rec.copied:
        # A step `replay --from-step` copied is the original run's effect: a failed
        # replay must not undo what that run (perhaps completed) relies on.
        ex.compensations.append((key, name, compensate, value))
    return value


async def _may_start(ex: Execution, key: str, kind: str, rec: JournaledStep | None) -> None:
    """Raise unless the step may run now; wait out a retry delay journaled earlier."""
    if rec is not None and rec.status == model.STEP_FAILED and rec.run_attempt == ex.attempt:
        # Failed for good earlier in this same attempt (we are resuming after a crash or a
        # suspension): fail the same way again instead of repeating its side effects.
        error_type, message = split_error_text(rec.error or "Error")
        raise StepFailed(key, error_type, message, non_retriable=rec.fatal)
    if ex.releasing:
        raise Release()
    if ex.suspending:
        # The run is parking: a step started now would run its side effect and have its
        # result discarded, then run again on resume.
        raise Suspend()
    if ex.draining and kind == model.STEP and current_step_key() is None:
        raise Settled()
    if (
        rec is not None
        and rec.status == model.STEP_RETRYING
        and rec.retry_at
        and rec.retry_at > ex.now()
    ):
        ex.wake_times.append(rec.retry_at)
        await ex.barrier.block(current_step_key())


async def _attempt(
    ex: Execution,
    key: str,
    name: str,
    kind: str,
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    retry: Retry | None,
    compensate: Callable[[Any], Any] | None,
    rec: JournaledStep | None,
) -> Any:
    """Journal the start, call the step function, journal its outcome."""
    # The step's attempt number across all run attempts, as `record_step_start` counts it:
    # a step parked with its suspended run ('waiting': a fan-in waiting on children)
    # resumes the same attempt.
    attempt_no = 1 if rec is None else rec.attempts + (rec.status != model.STEP_WAITING)
    seq = rec.seq if rec is not None else ex.seq_for(key)
    call = call_of(fn, args, kwargs, ex.run_id)
    fn = record_start(ex, key, name, kind, fn, seq, call)
    # `current_step_key()` and `Barrier.step_started`, inlined (the hot path).
    outer = current_scope.get()
    barrier = ex.barrier
    barrier.parent_of[key] = outer.step_key if outer is not None else None
    barrier.running[key] = asyncio.current_task()
    token: contextvars.Token | None = current_scope.set(Scope(ex, key))
    try:
        # An async fn is awaited right here: one coroutine frame less per step.
        result = await (
            fn(*args, **kwargs) if _is_async(fn) else _call_in_thread(ex, fn, args, kwargs)
        )
        while type(result) not in SELF_JSON and inspect.isawaitable(result):
            result = await result
        if barrier.suspending:
            raise Suspend()
        output = codec.dumps(result, what=f"step {key!r} result", limit=ex.max_output)
    except asyncio.CancelledError:
        on_cancelled(ex, key, name, kind)
        raise
    except (Suspend, Release, LeaseLost):
        raise
    except Exception as exc:
        if ex.suspending:
            raise Suspend() from None  # the step swallowed a suspension (gather return_exceptions)
        record_failure(ex, key, kind, exc, retry)  # raises StepFailed unless a retry is due
        current_scope.reset(token)
        token = None
        ex.step_finished(key)
        await barrier.block(outer.step_key if outer is not None else None)
    finally:
        if token is not None:
            current_scope.reset(token)
        ex.step_finished(key)
    return record_result(ex, key, name, kind, result, output, compensate, attempt_no, seq, call)


async def _call_in_thread(ex: Execution, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Run a plain function in a thread, so parallel steps are parallel. Whatever awaitable
    it returns (`lambda: fetch(x)`) is awaited by the caller."""
    ctx = contextvars.copy_context()
    ex.thread_steps += 1
    try:
        return await ex.loop.run_in_executor(
            ex.threads, functools.partial(ctx.run, fn, *args, **kwargs)
        )
    finally:
        ex.thread_steps -= 1


def _is_async(fn: Callable[..., Any]) -> bool:
    # A plain function's code flags answer it at once; anything else (a partial, a bound
    # method, a callable object) goes through inspect.
    if type(fn) is types.FunctionType:
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)
