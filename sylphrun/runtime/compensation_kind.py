"""Is a step an undo? A step run while user code handles a step failure is compensation.

DESIGN: "while the run is handling a step failure". Only a step's (or a child run's)
failure counts: a step run in `except KeyError:` around a cache lookup is an ordinary step.
The failure may be wrapped (`raise AppError(...) from exc`): the `__cause__`/`__context__`
chain is searched.

`sys.exc_info()` sees the `except` block the caller is in, but not across a task boundary:
a task that `asyncio.gather` creates inside the block starts with no exception being
handled. The worker loop's task factory carries the fact into such tasks through their
context (`carry_compensating`).
"""

from __future__ import annotations

import contextvars
import sys
from typing import Any

from sylphrun.errors import ChildRunFailed, StepFailed

# Set in the context of tasks created inside an `except` block (see `carry_compensating`).
_compensating: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sylphrun_compensating", default=False
)
# Read directly on the step path (`runtime.steps`), where each function call shows.
compensating = _compensating

# A chain longer than this is not followed further (a cycle, or a pathological wrap).
_MAX_CHAIN = 20


def is_step_failure(exc: BaseException | None) -> bool:
    """Is `exc`, or an exception it was raised from or during, a step or child failure?"""
    seen = 0
    while exc is not None and seen < _MAX_CHAIN:
        if isinstance(exc, (StepFailed, ChildRunFailed)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def handling_step_failure() -> bool:
    """Is the caller in an `except` block handling a step's (or a child run's) failure?"""
    return is_step_failure(sys.exc_info()[1])


def handling_failure() -> bool:
    """True while user code handles a step failure, in this task or in the task that
    created it: a step run there is compensation."""
    return _compensating.get() or handling_step_failure()


def carry_compensating(task_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a task being created, with a context that marks its steps
    as compensation when its creator is handling a step failure (the saga's `except` block
    gathering undo helpers). Called by the worker loop's task factory."""
    if not _compensating.get() and handling_step_failure():
        context = task_kwargs.get("context") or contextvars.copy_context()
        context.run(_compensating.set, True)
        task_kwargs["context"] = context
    return task_kwargs
