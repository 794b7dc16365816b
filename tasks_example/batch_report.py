"""`batch-report`: fan-in with partial failures, the seed's "Fan-In" example.

The seed waits with `Promise.allSettled` so one failed child does not reject the whole
fan-in. In sylphrun `wait_for_completion()` never raises for a failed child: it returns a
settled `RunResult` (`ok`, `output`, `error`), so a plain `asyncio.gather` is the
`allSettled` here, and the `aggregate` step reports every item's outcome.

As the seed suggests, the task then decides whether to abort or continue based on the
failure rate: with `max_failure_rate` set, a worse batch fails the run (non-retriably: a
retry would only replay the same journaled results).

Payloads:

- `{}`: five items, all successful.
- `{"items": [1, 2, 3, 4], "fail_items": [2]}`: completes with `failed: 1` and per-item details.
- `{"count": 10, "fail_items": [1, 2, 3], "max_failure_rate": 0.2}`: 30% failed, the run fails.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sylphrun import NonRetriableError, task
from tasks_example import services
from tasks_example.process_item import process_item

if TYPE_CHECKING:
    from sylphrun.runtime.context import Context


@task(id="batch-report")
async def batch_report(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    items = services.batch_items(payload)
    handles = await process_item.batch_trigger(
        services.item_payloads(items, payload.get("fail_items", ()))
    )

    # Wait for all, ignoring individual failures: each RunResult is already "settled".
    async def aggregate() -> dict[str, Any]:
        settled = await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))
        return {
            "total": len(settled),
            "successful": sum(1 for r in settled if r.ok),
            "failed": sum(1 for r in settled if not r.ok),
            "details": [
                {"item_id": item, "ok": r.ok, "result": r.output, "error": r.error}
                for item, r in zip(items, settled, strict=True)
            ],
        }

    report = await ctx.step.run("aggregate", aggregate)

    max_rate = payload.get("max_failure_rate")
    if max_rate is not None and report["total"] and report["failed"] / report["total"] > max_rate:
        raise NonRetriableError(
            f"{report['failed']} of {report['total']} items failed, above the allowed "
            f"{max_rate:.0%}"
        )
    ctx.log.info("report: %d ok, %d failed", report["successful"], report["failed"])
    return report
