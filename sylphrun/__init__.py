"""sylphrun: durable workflows in Python, run locally over a SQLite journal.

from sylphrun import task, Retry, NonRetriableError

@task(id="process-order", retry=Retry(max_attempts=3))
async def process_order(payload, ctx):
    order = await ctx.step.run("validate", validate_order, payload["order_id"])
    return {"order_id": order["id"]}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The public names are imported on first use (PEP 562): every task module, every spawned
# worker, the import check of each reload and `sylphrun --help` import this package, and
# most of them need `task` and nothing of the journal, asyncio or the trigger machinery.
if TYPE_CHECKING:
    from sylphrun.define import Concurrency, Debounce, RateLimit, Retry, Task, task
    from sylphrun.errors import ChildRunFailed, IdempotencyConflict, NonRetriableError, StepFailed
    from sylphrun.events import CancelOn, EventSent, send_event
    from sylphrun.model import RunResult
    from sylphrun.runtime.context import Context
    from sylphrun.trigger import BatchHandle, RunHandle

__all__ = [
    "BatchHandle",
    "CancelOn",
    "ChildRunFailed",
    "Concurrency",
    "Context",
    "EventSent",
    "Debounce",
    "IdempotencyConflict",
    "NonRetriableError",
    "RateLimit",
    "Retry",
    "RunHandle",
    "RunResult",
    "StepFailed",
    "Task",
    "send_event",
    "task",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Plain imports, not importlib by name: only discovery imports by name (see
    # tests/torture/test_files.py).
    if name in ("Retry", "Task", "task", "Concurrency", "RateLimit", "Debounce"):
        from sylphrun import define as module
    elif name in ("ChildRunFailed", "IdempotencyConflict", "NonRetriableError", "StepFailed"):
        from sylphrun import errors as module
    elif name in ("CancelOn", "EventSent", "send_event"):
        from sylphrun import events as module
    elif name == "RunResult":
        from sylphrun import model as module
    elif name == "Context":
        from sylphrun.runtime import context as module
    elif name in ("BatchHandle", "RunHandle"):
        from sylphrun import trigger as module
    else:
        # AttributeError, not ImportError: `from sylphrun import model` relies on it to
        # fall back to importing the submodule.
        raise AttributeError(f"module 'sylphrun' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
