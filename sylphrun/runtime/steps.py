"""The step runtime: replay-or-record, and the suspension barrier.

An `Execution` is one claim of one run by one worker. The task function runs from the
top; each `step.run` either returns the journaled result of a completed step at once or
calls the step function and journals its result before returning. A run that needs to
wait (children, a sleep, a step's retry delay) suspends only once every step it has in
flight is blocked too, so parallel steps finish (and are journaled) before it parks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import json
import os
import signal
import sys
import time
import traceback
import types
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, NamedTuple

from sylphrun import codec, model
from sylphrun.define import Retry, Task
from sylphrun.errors import (
    ChildRunFailed,
    CorruptRecord,
    JournalError,
    NonRetriableError,
    NotJSONSerializable,
    StepFailed,
)
from sylphrun.journal import store
from sylphrun.journal.connection import Connection
from sylphrun.journal.queries import (
    JournaledStep,
    children_results,
    lease_states,
    replay_state,
    run_results,
    step_tries_in_attempt,
)
from sylphrun.runtime.divergence import call_of, check_replay
from sylphrun.runtime.signals import JournalFailed, Release, Settled, Suspend


class Scope(NamedTuple):
    """Where user code is running: which execution, and inside which step (None: the body).
    A named tuple: one is made per step call."""

    execution: Execution
    step_key: str | None


current_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "sylphrun_scope", default=None
)

# Fault injection for the torture suite (tests/torture/): SYLPHRUN_TEST_CRASH_AT=
# "<point>:<step key>:<marker file>" SIGKILLs this worker at <point> of that step, once (the
# marker file is created on the first hit). Points: "before-start" (no start record yet),
# "after-effect" (the step function returned, its result is not journaled), "after-commit"
# (the result is journaled, `step.run` has not returned). Read once at import; unset, it
# costs one truth test per step.
_CRASH_AT = os.environ.get("SYLPHRUN_TEST_CRASH_AT")


def _crash_point(point: str, key: str) -> None:
    want, _, rest = _CRASH_AT.partition(":")  # type: ignore[union-attr]
    want_key, _, marker = rest.rpartition(":")
    if want != point or want_key != key:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


# Step starts and results carry an event at most this often per run; the last change of a
# burst gets one this long after the previous (schema V2 says why). Readers poll every
# 50-100 ms, so a user sees no difference; a 100-step chain writes one event, not 200.
NOTICE_EVERY = 0.05

# Compensations get a few quick retries of their own: an undo that fails once (a flaky
# refund API) should not leave the saga half-compensated.
COMPENSATION_RETRY = Retry(max_attempts=3, min_delay=0.5, max_delay=5.0)


def error_text(exc: BaseException) -> str:
    if isinstance(exc, StepFailed):
        return codec.clean_text(f"{exc.error_type}: {exc.message}")
    message = str(exc)
    return codec.clean_text(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


# Frames of the machinery between the worker and the user's function: sylphrun's runtime
# and the standard library's thread pool and event loop.
_NOT_USER_CODE = (
    str(Path(__file__).resolve().parent),
    str(Path(concurrent.futures.__file__).resolve().parent),
    str(Path(asyncio.__file__).resolve().parent),
)


def user_traceback(exc: BaseException) -> str:
    """The traceback without sylphrun's own frames: the user's code is what they debug."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(_NOT_USER_CODE)
    ]
    lines = traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return codec.clean_text("".join(lines))


class Execution:
    """One claim of one run: the journal's view of its steps plus what this attempt did."""

    def __init__(
        self, conn: Connection, claim: store.Claim, task: Task, *,
        threads: Executor, on_ready_work: Callable[..., None] = lambda peers=False: None,
        clock: Callable[[], float] = time.time, max_output: int = codec.DEFAULT_MAX_OUTPUT,
    ) -> None:
        self.conn = conn
        self.claim = claim
        self.task = task
        self.run_id = claim.run_id
        self.epoch = claim.epoch
        self.attempt = claim.attempt
        self.threads = threads
        # Plain `def` task functions block a thread for the whole run: a pool of their own,
        # or runs waiting on their steps could take every thread their steps need.
        self.body_threads: Executor = threads
        self.on_ready_work = on_ready_work
        self.clock = clock
        # The config's `max_step_output`: a larger result fails its step, not retried.
        self.max_output = max_output
        self.loop = asyncio.get_running_loop()
        self.journal: dict[str, JournaledStep] = replay_state(conn, claim.run_id)
        self._next_seq = max((s.seq for s in self.journal.values()), default=0)
        self._name_counts: Counter[str] = Counter()
        self._issued: set[str] = set()
        self.doom: str | None = claim.doom
        # Set when the worker learns the run is no longer ours (cancelled, taken over).
        self.lost = False
        self.releasing = False
        # Suspension bookkeeping.
        self.pending_children: set[str] = set()
        self.wake_times: list[float] = []
        self.running: dict[str, asyncio.Task | None] = {}
        self.parent_of: dict[str, str | None] = {}
        self.blocked: Counter[str | None] = Counter()
        self._barrier: asyncio.Future[None] = self.loop.create_future()
        self._check_scheduled = False
        self._children: dict[str, model.RunResult] | None = None
        self.compensations: list[tuple[str, str, Callable[..., Any], Any]] = []
        self.triggers_in_step: Counter[str] = Counter()
        # Set once the task function has ended: see `runtime.drain`.
        self.draining = False
        self.drained: asyncio.Future[None] | None = None
        # Divergence check: only when the code changed since the run last executed.
        self.code_changed = (
            claim.previous_fingerprint is not None
            and claim.previous_fingerprint != task.source_fingerprint()
        )
        self._journal_order = [
            k for k, s in sorted(self.journal.items(), key=lambda kv: kv[1].seq)
            if s.status == model.STEP_COMPLETED and s.kind in (model.STEP, model.COMPENSATION)
        ]
        self._called: set[str] = set()
        self.diverged = False
        self.thread_steps = 0
        # Coalesced step events (see `notice`), on the loop's monotonic clock.
        self._next_notice = 0.0
        self._unnoticed: tuple[str, str] | None = None
        self._notice_timer: asyncio.TimerHandle | None = None

    # -- keys and sequence --------------------------------------------------------------

    def next_key(self, name: str) -> str:
        """`name`, then `name#2`, `name#3`...: assigned at call time, so deterministic."""
        self._name_counts[name] += 1
        n = self._name_counts[name]
        key = name if n == 1 else f"{name}#{n}"
        # A user's own name may look like a generated key ("a#2"): skip keys handed out
        # already in this execution. Still deterministic: the same calls give the same keys.
        while key in self._issued:
            self._name_counts[name] += 1
            key = f"{name}#{self._name_counts[name]}"
        self._issued.add(key)
        return key

    def seq_for(self, key: str) -> int:
        rec = self.journal.get(key)
        if rec is not None:
            return rec.seq
        self._next_seq += 1
        return self._next_seq

    # -- suspension barrier -------------------------------------------------------------

    @property
    def suspending(self) -> bool:
        return self._barrier.done()

    async def block(self, scope_key: str | None) -> None:
        """Wait until the run suspends (it raises `Suspend`): the caller waits on something
        that will not happen during this execution (a child, a timer)."""
        self.blocked[scope_key] += 1
        self._schedule_check()
        try:
            await asyncio.shield(self._barrier)
        finally:
            self.blocked[scope_key] -= 1
        raise Suspend()  # pragma: no cover - the barrier only ever carries Suspend

    def _schedule_check(self) -> None:
        if self._check_scheduled or self._barrier.done():
            return
        self._check_scheduled = True
        # Two loop turns: tasks that asyncio.gather just created get to run to their
        # first await (and register their own waits) before we decide.
        self.loop.call_soon(self.loop.call_soon, self._check)

    def _check(self) -> None:
        self._check_scheduled = False
        if self._barrier.done() or not (self.pending_children or self.wake_times):
            return
        if all(self._is_blocked(key) for key in self.running):
            self._barrier.set_exception(Suspend())
            self._barrier.exception()  # mark retrieved: awaiters get it through shield

    def _is_blocked(self, key: str) -> bool:
        """A running step is blocked when it waits itself, or when it is only awaiting
        steps nested in it that are all blocked (a step whose function runs a step that
        waits on a child)."""
        if self.blocked[key] > 0:
            return True
        nested = [k for k in self.running if self.parent_of.get(k) == key]
        return bool(nested) and all(self._is_blocked(k) for k in nested)

    def step_finished(self, key: str) -> None:
        self.running.pop(key, None)
        self.parent_of.pop(key, None)
        if self.pending_children or self.wake_times:
            self._schedule_check()
        if self.drained is not None and not self.drained.done():
            # Wakes `drain` after this task's current run: the step's outcome (result,
            # failure, undo registration) is journaled synchronously right after this.
            self.drained.set_result(None)

    # -- children ----------------------------------------------------------------------

    def run_exists(self, run_id: str) -> bool:
        return bool(self._children and run_id in self._children) or bool(
            lease_states(self.conn, [run_id]))

    def children_created(self) -> None:
        """New children exist: the next `child_result` reads them all again in one query."""
        self._children = None

    def child_result(self, run_id: str) -> model.RunResult | None:
        """A finished run's result, or None. Read once per execution: a child still
        unfinished when we looked is waited on; `suspend_run` checks it again in the same
        transaction that parks the run, so one finishing meanwhile is not missed."""
        if self._children is None:
            self._children = children_results(self.conn, self.run_id)
        if run_id in self._children:
            return self._children[run_id]
        # Not one of ours (a handle passed in the payload): ask for this id alone.
        found = run_results(self.conn, [run_id]).get(run_id)
        if found is not None:
            self._children[run_id] = found
        return found

    # -- code changes -------------------------------------------------------------------

    def note_step_call(self, key: str, where: str) -> None:
        """Warn (once, in the run's journaled log) when code reloaded under a resumed run
        no longer calls its journaled steps in order: a renamed, removed or reordered step.
        The run is never stranded: journaled steps stay, new ones run."""
        if not self.code_changed or self.diverged:
            return
        expected = next((k for k in self._journal_order if k not in self._called), None)
        self._called.add(key)
        if expected is None or key == expected:
            return
        if key in self._journal_order:
            # Reordered: each key still gets its own journaled result (same function and
            # arguments, or `check_replay` would have stopped the run), so the run goes on.
            self.diverged = True
            self.warn(
                f"code changed under this run: the journal expected step {expected!r} next, "
                f"but the code called {key!r} at {where}; the steps were reordered, each "
                "keeps its journaled result"
            )
        elif key not in self.journal:
            self.diverged = True
            self.warn(
                f"code changed under this run: the journal expected step {expected!r} next, "
                f"but the code called {key!r} at {where}; {key!r} runs as a new step and "
                f"{expected!r} keeps its journaled result"
            )

    def note_finished(self) -> None:
        if not self.code_changed or self.diverged:
            return
        missing = [k for k in self._journal_order if k not in self._called]
        if missing:
            self.diverged = True
            self.warn(
                "code changed under this run: journaled step(s) "
                f"{', '.join(repr(k) for k in missing[:5])} were not called by the new code"
            )

    def warn(self, message: str) -> None:
        import logging

        with journal_guard():
            store.append_log(self.conn, self.run_id, level="WARNING",
                             message=codec.clean_text(message), step_key=None, now=self.now(),
                             epoch=self.epoch)
        # INFO: the journaled line is the warning (`dev --no-tui` prints it in its format).
        logging.getLogger("sylphrun.worker").info("run %s: %s", self.run_id, message)

    # -- events for readers -------------------------------------------------------------

    def notice(self, key: str, status: str) -> bool:
        """Should this step start/result write carry its event? Yes once per NOTICE_EVERY;
        otherwise the change is remembered and one event follows when the window ends."""
        now = self.loop.time()
        if now >= self._next_notice:
            self._next_notice = now + NOTICE_EVERY
            self._unnoticed = None
            return True
        self._unnoticed = (key, status)
        if self._notice_timer is None:
            self._notice_timer = self.loop.call_at(self._next_notice, self._flush_notice)
        return False

    def _flush_notice(self) -> None:
        self._notice_timer = None
        if self._unnoticed is None or self.lost:
            return
        key, status = self._unnoticed
        self._unnoticed = None
        self._next_notice = self.loop.time() + NOTICE_EVERY
        try:
            store.note_step_change(self.conn, self.run_id, self.epoch, key=key, status=status,
                                   now=self.now())
        except JournalError:
            pass  # only a hint to readers: the run's next event makes them look again

    def end_notices(self) -> None:
        """The execution is over: its last write (finished, suspended, released) has an
        event of its own, so a pending one would only repeat it."""
        if self._notice_timer is not None:
            self._notice_timer.cancel()
            self._notice_timer = None
        self._unnoticed = None

    # -- time ---------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock()


# Set in the context of tasks created inside an `except` block (see `task_factory`).
_compensating: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sylphrun_compensating", default=False
)


def _handling_step_failure() -> bool:
    """Is the caller in an `except` block handling a step's (or a child run's) failure?

    Only those count (DESIGN: "while the run is handling a step failure"): a step run in
    `except KeyError:` around a cache lookup is an ordinary step, not an undo. The failure
    may be wrapped: its `__cause__`/`__context__` chain is searched.
    """
    exc = sys.exc_info()[1]
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, (StepFailed, ChildRunFailed)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _handling_failure() -> bool:
    """True while user code handles a step failure: a step run there is compensation.

    `sys.exc_info()` sees the block the caller is in, but not across a task boundary: a
    task that `asyncio.gather` creates inside the block starts with no exception being
    handled. `task_factory` carries the fact into such tasks through their context.
    """
    return _compensating.get() or _handling_step_failure()


def task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
    """The worker loop's task factory: a task created while a step failure is being handled
    (the saga's `except` block gathering undo helpers) runs its steps as compensation."""
    if not _compensating.get() and _handling_step_failure():
        context = kwargs.get("context") or contextvars.copy_context()
        context.run(_compensating.set, True)
        kwargs["context"] = context
    return asyncio.Task(coro, loop=loop, **kwargs)


class Steps:
    """`ctx.step`: durable steps for an async task function."""

    def __init__(self, execution: Execution) -> None:
        self._ex = execution

    def run(
        self, name: str, fn: Callable[..., Any], *args: Any,
        retry: Retry | None = None, compensate: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> Awaitable[Any]:
        """Run `fn(*args, **kwargs)` as the durable step `name`, or return its journaled result.

        The key is taken here, synchronously, so `asyncio.gather(step.run("a", f),
        step.run("a", g))` gives `a` and `a#2` in argument order on every replay.
        """
        if not isinstance(name, str) or not name:
            raise TypeError("step name must be a non-empty string")
        if codec.clean_text(name) != name:
            raise ValueError(f"step name {name!r} is not valid Unicode (a lone surrogate)")
        if not callable(fn):
            raise TypeError(f"step {name!r}: fn must be callable")
        ex = self._ex
        key = ex.next_key(name)
        kind = model.COMPENSATION if _handling_failure() else model.STEP
        rec = ex.journal.get(key)
        if rec is not None and rec.fn is not None and rec.status == model.STEP_COMPLETED:
            check_replay(ex, key, rec, fn, args, kwargs, sys._getframe(1))
        if ex.code_changed:
            caller = sys._getframe(1)
            ex.note_step_call(key, f"{caller.f_code.co_filename}:{caller.f_lineno}")
        return run_step(ex, key, name, kind, fn, args, kwargs, retry, compensate)

    async def sleep(self, name: str, seconds: float) -> None:
        """A durable sleep: the run suspends and no worker is held while it sleeps."""
        ex = self._ex
        key = ex.next_key(name)
        await durable_sleep(ex, key, name, float(seconds))

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
        # Capture "inside an except block" here, in the user's thread, where it is true.
        key = ex.next_key(name)
        kind = model.COMPENSATION if _handling_failure() else model.STEP
        retry = kwargs.pop("retry", None)
        compensate = kwargs.pop("compensate", None)
        rec = ex.journal.get(key)
        if rec is not None and rec.fn is not None and rec.status == model.STEP_COMPLETED:
            check_replay(ex, key, rec, fn, args, kwargs, sys._getframe(1))
        if ex.code_changed:
            caller = sys._getframe(1)
            ex.note_step_call(key, f"{caller.f_code.co_filename}:{caller.f_lineno}")
        coro = run_step(ex, key, name, kind, fn, args, kwargs, retry, compensate)
        return asyncio.run_coroutine_threadsafe(coro, ex.loop).result()

    def sleep(self, name: str, seconds: float) -> None:
        ex = self._steps._ex
        key = ex.next_key(name)
        coro = durable_sleep(ex, key, name, float(seconds))
        return asyncio.run_coroutine_threadsafe(coro, ex.loop).result()

    @property
    def idempotency_key(self) -> str:
        return self._steps.idempotency_key


@contextlib.contextmanager
def journal_guard():
    """Around journal calls made while user code waits on them: see `JournalFailed`."""
    try:
        yield
    except JournalError as exc:
        raise JournalFailed(str(exc)) from None


async def run_step(
    ex: Execution, key: str, name: str, kind: str, fn: Callable[..., Any], args: tuple,
    kwargs: dict, retry: Retry | None, compensate: Callable[[Any], Any] | None,
) -> Any:
    """Replay-or-record for one step. The step function's own errors (even a JournalError
    of its own) become StepFailed inside; a journal error out here is the journal's.
    (`journal_guard` inlined: one generator less on the path every step takes.)"""
    try:
        return await _run_step(ex, key, name, kind, fn, args, kwargs, retry, compensate)
    except JournalError as exc:
        raise JournalFailed(str(exc)) from None


# Values whose JSON round trip is the value itself (equal, same type): a step returning
# one skips `json.loads` of what it just serialized. A float too: json writes repr(),
# which reads back exactly, and NaN/inf were refused by `codec.dumps` already.
_SELF_JSON = frozenset({type(None), bool, int, float, str})


async def _run_step(
    ex: Execution, key: str, name: str, kind: str, fn: Callable[..., Any], args: tuple,
    kwargs: dict, retry: Retry | None, compensate: Callable[[Any], Any] | None,
) -> Any:
    rec = ex.journal.get(key)
    if rec is not None and rec.status == model.STEP_COMPLETED:
        value = _journaled_value(key, rec.output)
        if compensate is not None and not rec.copied:
            # A step `replay --from-step` copied is the original run's effect: a failed
            # replay must not undo what that run (perhaps completed) relies on.
            ex.compensations.append((key, name, compensate, value))
        return value
    if rec is not None and rec.status == model.STEP_FAILED and rec.run_attempt == ex.attempt:
        # Failed for good earlier in this same attempt (we are resuming after a crash or a
        # suspension): fail the same way again instead of repeating its side effects.
        error_type, _, message = (rec.error or "Error").partition(": ")
        raise StepFailed(key, error_type, message, non_retriable=rec.fatal)
    if ex.releasing:
        raise Release()
    if ex.suspending:
        # The run is parking: a step started now would run its side effect and have its
        # result discarded, then run again on resume.
        raise Suspend()
    if ex.draining and kind == model.STEP and _outside_steps():
        raise Settled()
    if rec is not None and rec.status == model.STEP_RETRYING and rec.retry_at and rec.retry_at > ex.now():
        ex.wake_times.append(rec.retry_at)
        await ex.block(current_scope.get().step_key if current_scope.get() else None)
    if ex.doom is not None and (kind == model.STEP or (
            rec is not None and rec.status == model.STEP_INTERRUPTED)):
        # Doomed: fail at the first unfinished step. Compensations still run, except the
        # one that was in flight when the worker was replaced: it is what got stuck.
        return _fail_doomed_step(ex, key, name, kind, rec)

    # The step's attempt number across all run attempts, as `record_step_start` counts it:
    # a step parked with its suspended run ('waiting': a fan-in waiting on children)
    # resumes the same attempt.
    attempt_no = 1 if rec is None else rec.attempts + (rec.status != model.STEP_WAITING)
    seq = ex.seq_for(key)
    started = ex.now()
    called_fn, called_args = call_of(fn, args, kwargs, ex.run_id)
    if _CRASH_AT:
        _crash_point("before-start", key)
    store.record_step_start(ex.conn, ex.run_id, ex.epoch, key=key, name=name, kind=kind,
                            seq=seq, run_attempt=ex.attempt, now=started,
                            notify=ex.notice(key, model.STEP_RUNNING), fn=called_fn,
                            args_hash=called_args)
    outer = current_scope.get()
    token = current_scope.set(Scope(ex, key))
    ex.running[key] = asyncio.current_task()
    ex.parent_of[key] = outer.step_key if outer else None
    try:
        # An async fn is awaited right here: one coroutine frame less per step.
        result = await (fn(*args, **kwargs) if _is_async(fn) else _call_in_thread(ex, fn, args, kwargs))
        while type(result) not in _SELF_JSON and inspect.isawaitable(result):
            result = await result
        if ex.suspending:
            raise Suspend()
        output = codec.dumps(result, what=f"step {key!r} result", limit=ex.max_output)
    except asyncio.CancelledError:
        if ex.doom is not None and not ex.suspending:
            # The run hit its timeout while this async step ran: the step fails with it.
            return _fail_doomed_step(ex, key, name, kind, rec, started=True)
        if not ex.suspending and not ex.lost:
            # Cancelled by the user's own code (asyncio.wait_for, a TaskGroup): the attempt
            # ended without a result; a replay that calls the step again runs it again.
            store.record_step_interrupted(ex.conn, ex.run_id, ex.epoch, key=key,
                                          reason="cancelled before it returned", now=ex.now())
        raise
    except (Suspend, Release, store.LeaseLost):
        raise
    except Exception as exc:
        if ex.suspending:
            raise Suspend() from None  # the step swallowed a suspension (gather return_exceptions)
        fatal = isinstance(exc, (NonRetriableError, NotJSONSerializable))
        policy = retry or (COMPENSATION_RETRY if kind == model.COMPENSATION else None)
        now = ex.now()
        # The step's policy counts tries within this run attempt, this one included (not
        # `attempt_no`): a run-level retry re-executes the function, and its steps get their
        # own retries again instead of a single shot.
        tries = 0
        if policy is not None and not fatal and ex.doom is None:
            tries = 1 + step_tries_in_attempt(ex.conn, ex.run_id, key, ex.attempt)
        if tries and tries < policy.max_attempts:
            retry_at = now + policy.delay(tries)
            store.record_step_failure(ex.conn, ex.run_id, ex.epoch, key=key, error=error_text(exc),
                                      traceback=user_traceback(exc), retry_at=retry_at, now=now)
            ex.wake_times.append(retry_at)
            current_scope.reset(token)
            token = None
            ex.step_finished(key)
            await ex.block(outer.step_key if outer else None)
        store.record_step_failure(ex.conn, ex.run_id, ex.epoch, key=key, error=error_text(exc),
                                  traceback=user_traceback(exc), retry_at=None, fatal=fatal, now=now)
        raise StepFailed(key, type(exc).__name__, str(exc), non_retriable=fatal) from exc
    finally:
        if token is not None:
            current_scope.reset(token)
        ex.step_finished(key)
    undo_ref = _qualified_name(compensate) if compensate is not None else None
    if _CRASH_AT:
        _crash_point("after-effect", key)
    store.record_step_result(ex.conn, ex.run_id, ex.epoch, key=key, output=output, now=ex.now(),
                             compensate=undo_ref, notify=ex.notice(key, model.STEP_COMPLETED))
    if _CRASH_AT:
        _crash_point("after-commit", key)
    value = result if type(result) in _SELF_JSON else json.loads(output)
    ex.journal[key] = JournaledStep(model.STEP_COMPLETED, kind, output, None, attempt_no,
                                    ex.attempt, seq, None, False, undo_ref, called_fn,
                                    called_args)
    if compensate is not None:
        ex.compensations.append((key, name, compensate, value))
    return value


def _outside_steps() -> bool:
    """Called from the task function (or a branch of it), not from inside a step."""
    scope = current_scope.get()
    return scope is None or scope.step_key is None


def _journaled_value(key: str, output: str | None) -> Any:
    try:
        return json.loads(output) if output is not None else None
    except ValueError as exc:
        raise CorruptRecord(f"the journaled result of step {key!r} is not valid JSON ({exc}); "
                            "the row was damaged or edited by hand") from None


def _qualified_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _fail_doomed_step(ex: Execution, key: str, name: str, kind: str, rec: JournaledStep | None,
                      started: bool = False) -> Any:
    """The run overran its timeout: this step, the first not completed, fails with it."""
    now = ex.now()
    if not started:
        store.record_step_start(ex.conn, ex.run_id, ex.epoch, key=key, name=name, kind=kind,
                                seq=ex.seq_for(key), run_attempt=ex.attempt, now=now)
    store.record_step_failure(ex.conn, ex.run_id, ex.epoch, key=key, error=ex.doom or "",
                              traceback=None, retry_at=None, now=now)
    error_type, _, message = (ex.doom or "TaskTimeout").partition(": ")
    raise StepFailed(key, error_type, message, non_retriable=error_type == "WorkerCrashed")


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


async def durable_sleep(ex: Execution, key: str, name: str, seconds: float) -> None:
    with journal_guard():
        await _durable_sleep(ex, key, name, seconds)


async def _durable_sleep(ex: Execution, key: str, name: str, seconds: float) -> None:
    rec = ex.journal.get(key)
    if rec is not None and rec.status == model.STEP_COMPLETED:
        return
    if rec is not None and rec.output:
        wake_at = json.loads(rec.output)["wake_at"]
    elif ex.draining:
        raise Settled()
    else:
        wake_at = ex.now() + max(0.0, seconds)
        output = json.dumps({"wake_at": wake_at})
        seq = ex.seq_for(key)
        store.record_step_waiting(ex.conn, ex.run_id, ex.epoch, key=key, name=name,
                                  kind=model.SLEEP, seq=seq, run_attempt=ex.attempt,
                                  output=output, now=ex.now())
        ex.journal[key] = JournaledStep(model.STEP_WAITING, model.SLEEP, output, None, 1,
                                        ex.attempt, seq, None, False)
    if ex.now() < wake_at:
        ex.wake_times.append(wake_at)
        scope = current_scope.get()
        await ex.block(scope.step_key if scope else None)
    store.record_step_result(ex.conn, ex.run_id, ex.epoch, key=key,
                             output=json.dumps({"wake_at": wake_at}), now=ex.now())


async def wait_for_run(ex: Execution, run_id: str) -> model.RunResult:
    """Inside a run: a finished run's result, or suspend until it finishes."""
    with journal_guard():
        found = ex.child_result(run_id)
        exists = found is not None or ex.run_exists(run_id)
    if found is not None:
        return found
    if not exists:
        # Parking on it would wake at once (nothing to wait for) and loop forever.
        raise NonRetriableError(f"cannot wait for run {run_id!r}: no such run in this journal")
    ex.pending_children.add(run_id)
    scope = current_scope.get()
    await ex.block(scope.step_key if scope else None)
    raise AssertionError("unreachable")  # pragma: no cover
