"""sylphrun: durable workflows in Python, run locally over a SQLite journal.

    from sylphrun import task, Retry, NonRetriableError

    @task(id="process-order", retry=Retry(max_attempts=3))
    async def process_order(payload, ctx):
        order = await ctx.step.run("validate", validate_order, payload["order_id"])
        return {"order_id": order["id"]}
"""

from sylphrun.define import Retry, Task, task
from sylphrun.errors import ChildRunFailed, NonRetriableError, StepFailed
from sylphrun.model import RunResult
from sylphrun.runtime.context import Context
from sylphrun.trigger import BatchHandle, RunHandle

__all__ = [
    "BatchHandle",
    "ChildRunFailed",
    "Context",
    "NonRetriableError",
    "Retry",
    "RunHandle",
    "RunResult",
    "StepFailed",
    "Task",
    "task",
]
__version__ = "0.1.0"
