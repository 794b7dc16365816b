"""`sync-customer`: flow control, one run at a time per customer.

A CRM's API locks a customer record while it is written: two syncs of one customer at
once would fail or overwrite each other, while syncs of different customers can run side
by side. `Concurrency(limit=1, key="customer_id")` says exactly that; the key is read from
each run's payload when it is triggered. Runs of a customer whose sync is in progress
wait queued (`sylphrun show RUN` says `held: concurrency customer_id=acme (1/1)`), and a
run parked on a durable sleep holds no place.

Payloads:

- `{"customer_id": "acme"}`: pulls the customer, pushes it, completes with both ids.
- `{"customer_id": "acme", "fields": ["email"]}`: syncs only those fields.

    for c in acme acme globex; do
        sylphrun trigger sync-customer --payload "{\"customer_id\": \"$c\"}"
    done
    sylphrun trigger sync-customer --payload '{"customer_id": "initech"}' --priority 5
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sylphrun import Concurrency, task
from tasks_example import services

if TYPE_CHECKING:
    from sylphrun.runtime.context import Context


@task(id="sync-customer", concurrency=Concurrency(limit=1, key="customer_id"))
async def sync_customer(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    customer = payload["customer_id"]
    fields = payload.get("fields") or ["name", "email", "plan"]
    pulled = await ctx.step.run("pull", services.pull_customer, customer, fields)
    pushed = await ctx.step.run("push", services.push_customer, customer, pulled)
    return {"customer_id": customer, "pulled": pulled["id"], "pushed": pushed["id"]}
