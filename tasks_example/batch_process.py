"""`batch-process`: fan-out and fan-in, the seed's "Fan-Out" example.

`process_item.batch_trigger(...)` creates one child run per item in one transaction, journaled
as a step of this run: a retried or resumed parent never creates its children twice. The
`collect` step then waits for all of them. While children are unfinished the parent suspends:
it is `waiting`, holds no worker slot, and is replayed from the journal once they are done,
so 1,000 items on 2 workers cannot deadlock.

A failed child does not fail the batch: it is counted in `failed`.

Payloads:

- `{}`: five items, all successful.
- `{"count": 20, "fail_items": [3, 7, 11]}`: twenty children, three fail:
  `{"total": 20, "successful": 17, "failed": 3}`.
- `{"items": ["a", "b"]}`: explicit item ids.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sylphrun import task
from tasks_example import services
from tasks_example.process_item import process_item

if TYPE_CHECKING:
    from sylphrun.runtime.context import Context


@task(id="batch-process")
async def batch_process(payload: dict[str, Any], ctx: Context) -> dict[str, int]:
    # Prepare.
    batch = await ctx.step.run("prepare", services.prepare_batch, services.batch_items(payload))

    # Fan-out: one child run per item.
    handles = await process_item.batch_trigger(
        services.item_payloads(batch["items"], payload.get("fail_items", ()))
    )

    # Fan-in: wait for every child. Inside the step each result is a RunResult; the step's
    # journaled result (what `results` holds) is its JSON form, a dict with "ok", "output"...
    async def collect() -> list[Any]:
        return await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))

    results = await ctx.step.run("collect", collect)

    # Aggregate.
    stats = {
        "total": len(results),
        "successful": sum(1 for r in results if r["ok"]),
        "failed": sum(1 for r in results if not r["ok"]),
    }
    ctx.log.info(
        "batch %s: %d of %d items processed", batch["id"], stats["successful"], stats["total"]
    )
    await ctx.step.run("finalize", services.store_batch_result, batch["id"], stats)
    return stats
