"""The suspension barrier (`runtime.barrier`), in process: when a run parks, and when not."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from sylphrun.runtime.barrier import Barrier
from sylphrun.runtime.scope import Scope, current_scope
from sylphrun.runtime.signals import Suspend
from sylphrun.runtime.task_factory import task_factory


def _run_barrier() -> Barrier:
    """A barrier on a loop with the worker's task factory, in the scope of a run: tasks
    created from here on count as the run's (the run is a stand-in holding the barrier)."""
    loop = asyncio.get_running_loop()
    loop.set_task_factory(task_factory)
    barrier = Barrier(loop)
    current_scope.set(Scope(SimpleNamespace(barrier=barrier), None))  # type: ignore[arg-type]
    return barrier


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_the_body_waiting_on_a_timer_with_no_step_running_suspends():
    async def main() -> None:
        barrier = Barrier(asyncio.get_running_loop())
        barrier.wake_times.append(1e12)
        with pytest.raises(Suspend):
            await barrier.block(None)
        assert barrier.suspending

    asyncio.run(main())


def test_a_wait_with_nothing_to_wait_for_never_suspends():
    async def main() -> None:
        barrier = Barrier(asyncio.get_running_loop())
        waiter = asyncio.ensure_future(barrier.block(None))
        await _turns()
        assert not barrier.suspending and not waiter.done()
        waiter.cancel()

    asyncio.run(main())


def test_a_running_step_holds_the_barrier_until_it_finishes():
    async def main() -> None:
        barrier = Barrier(asyncio.get_running_loop())
        barrier.step_started("fetch", None, None)
        barrier.pending_children.add("child-run")
        waiter = asyncio.ensure_future(barrier.block(None))
        await _turns()
        assert not barrier.suspending, "a step still running would be discarded"
        barrier.step_finished("fetch")
        with pytest.raises(Suspend):
            await waiter

    asyncio.run(main())


def test_a_step_that_gather_has_created_but_not_started_is_waited_for():
    """asyncio.gather(step.sleep(...), step.run(...)): the sleep blocks before the other
    branch's task has run at all; the run must not park before that step starts."""

    async def main() -> None:
        barrier = _run_barrier()
        finish = asyncio.Event()

        async def sleeper() -> None:
            barrier.wake_times.append(1e12)
            await barrier.block(None)

        async def step() -> str:
            barrier.step_started("charge", asyncio.current_task(), None)
            await finish.wait()
            barrier.step_finished("charge")
            return "charged"

        both = asyncio.gather(sleeper(), step(), return_exceptions=True)
        await _turns()
        assert not barrier.suspending
        finish.set()
        suspended, charged = await both
        assert isinstance(suspended, Suspend) and charged == "charged"

    asyncio.run(main())


def test_a_step_waiting_only_on_its_blocked_nested_steps_counts_as_blocked():
    async def main() -> None:
        barrier = Barrier(asyncio.get_running_loop())
        barrier.step_started("outer", None, None)
        barrier.step_started("inner", None, "outer")
        barrier.pending_children.add("child-run")
        waiter = asyncio.ensure_future(barrier.block("inner"))
        with pytest.raises(Suspend):
            await waiter

    asyncio.run(main())


def test_a_nested_step_still_running_holds_its_parent_and_the_barrier():
    async def main() -> None:
        barrier = Barrier(asyncio.get_running_loop())
        barrier.step_started("outer", None, None)
        barrier.step_started("inner", None, "outer")
        barrier.step_started("inner#2", None, "outer")
        barrier.wake_times.append(1e12)
        waiter = asyncio.ensure_future(barrier.block("inner"))
        await _turns()
        assert not barrier.suspending
        barrier.step_finished("inner#2")
        with pytest.raises(Suspend):
            await waiter

    asyncio.run(main())


def test_a_step_started_by_a_task_that_a_new_task_created_is_waited_for():
    """Branches nest (a helper coroutine gathering its own steps): the step starts in the
    first run of a task created in the first run of a task created after the block. No
    fixed number of loop turns covers every depth; counting starting tasks does."""

    async def main() -> None:
        barrier = _run_barrier()
        finish = asyncio.Event()

        async def sleeper() -> None:
            barrier.wake_times.append(1e12)
            await barrier.block(None)

        async def step() -> str:
            barrier.step_started("charge", asyncio.current_task(), None)
            await finish.wait()
            barrier.step_finished("charge")
            return "charged"

        async def branch(depth: int) -> str:
            if depth == 0:
                return await step()
            return await asyncio.create_task(branch(depth - 1))

        both = asyncio.gather(sleeper(), branch(3), return_exceptions=True)
        await _turns(10)
        assert not barrier.suspending, "parked before the nested branch started its step"
        finish.set()
        suspended, charged = await both
        assert isinstance(suspended, Suspend) and charged == "charged"

    asyncio.run(main())


def test_a_branch_going_on_to_its_next_step_after_one_finishes_is_waited_for():
    """A step finishing is not the end of its branch: the branch's next step starts in
    the same run of its task, before the barrier decides."""

    async def main() -> None:
        barrier = _run_barrier()
        first_done = asyncio.Event()
        second_started = []

        async def sleeper() -> None:
            barrier.wake_times.append(1e12)
            await barrier.block(None)

        async def branch() -> None:
            barrier.step_started("a", asyncio.current_task(), None)
            await first_done.wait()
            barrier.step_finished("a")
            if barrier.suspending:
                raise Suspend()
            barrier.step_started("b", asyncio.current_task(), None)
            second_started.append(True)
            await asyncio.sleep(0)
            barrier.step_finished("b")

        both = asyncio.gather(sleeper(), branch(), return_exceptions=True)
        await _turns()
        first_done.set()
        suspended, ended = await both
        assert second_started and ended is None and isinstance(suspended, Suspend)

    asyncio.run(main())
