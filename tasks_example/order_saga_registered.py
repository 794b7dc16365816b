"""`order-saga-registered`: the saga again, with compensations registered per step.

`ctx.step.run(name, fn, compensate=undo)` records `undo(result)` when the step completes.
When the run fails for good (no attempts left), sylphrun runs the registered undos in
reverse order, each a journaled step `compensate:<key>` of kind `compensation`. Unlike the
try/except form, this one is safe to combine with retries: nothing is undone while a retry
is still coming, so a retried run never ships an order whose payment was refunded.

Payloads:

- `{}`: completes; nothing is compensated.
- `{"flaky": "create-shipment"}`: attempt 1 fails, attempt 2 ships; no compensation ran.
- `{"fail_at": "create-shipment"}`: all 3 attempts fail; then `compensate:charge-payment`
  (refund) and `compensate:reserve-inventory` (release) run, once each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sylphrun import Retry, task
from tasks_example import services
from tasks_example.services import Faults

if TYPE_CHECKING:
    from sylphrun.runtime.context import Context


def release(reservation: dict[str, Any]) -> dict[str, Any]:
    """Undo of `reserve-inventory`: receives that step's result."""
    return services.release_inventory(reservation["id"])


def refund(payment: dict[str, Any]) -> dict[str, Any]:
    """Undo of `charge-payment`: receives that step's result."""
    return services.refund_payment(payment["id"])


@task(id="order-saga-registered", retry=Retry(max_attempts=3, min_delay=0.05, max_delay=0.2))
async def order_saga_registered(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    req = services.order_request(payload)
    guard = Faults.from_payload(payload, ctx.attempt).wrap
    total = sum(item["qty"] * item["unit_price_cents"] for item in req["items"])

    reservation = await ctx.step.run(
        "reserve-inventory",
        guard("reserve-inventory", services.reserve_inventory),
        req["order_id"],
        req["items"],
        compensate=release,
    )
    payment = await ctx.step.run(
        "charge-payment",
        guard("charge-payment", services.charge_payment),
        total,
        reservation["id"],
        compensate=refund,
    )
    shipment = await ctx.step.run(
        "create-shipment",
        guard("create-shipment", services.create_shipment),
        req["order_id"],
        reservation["id"],
    )
    await ctx.step.run(
        "notify", guard("notify", services.send_confirmation), req["email"], shipment["id"]
    )
    return {"success": True, "shipment_id": shipment["id"], "payment_id": payment["id"]}
