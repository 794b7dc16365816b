"""Draining: an execution settles its outcome only once no step of it is in flight.

`asyncio.gather` raises the first failure at once and leaves the other steps running;
a task function can also return while a step it started is still going. Settling then
would break the promise both ways: a final failure would run the compensations before the
sibling completes (its effect, journaled too late or not at all, is never undone), and a
run-level retry would start the next attempt while the sibling still executes (it runs
twice). So the execution first waits until every step in flight has finished and
journaled its outcome; a step completing meanwhile registers its undo as usual, so the
compensations that follow include it.

While draining, a branch still going may not start a new forward step (`Settled`): its
effect would land after the outcome was chosen. Compensation-kind steps (a branch's own
`except` block undoing its work) and steps nested in a step in flight (part of finishing
it) still run. The drain is bounded by the task's `timeout` like any step: at the
deadline async steps are cancelled and a worker stuck in a thread step is replaced.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sylphrun.runtime.execution import Execution


async def drain(ex: Execution) -> None:
    """Return once no step of `ex` is running (a step blocked on a child or a timer ends
    with the run's suspension, which the barrier raises once all of them are blocked)."""
    # A step the function launched just before it ended (`asyncio.ensure_future(
    # ctx.step.run(...))`, then `return`) gets to start, and is then waited for like the
    # others, rather than refused: the barrier counts the run's tasks not yet started.
    while ex.barrier.starting:
        await asyncio.sleep(0)
    ex.draining = True
    await until_no_step_runs(ex)


async def until_no_step_runs(ex: Execution) -> None:
    """Return once no step of `ex` is running but the caller's own. Also the hand-back's
    wait (`Release`): a release raised in one branch of a gather reaches the body while
    the other branches' steps still run; released under them, they would run again
    elsewhere. Each step finishing wakes this (`Execution.step_finished`)."""
    me = asyncio.current_task()
    while any(t is not me for t in ex.running.values()):
        ex.drained = ex.loop.create_future()
        try:
            await ex.drained
        finally:
            ex.drained = None
