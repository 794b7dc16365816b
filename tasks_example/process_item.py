"""`process-item`: the child task that `batch-process` and `batch-report` fan out to.

Defined in the seed's object form, `task(id=..., run=...)`. Each child is an ordinary run:
it has its own steps, shows in the dashboard under its parent, and can be triggered alone.

Payloads:

- `{"item_id": 7}`: completes with the item's checksum.
- `{"item_id": 3, "fail": true}`: fails (what the parents' `fail_items` asks for); no retry
  policy, so a parent sees the failure at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sylphrun import task
from tasks_example import services

if TYPE_CHECKING:
    from sylphrun.runtime.context import Context


async def run_item(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    item_id = payload.get("item_id", 1)
    return await ctx.step.run(
        "process", services.process_item, item_id, bool(payload.get("fail", False))
    )


process_item = task(id="process-item", run=run_item)
