"""`order-saga`: the seed's "Saga / Compensation" example, with try/except.

Each completed step's id is remembered; when a later step fails, the `except` block undoes
what was done, in reverse order (refund, then release), and re-raises so the run is marked
failed. The journal marks steps run inside the `except` block as kind `compensation`, and
the dashboard draws them as the compensation trace.

This task has no retry policy, as in the seed: compensating in the `except` block and then
retrying would ship against a refunded payment. For a saga that retries, see
`order_saga_registered.py` (compensations registered with `compensate=`).

Payloads:

- `{}`: reserve, charge, ship, notify; completes.
- `{"fail_at": "create-shipment"}`: `refund-payment` then `release-inventory`; the run fails.
- `{"fail_at": "charge-payment"}`: only `release-inventory` runs (nothing was charged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sylphrun import task
from tasks_example import services
from tasks_example.services import Faults

if TYPE_CHECKING:
    from sylphrun.runtime.context import Context


@task(id="order-saga")
async def order_saga(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    req = services.order_request(payload)
    guard = Faults.from_payload(payload, ctx.attempt).wrap
    total = sum(item["qty"] * item["unit_price_cents"] for item in req["items"])
    reservation_id: str | None = None
    payment_id: str | None = None
    try:
        # Step 1: reserve inventory.
        reservation = await ctx.step.run(
            "reserve-inventory",
            guard("reserve-inventory", services.reserve_inventory),
            req["order_id"],
            req["items"],
        )
        reservation_id = reservation["id"]

        # Step 2: charge payment.
        payment = await ctx.step.run(
            "charge-payment",
            guard("charge-payment", services.charge_payment),
            total,
            reservation_id,
        )
        payment_id = payment["id"]

        # Step 3: create the shipment (fails with {"fail_at": "create-shipment"}).
        shipment = await ctx.step.run(
            "create-shipment",
            guard("create-shipment", services.create_shipment),
            req["order_id"],
            reservation_id,
        )

        # Step 4: notify.
        await ctx.step.run(
            "notify", guard("notify", services.send_confirmation), req["email"], shipment["id"]
        )
        return {"success": True, "shipment_id": shipment["id"]}
    except Exception as exc:
        ctx.log.warning("order %s failed (%s); compensating", req["order_id"], exc)
        # Compensate in reverse order.
        if payment_id:
            await ctx.step.run("refund-payment", services.refund_payment, payment_id)
        if reservation_id:
            await ctx.step.run("release-inventory", services.release_inventory, reservation_id)
        raise  # so the run is marked failed
