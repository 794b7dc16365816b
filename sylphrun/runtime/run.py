"""Executing one claim of a run: the task function, then the journal's verdict.

Outcomes: completed; suspended (children, sleep, a step's retry delay); released (the
worker is stopping); a failed attempt with a retry scheduled in the queue; or a final
failure, after which registered compensations run in reverse order.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from sylphrun import codec, model
from sylphrun.errors import (
    CorruptRecord,
    NonRetriableError,
    NotJSONSerializable,
    StepFailed,
    doom_error,
    timeout_error,
)
from sylphrun.journal.types import LeaseLost
from sylphrun.runtime.context import Context
from sylphrun.runtime.divergence import note_finished
from sylphrun.runtime.drain import drain, until_no_step_runs
from sylphrun.runtime.execution import Execution
from sylphrun.runtime.failures import error_text, user_traceback
from sylphrun.runtime.scope import Scope, current_scope
from sylphrun.runtime.signals import JournalFailed, Release, StepDiverged, Suspend
from sylphrun.runtime.steps import COMPENSATION_RETRY, run_step

log = logging.getLogger("sylphrun.worker")


async def execute(ex: Execution) -> str:
    """Run the task function for this claim and journal the outcome; returns it as a word
    ("completed", "failed", "retry", "suspended", "released", "lost") for the worker's log."""
    # One function, two `try`s, not two functions: the task function runs below this
    # frame, and a frame more leaves a step's deeply nested result fewer levels before
    # the encoder's recursion limit (tests/torture/test_limits.py reaches it).
    ctx = Context(ex)
    token = current_scope.set(Scope(ex, None))
    timer = _arm_timeout(ex)
    try:
        try:
            _refuse_stuck_body(ex)  # returns before the task function runs: no frame more
            output = await _call_task_and_drain(ex, ctx)
            if ex.suspending:
                raise Suspend()
            output_json = codec.dumps(
                output, what=f"the output of task {ex.task.id!r}", limit=ex.max_output
            )
        except NotJSONSerializable as exc:
            return await _fail_attempt(ex, exc, fatal=True)
        except StepDiverged as exc:
            return _stop_diverged(ex, exc)
        except Suspend:
            return _suspend(ex)
        except Release:
            return await _release(ex)
        except LeaseLost:
            return "lost"
        except asyncio.CancelledError:
            if ex.doom is None:
                raise
            exc = doom_error(ex.doom)
            return await _fail_attempt(ex, exc, fatal=_is_fatal(exc))
        except Exception as exc:
            if ex.suspending:  # user code swallowed the suspension and failed otherwise
                return _suspend(ex)
            return await _fail_attempt(ex, exc, fatal=_is_fatal(exc))
        return _complete(ex, output_json)
    except LeaseLost:
        return "lost"
    except Suspend:
        return _suspend(ex)
    except Release:
        return await _release(ex)
    except JournalFailed as exc:
        return _hand_back_after_journal_error(ex, exc)
    finally:
        if timer is not None:
            timer.cancel()
        ex.notices.end()
        current_scope.reset(token)


def _refuse_stuck_body(ex: Execution) -> None:
    """A doomed run with no interrupted step: its worker was replaced (or died) while the
    task function itself, not a step, was stuck; replaying it would only get stuck there
    again, so it fails now."""
    if ex.doom is not None and not any(
        s.status == model.STEP_INTERRUPTED for s in ex.journal.values()
    ):
        raise doom_error(ex.doom)


def _complete(ex: Execution, output_json: str) -> str:
    note_finished(ex)
    ex.store.finish_run(
        ex.run_id,
        ex.epoch,
        status=model.COMPLETED,
        output=output_json,
        error=None,
        traceback=None,
        now=ex.now(),
    )
    return "completed"


def _hand_back_after_journal_error(ex: Execution, exc: JournalFailed) -> str:
    """Back to the queue as after a crash (a step whose result could not be journaled runs
    again, with the same idempotency key); failed after MAX_CRASHES. A server out of reach
    is not the run's doing: released, no crash counted. If this write fails too, the worker
    owes the hand-back until the journal answers (or the lease runs out)."""
    log.warning("run %s: the journal failed under it (%s); handing it back", ex.run_id, exc)
    if exc.unreachable:
        ex.store.release_run(ex.run_id, ex.epoch, ex.now())
    else:
        error = f"JournalError: {exc}"
        ex.store.requeue_after_error(ex.run_id, ex.epoch, error=error, now=ex.now())
    return "journal-error"


async def _call_task_and_drain(ex: Execution, ctx: Context) -> Any:
    """The task function, then the drain (`runtime.drain`) however it ended, except when
    the run is no longer ours to settle or the journal failed under it."""
    try:
        output = await _call_task(ex, ctx)
    except (LeaseLost, JournalFailed):
        raise
    except asyncio.CancelledError:
        if ex.doom is not None:  # the timeout cancelled the body: its steps fail with it
            await drain(ex)
        raise
    except BaseException:
        await drain(ex)
        raise
    await drain(ex)
    return output


async def _call_task(ex: Execution, ctx: Context) -> Any:
    fn = ex.task.fn
    try:
        payload = json.loads(ex.claim.payload)
    except ValueError as exc:
        raise CorruptRecord(
            f"the run's payload in the journal is not valid JSON ({exc}); the "
            "row was damaged or edited by hand"
        ) from None
    ctx.payload = payload
    if ex.task.is_async:
        return await fn(payload, ctx)
    # A plain `def` task runs in a thread; its ctx.step calls hop to this loop and block.
    ctx.step = ctx.sync_step
    cv = contextvars.copy_context()
    return await ex.loop.run_in_executor(ex.body_threads, cv.run, fn, payload, ctx)


async def _release(ex: Execution) -> str:
    """Hand the run back (the worker is stopping), once its steps in flight have finished
    and journaled (each then meets `Release` at its next step); the worker's shutdown
    grace bounds the wait."""
    await until_no_step_runs(ex)
    ex.store.release_run(ex.run_id, ex.epoch, ex.now())
    return "released"


def _is_fatal(exc: BaseException) -> bool:
    if isinstance(exc, StepFailed):
        return exc.non_retriable
    return isinstance(exc, (NonRetriableError, NotJSONSerializable))


def _stop_diverged(ex: Execution, exc: StepDiverged) -> str:
    """Failed at the step, no retry, no compensations: see `runtime.divergence`."""
    log.warning("run %s: %s", ex.run_id, exc.message)
    ex.store.record_divergence(
        ex.run_id, ex.epoch, key=exc.key, error=f"StepDiverged: {exc.message}", now=ex.now()
    )
    return "diverged"


def _suspend(ex: Execution) -> str:
    wake_at = min(ex.wake_times) if ex.wake_times else None
    ex.store.suspend_run(
        ex.run_id, ex.epoch, children=sorted(ex.pending_children), wake_at=wake_at, now=ex.now()
    )
    if ex.pending_children and not wake_at:
        ex.on_ready_work()  # if every child had already finished, the run is ready again
    return "suspended"


async def _fail_attempt(ex: Execution, exc: BaseException, *, fatal: bool) -> str:
    error = error_text(exc)
    tb = user_traceback(exc.__cause__ if isinstance(exc, StepFailed) and exc.__cause__ else exc)
    policy = ex.task.retry
    if not fatal and ex.attempt < policy.max_attempts and _compensated_this_attempt(ex):
        # The task's own except block undid its work (the seed's saga) and re-raised: a
        # retry would skip the undone steps as done and ship against a refunded payment.
        ex.warn("not retried: compensation steps already ran in this attempt")
        fatal = True
    if not fatal and ex.attempt < policy.max_attempts:
        now = ex.now()
        ex.store.schedule_retry(
            ex.run_id,
            ex.epoch,
            error=error,
            traceback=tb,
            retry_at=now + policy.delay(ex.attempt),
            now=now,
        )
        return "retry"
    # Final failure: no retry is coming, so it is now safe to undo (a compensation that ran
    # while a retry was still due could refund a payment the retry then ships against).
    failures = await _run_compensations(ex)
    if failures:
        error += f" (and {len(failures)} compensation(s) failed: {'; '.join(failures)})"
    ex.store.finish_run(
        ex.run_id,
        ex.epoch,
        status=model.FAILED,
        output=None,
        error=error,
        traceback=tb,
        now=ex.now(),
    )
    return "failed"


def _compensated_this_attempt(ex: Execution) -> bool:
    return any(
        s.kind == model.COMPENSATION
        and s.status == model.STEP_COMPLETED
        and s.run_attempt == ex.attempt
        for s in ex.journal.values()
    )


async def _run_compensations(ex: Execution) -> list[str]:
    """Undo every completed step that registered `compensate=`, newest first.

    Most undos were registered again by this execution's replay. One registered in an
    earlier attempt that this attempt never reached (it failed before replaying the step)
    is found by the name the journal kept; without it, a charge made in attempt 1 would
    silently never be refunded.
    """
    todo: list[tuple[int, str, str, Callable[..., Any], Any]] = []
    registered = set()
    for key, name, undo, value in ex.compensations:
        registered.add(key)
        todo.append((ex.journal[key].seq if key in ex.journal else 0, key, name, undo, value))
    for key, rec in ex.journal.items():
        if rec.compensate and rec.status == model.STEP_COMPLETED and key not in registered:
            value = json.loads(rec.output) if rec.output is not None else None
            name = key.split("#")[0]
            todo.append((rec.seq, key, name, _undo_by_name(key, rec.compensate), value))
    failures: list[str] = []
    for _, key, name, undo, value in sorted(todo, key=lambda t: t[0], reverse=True):
        comp_key = f"compensate:{key}"
        try:
            await run_step(
                ex,
                comp_key,
                f"compensate:{name}",
                model.COMPENSATION,
                undo,
                (value,),
                {},
                COMPENSATION_RETRY,
                None,
            )
        except StepFailed as exc:
            failures.append(f"{comp_key}: {exc.error_type}: {exc.message}")
    return failures


def _undo_by_name(key: str, ref: str) -> Callable[..., Any]:
    """The undo function named `module:qualname`, looked up among imported modules (a name,
    never code from the journal), or a stand-in that fails saying why it cannot run."""
    module_name, _, qualname = ref.partition(":")
    try:
        if "<" in qualname:
            raise LookupError
        # sys.modules, not import_module: importing a module the journal names would run
        # that module's code on the say-so of a file (a crafted journal naming `antigravity`
        # opens a browser). The task modules, and what they import, are loaded already.
        obj: Any = sys.modules[module_name]
        for part in qualname.split("."):
            obj = getattr(obj, part)
        if callable(obj):
            return obj
    except Exception:
        pass

    def cannot_compensate(_value: Any) -> None:
        raise NonRetriableError(
            f"the undo of step {key!r} ({ref}) was registered by an earlier attempt and "
            "cannot be found by name; define compensate functions at module level"
        )

    return cannot_compensate


def _arm_timeout(ex: Execution) -> asyncio.TimerHandle | None:
    """At the task's timeout, fail the run at its current step.

    An async step is cancelled and fails with the timeout. A plain function in a thread
    cannot be interrupted from Python: the supervisor replaces the whole worker process
    shortly after the deadline, and the next execution fails the run at that step.
    """
    timeout = ex.task.timeout
    if not timeout:
        return None
    body = asyncio.current_task()

    def expire() -> None:
        ex.doom = timeout_error(ex.task.id, timeout)
        tasks = [t for t in ex.running.values() if t is not None and not t.done()]
        if ex.thread_steps or not (tasks or ex.task.is_async):
            # A plain `def` body between steps is in a thread too. Cancelling the future
            # that waits on it would fail the run but leave the thread running the user's
            # code inside this worker for good: let the supervisor replace the worker.
            return
        for t in tasks or [body]:
            t.cancel()

    return ex.loop.call_later(timeout, expire)
