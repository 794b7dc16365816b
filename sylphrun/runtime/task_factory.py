"""The worker loop's task factory: what a new task inherits from the code that created it.

Two facts cross the task boundary here, where `asyncio.gather` and `create_task` make a
task: that its creator was handling a step failure (its steps are undos:
`runtime.compensation_kind`), and that the run it belongs to has one more task starting
(the suspension barrier waits for it: `runtime.barrier`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sylphrun.runtime.compensation_kind import carry_compensating
from sylphrun.runtime.scope import current_scope


def task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
    task = asyncio.Task(coro, loop=loop, **carry_compensating(kwargs))
    scope = current_scope.get()
    if scope is not None:
        scope.execution.barrier.task_created()
    return task
