"""`process-order`: step chaining, the seed's "Chaining Steps" example.

Five durable steps, each fed by the results of the ones before it. The task retries the
whole function up to 3 times; on a retry the steps that completed return their journaled
results at once, so the customer is charged once however often the run is retried.

Payloads:

- `{}`: the sample order completes on the first attempt.
- `{"flaky": "process-payment"}`: the payment times out on attempt 1; attempt 2 replays
  `validate` and `reserve-inventory` from the journal and charges once.
- `{"fail_at": "create-shipment"}`: fails on all 3 attempts; the run fails, having charged once.
- `{"items": []}`: invalid, fails at once with `NonRetriableError` (no retries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sylphrun import NonRetriableError, Retry, task
from tasks_example import services
from tasks_example.services import Faults

if TYPE_CHECKING:
    from sylphrun.runtime.context import Context

# Short delays so a demo retry is quick; a real service would back off for seconds.
DEMO_RETRY = Retry(max_attempts=3, min_delay=0.05, max_delay=0.2)


def validate(order_id: str, items: list[dict[str, Any]], email: str) -> dict[str, Any]:
    """`services.validate_order`, with invalid input made non-retriable."""
    try:
        return services.validate_order(order_id, items, email)
    except ValueError as exc:
        raise NonRetriableError(str(exc)) from exc


@task(id="process-order", retry=DEMO_RETRY)
async def process_order(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    req = services.order_request(payload)
    faults = Faults.from_payload(payload, ctx.attempt)
    guard = faults.wrap  # guard("name", fn): fn, but failing when the payload says so

    # Step 1: validate.
    order = await ctx.step.run(
        "validate", guard("validate", validate), req["order_id"], req["items"], req["email"]
    )
    ctx.log.info(
        "attempt %d: order %s totals %d cents", ctx.attempt, order["id"], order["total_cents"]
    )

    # Step 2: reserve inventory (its result is passed forward).
    reservation = await ctx.step.run(
        "reserve-inventory",
        guard("reserve-inventory", services.reserve_inventory),
        order["id"],
        order["items"],
    )

    # Step 3: charge, using the results of steps 1 and 2.
    payment = await ctx.step.run(
        "process-payment",
        guard("process-payment", services.charge_payment),
        order["total_cents"],
        reservation["id"],
    )

    # Step 4: create the shipment.
    shipment = await ctx.step.run(
        "create-shipment",
        guard("create-shipment", services.create_shipment),
        order["id"],
        reservation["id"],
    )

    # Step 5: notify the customer.
    await ctx.step.run(
        "send-confirmation",
        guard("send-confirmation", services.send_confirmation),
        order["email"],
        shipment["id"],
    )
    return {"order_id": order["id"], "shipment_id": shipment["id"], "payment_id": payment["id"]}
