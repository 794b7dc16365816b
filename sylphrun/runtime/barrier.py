"""The suspension barrier: a run parks only once every step it has in flight is blocked.

A step (or the task body) that waits on something that will not happen during this
execution (a child run, a durable sleep, a step's retry delay) blocks here. The run
suspends (every blocked waiter gets `Suspend`) once each running step is blocked, itself
or through the steps nested in it, so parallel steps finish, and are journaled, before the
run parks instead of being discarded and run again on resume.
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
        self._fell: asyncio.Future[None] = loop.create_future()
        self._check_scheduled = False

    @property
    def suspending(self) -> bool:
        return self._fell.done()

    def step_started(self, key: str, task: asyncio.Task | None, parent: str | None) -> None:
        self.running[key] = task
        self.parent_of[key] = parent

    def step_finished(self, key: str) -> None:
        self.running.pop(key, None)
        self.parent_of.pop(key, None)
        if self.pending_children or self.wake_times:
            self._schedule_check()

    async def block(self, scope_key: str | None) -> None:
        """Wait until the run suspends (it raises `Suspend`): the caller waits on something
        that will not happen during this execution (a child, a timer)."""
        self.blocked[scope_key] += 1
        self._schedule_check()
        try:
            await asyncio.shield(self._fell)
        finally:
            self.blocked[scope_key] -= 1
        raise Suspend()  # pragma: no cover - the barrier only ever carries Suspend

    def _schedule_check(self) -> None:
        if self._check_scheduled or self._fell.done():
            return
        self._check_scheduled = True
        # Two loop turns: tasks that asyncio.gather just created get to run to their
        # first await (and register their own waits) before we decide.
        self._loop.call_soon(self._loop.call_soon, self._check)

    def _check(self) -> None:
        self._check_scheduled = False
        if self._fell.done() or not (self.pending_children or self.wake_times):
            return
        if all(self._is_blocked(key) for key in self.running):
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
