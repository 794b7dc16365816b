"""The suspension barrier: a run parks only once every step it has in flight is blocked.

A step (or the task body) that waits on something that will not happen during this
execution (a child run, a durable sleep, a step's retry delay) blocks here. The run
suspends (every blocked waiter gets `Suspend`) once each running step is blocked, itself
or through the steps nested in it, so parallel steps finish, and are journaled, before the
run parks instead of being discarded and run again on resume.

It counts rather than waits a number of loop turns. Running steps are registered by the
step itself, synchronously, before its function runs. A task the run creates
(`asyncio.gather` wrapping `step.run(...)` calls or the user's branch coroutines) counts as
starting from its creation until its first run has ended: by then it has started its
steps or blocked (`task_created`, called by the worker loop's task factory). The decision
is taken after each block, finished step and task start, once the code running at that
moment has reached its next await: a branch whose step just finished goes on to its next
step in the same run of its task, and that step is waited for too.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from sylphrun.runtime.signals import Suspend


class Barrier:
    """Running and blocked steps of one execution, and what the run would wait for."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Step key -> its task (None: started from a thread), and the step it is nested in.
        self.running: dict[str, asyncio.Task | None] = {}
        self.parent_of: dict[str, str | None] = {}
        # Waiters per scope (a step key, or None for the task body).
        self.blocked: Counter[str | None] = Counter()
        # What the parked run waits for: child run ids, and wake-up times.
        self.pending_children: set[str] = set()
        self.wake_times: list[float] = []
        # Keys of `wait_for_event` steps waiting for an event a sender wakes the run for.
        self.pending_events: set[str] = set()
        # Tasks of this run created and not yet through their first run.
        self.starting = 0
        self._fell: asyncio.Future[None] = loop.create_future()
        self._decision_due = False
        # Set once the run suspends (`_fell` done): a plain attribute, read by every step.
        self.suspending = False

    def _waits_on_something(self) -> bool:
        return bool(self.pending_children or self.wake_times or self.pending_events)

    def task_created(self) -> None:
        self.starting += 1
        # A new task's first run is already queued (FIFO): this runs right after it.
        self._loop.call_soon(self._task_started)

    def _task_started(self) -> None:
        self.starting -= 1
        if not self.starting and self._waits_on_something():
            self._decide_soon()

    def step_started(self, key: str, task: asyncio.Task | None, parent: str | None) -> None:
        self.running[key] = task
        self.parent_of[key] = parent

    def step_finished(self, key: str) -> None:
        self.running.pop(key, None)
        self.parent_of.pop(key, None)
        if self.pending_children or self.wake_times or self.pending_events:  # hot: inline
            self._decide_soon()

    async def block(self, scope_key: str | None) -> None:
        """Wait until the run suspends (it raises `Suspend`): the caller waits on something
        that will not happen during this execution (a child, a timer)."""
        self.blocked[scope_key] += 1
        self._decide_soon()
        try:
            await asyncio.shield(self._fell)
        finally:
            self.blocked[scope_key] -= 1
        raise Suspend()  # pragma: no cover - the barrier only ever carries Suspend

    def _decide_soon(self) -> None:
        """Decide once the code running now reaches its next await (the callback runs after
        it); several events meanwhile make one decision."""
        if self._decision_due or self._fell.done():
            return
        self._decision_due = True
        self._loop.call_soon(self._decide)

    def _decide(self) -> None:
        self._decision_due = False
        if self._fell.done() or self.starting or not self._waits_on_something():
            return
        if all(self._is_blocked(key) for key in self.running):
            self.suspending = True
            self._fell.set_exception(Suspend())
            self._fell.exception()  # mark retrieved: awaiters get it through shield

    def _is_blocked(self, key: str) -> bool:
        """A running step is blocked when it waits itself, or when it is only awaiting
        steps nested in it that are all blocked (a step whose function runs a step that
        waits on a child)."""
        if self.blocked[key] > 0:
            return True
        nested = [k for k in self.running if self.parent_of.get(k) == key]
        return bool(nested) and all(self._is_blocked(k) for k in nested)
