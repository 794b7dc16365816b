"""Journaling a step's outcome: its start, its result, its failure (with a retry time when
its policy allows one), a cancellation, and the failure of a doomed run's first unfinished
step. `runtime.steps` decides which applies; this module writes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sylphrun import model
from sylphrun.define import Retry
from sylphrun.errors import (
    CorruptRecord,
    NonRetriableError,
    NotJSONSerializable,
    StepFailed,
    doom_is_fatal,
    split_error_text,
)
from sylphrun.journal.types import MAX_CRASHES, JournaledStep
from sylphrun.runtime.crash_points import CRASH_AT, crash_point
from sylphrun.runtime.execution import Execution
from sylphrun.runtime.failures import error_text, user_traceback

# Compensations get a few quick retries of their own: an undo that fails once (a flaky
# refund API) should not leave the saga half-compensated.
COMPENSATION_RETRY = Retry(max_attempts=3, min_delay=0.5, max_delay=5.0)

# Values whose JSON round trip is the value itself (equal, same type): a step returning
# one skips `json.loads` of what it just serialized. A float too: json writes repr(),
# which reads back exactly, and NaN/inf were refused by `codec.dumps` already.
SELF_JSON = frozenset({type(None), bool, int, float, str})


def record_start(
    ex: Execution,
    key: str,
    name: str,
    kind: str,
    fn: Callable[..., Any],
    seq: int,
    call: tuple[str, str | None],
) -> Callable[..., Any]:
    """Journal the step's start; returns the function to call (the harness's probe may put
    a mock in its place: after `call_of`, so a mock is checked as the user's function)."""
    if CRASH_AT:
        crash_point("before-start", key)
    if ex.probe is not None:  # the test harness only (sylphrun.testing)
        fn = ex.probe.starting(key, name, fn)
    ex.store.record_step_start(
        ex.run_id,
        ex.epoch,
        key=key,
        name=name,
        kind=kind,
        seq=seq,
        run_attempt=ex.attempt,
        now=ex.now(),
        notify=ex.notices.due(key, model.STEP_RUNNING),
        fn=call[0],
        args_hash=call[1],
    )
    return fn


def on_cancelled(ex: Execution, key: str, name: str, kind: str) -> None:
    if ex.doom is not None and not ex.suspending:
        # The run hit its timeout while this async step ran: the step fails with it.
        fail_doomed_step(ex, key, name, kind, started=True)
    if not ex.suspending and not ex.lost:
        # Cancelled by the user's own code (asyncio.wait_for, a TaskGroup): the attempt
        # ended without a result; a replay that calls the step again runs it again.
        ex.store.record_step_interrupted(
            ex.run_id, ex.epoch, key=key, reason="cancelled before it returned", now=ex.now()
        )


def record_failure(ex: Execution, key: str, kind: str, exc: Exception, retry: Retry | None) -> None:
    """Journal the step function's failure: with a retry time when its policy allows one
    more try (the time is then in `ex.wake_times`), or for good (raises `StepFailed`)."""
    fatal = isinstance(exc, (NonRetriableError, NotJSONSerializable))
    policy = retry or (COMPENSATION_RETRY if kind == model.COMPENSATION else None)
    now = ex.now()
    # The step's policy counts tries within this run attempt, this one included (not the
    # step's attempt number): a run-level retry re-executes the function, and its steps get
    # their own retries again instead of a single shot.
    tries = 0
    if policy is not None and not fatal and ex.doom is None:
        tries = 1 + ex.store.step_tries_in_attempt(ex.run_id, key, ex.attempt)
    if tries and tries < policy.max_attempts:  # type: ignore[union-attr]
        retry_at = now + policy.delay(tries)  # type: ignore[union-attr]
        ex.store.record_step_failure(
            ex.run_id,
            ex.epoch,
            key=key,
            error=error_text(exc),
            traceback=user_traceback(exc),
            retry_at=retry_at,
            now=now,
        )
        ex.wake_times.append(retry_at)
        return
    ex.store.record_step_failure(
        ex.run_id,
        ex.epoch,
        key=key,
        error=error_text(exc),
        traceback=user_traceback(exc),
        retry_at=None,
        fatal=fatal,
        now=now,
    )
    raise StepFailed(key, type(exc).__name__, str(exc), non_retriable=fatal) from exc


def record_result(
    ex: Execution,
    key: str,
    name: str,
    kind: str,
    result: Any,
    output: str,
    compensate: Callable[[Any], Any] | None,
    attempt_no: int,
    seq: int,
    call: tuple[str, str | None],
) -> Any:
    undo_ref = _qualified_name(compensate) if compensate is not None else None
    if CRASH_AT:
        crash_point("after-effect", key)
    if ex.probe is not None:
        ex.probe.at("after-effect", key)
    ex.store.record_step_result(
        ex.run_id,
        ex.epoch,
        key=key,
        output=output,
        now=ex.now(),
        compensate=undo_ref,
        notify=ex.notices.due(key, model.STEP_COMPLETED),
    )
    if CRASH_AT:
        crash_point("after-commit", key)
    if ex.probe is not None:
        ex.probe.at("after-commit", key)
    value = result if type(result) in SELF_JSON else json.loads(output)
    ex.journal[key] = JournaledStep(
        model.STEP_COMPLETED,
        kind,
        output,
        None,
        attempt_no,
        ex.attempt,
        seq,
        None,
        False,
        undo_ref,
        *call,
    )
    if compensate is not None:
        ex.compensations.append((key, name, compensate, value))
    return value


def journaled_value(key: str, output: str | None) -> Any:
    try:
        return json.loads(output) if output is not None else None
    except ValueError as exc:
        raise CorruptRecord(
            f"the journaled result of step {key!r} is not valid JSON ({exc}); "
            "the row was damaged or edited by hand"
        ) from None


def _qualified_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def fail_doomed_step(ex: Execution, key: str, name: str, kind: str, started: bool = False) -> None:
    """The run overran its timeout (or crashed its workers): this step, the first not
    completed, fails with it."""
    now = ex.now()
    if not started:
        ex.store.record_step_start(
            ex.run_id,
            ex.epoch,
            key=key,
            name=name,
            kind=kind,
            seq=ex.seq_for(key),
            run_attempt=ex.attempt,
            now=now,
        )
    ex.store.record_step_failure(
        ex.run_id, ex.epoch, key=key, error=ex.doom or "", traceback=None, retry_at=None, now=now
    )
    error_type, message = split_error_text(ex.doom or "TaskTimeout")
    raise StepFailed(key, error_type, message, non_retriable=doom_is_fatal(ex.doom or ""))


def fails_when_doomed(ex: Execution, key: str, kind: str, rec: JournaledStep | None) -> bool:
    """In a doomed execution, does this step fail without running? A forward step does (the
    first one not completed is where the run fails). An undo runs, unless it is what got
    the run doomed: cut off by the timeout's worker replacement (it is what overran), or
    by every one of the MAX_CRASHES worker deaths that used up its crash budget (a
    poisoned undo: a fourth try would fail the run at once, the older undos not run).

    An undo cut off by only some of those deaths (the torture: two kills during forward
    steps, the third during `compensate:charge`) was merely interrupted, as any step a
    worker dies under, and runs again: failing it would leave the charge never refunded."""
    if kind == model.STEP:
        return True
    if rec is None or rec.status != model.STEP_INTERRUPTED:
        return False
    if not doom_is_fatal(ex.doom or ""):
        return True
    # A cold path (once per doomed run at most): the attempt log says how often it was cut.
    step = next((s for s in ex.store.steps_of(ex.run_id) if s.key == key), None)
    cut = sum(a.status == model.STEP_INTERRUPTED for a in step.attempt_log) if step else 0
    return cut >= MAX_CRASHES
