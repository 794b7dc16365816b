"""`order-approval`: an order that waits for a human's approval, with a timeout.

Started by an event (`on_event`), it reserves the stock, then waits (suspended: no worker
held, surviving reloads and restarts) for `order.approved` with its `order_id`. Approved:
it charges and ships. Rejected (`"approved": false`) or not answered within
`approval_timeout` seconds (default a day): it releases the stock. An `order.cancelled`
event with its `order_id` cancels it wherever it is (`cancel_on`).

    sylphrun send order.created --data '{"order_id": "ord-7"}'
    sylphrun send order.approved --data '{"order_id": "ord-7", "approved": true}'
    sylphrun send order.cancelled --data '{"order_id": "ord-8"}'    # instead of approving
    sylphrun events                                                 # what each one did

An approval sent before the run reached its wait is not lost: a wait takes any matching
event sent after its run was triggered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sylphrun import CancelOn, task
from tasks_example import services

if TYPE_CHECKING:
    from sylphrun.runtime.context import Context

DAY = 24 * 3600


@task(
    id="order-approval",
    on_event="order.created",
    cancel_on=[CancelOn("order.cancelled", match="order_id")],
)
async def order_approval(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    order = services.order_request(payload)
    reservation = await ctx.step.run(
        "reserve-inventory", services.reserve_inventory, order["order_id"], order["items"]
    )
    decision = await ctx.step.wait_for_event(
        "approval",
        "order.approved",
        match={"order_id": order["order_id"]},
        timeout=payload.get("approval_timeout", DAY),
    )
    if decision is None or not decision.get("approved", True):
        await ctx.step.run("release-inventory", services.release_inventory, reservation["id"])
        return {
            "order_id": order["order_id"],
            "status": "expired" if decision is None else "rejected",
        }
    total = sum(i["qty"] * i["unit_price_cents"] for i in order["items"])
    payment = await ctx.step.run(
        "charge-payment", services.charge_payment, total, reservation["id"]
    )
    shipment = await ctx.step.run(
        "create-shipment", services.create_shipment, order["order_id"], reservation["id"]
    )
    return {
        "order_id": order["order_id"],
        "status": "approved",
        "payment_id": payment["id"],
        "shipment_id": shipment["id"],
        "approved_by": decision.get("by"),
    }
