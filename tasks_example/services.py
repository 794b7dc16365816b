"""Simulated external services for the example tasks.

Every function here stands in for a call to a real system (an inventory service, a payment
provider, a mailer): it sleeps a few milliseconds, so the dashboard shows steps in progress,
and returns ids derived from its inputs, so a replayed or retried run produces the same ids
and a test can predict them. None of them knows about `ctx` or the journal: durability is the
task's business, exactly as with a real client library.

Side effects are observable: when `SYLPHRUN_EXAMPLE_LEDGER` names a file, each one appends a
line there (`charge pay_1a2b3c4d 3700`), so you can see what ran how often.

Failures are injected by `Faults`, read from the run's payload:

- `{"fail_at": "create-shipment"}` (or a list of step names): that step fails on every attempt;
- `{"flaky": "process-payment"}` (or a list): that step fails on the run's first attempt only,
  so a run-level retry recovers;
- `{"fail_items": [3, 7]}`: the fan-out tasks mark those items so their child runs fail.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

LEDGER_ENV = "SYLPHRUN_EXAMPLE_LEDGER"

SAMPLE_ORDER: dict[str, Any] = {
    "order_id": "ord-1001",
    "user_id": "user-42",
    "email": "ada@example.com",
    "items": [
        {"sku": "MUG-RED", "qty": 2, "unit_price_cents": 1250},
        {"sku": "TEA-EARL", "qty": 1, "unit_price_cents": 1200},
    ],
}

F = TypeVar("F", bound=Callable[..., Any])


class SimulatedFailure(RuntimeError):
    """A failure the payload asked for (`fail_at`, `flaky`, `fail_items`)."""


@dataclass(frozen=True)
class Faults:
    """Which steps fail in this run attempt, as the payload asked.

    Build it in the task body with `Faults.from_payload(payload, ctx.attempt)` and wrap a step
    function with `faults.wrap(step_name, fn)`: the failure is raised inside the step, so the
    journal shows that step as failed, with its error, like a real outage.
    """

    fail_at: frozenset[str] = frozenset()
    flaky: frozenset[str] = frozenset()
    attempt: int = 1

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], attempt: int) -> Faults:
        return cls(_names(payload.get("fail_at")), _names(payload.get("flaky")), attempt)

    def check(self, step: str) -> None:
        """Raise `SimulatedFailure` if `step` should fail in this attempt."""
        if step in self.fail_at:
            raise SimulatedFailure(f"{step} is down (payload fail_at)")
        if step in self.flaky and self.attempt == 1:
            raise SimulatedFailure(f"{step} timed out on attempt 1 (payload flaky)")

    def wrap(self, step: str, fn: F) -> F:
        """`fn`, failing first if `step` should fail; still a plain function, so the step
        runs in a thread like any blocking client call."""

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.check(step)
            return fn(*args, **kwargs)

        return guarded  # type: ignore[return-value]


def _names(value: str | Iterable[str] | None) -> frozenset[str]:
    if value is None:
        return frozenset()
    return frozenset([value] if isinstance(value, str) else value)


def _id(prefix: str, *parts: object) -> str:
    """A deterministic id: the same inputs give the same id on every attempt and replay."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8]
    return f"{prefix}_{digest}"


def _effect(line: str, latency: float = 0.02) -> None:
    """Pretend to call a remote system, and note the side effect in the ledger if asked."""
    time.sleep(latency)
    ledger = os.environ.get(LEDGER_ENV)
    if ledger:
        with open(ledger, "a", encoding="utf-8") as f:
            f.write(line + "\n")


# -- orders ----------------------------------------------------------------------------------


def order_request(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The order a payload describes: the sample order, overridden by the payload's keys."""
    keys = ("order_id", "user_id", "email", "items")
    return {k: payload.get(k, SAMPLE_ORDER[k]) for k in keys}


def validate_order(order_id: str, items: list[dict[str, Any]], email: str) -> dict[str, Any]:
    """Check the order and price it. An invalid order is a `ValueError`: the task turns it
    into `NonRetriableError`, because no retry will make it valid."""
    time.sleep(0.01)
    if not items:
        raise ValueError(f"order {order_id} has no items")
    for item in items:
        if item.get("qty", 0) < 1:
            raise ValueError(f"order {order_id}: quantity of {item.get('sku')} must be >= 1")
    total = sum(item["qty"] * item["unit_price_cents"] for item in items)
    return {"id": order_id, "items": items, "total_cents": total, "email": email}


def reserve_inventory(order_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    reservation_id = _id("res", order_id)
    _effect(f"reserve {reservation_id}")
    return {"id": reservation_id, "skus": [item["sku"] for item in items]}


def release_inventory(reservation_id: str) -> dict[str, Any]:
    _effect(f"release {reservation_id}")
    return {"released": reservation_id}


def charge_payment(amount_cents: int, reservation_id: str) -> dict[str, Any]:
    payment_id = _id("pay", reservation_id, amount_cents)
    _effect(f"charge {payment_id} {amount_cents}", latency=0.04)
    return {"id": payment_id, "amount_cents": amount_cents}


def refund_payment(payment_id: str) -> dict[str, Any]:
    _effect(f"refund {payment_id}")
    return {"refunded": payment_id}


def create_shipment(order_id: str, reservation_id: str) -> dict[str, Any]:
    shipment_id = _id("shp", order_id, reservation_id)
    _effect(f"ship {shipment_id}", latency=0.03)
    return {"id": shipment_id, "carrier": "demo-post"}


def send_confirmation(to: str, shipment_id: str) -> dict[str, Any]:
    _effect(f"email {to} {shipment_id}", latency=0.01)
    return {"to": to, "shipment_id": shipment_id}


# -- batches ---------------------------------------------------------------------------------


def batch_items(payload: Mapping[str, Any], default_count: int = 5) -> list[Any]:
    """The payload's `items`, else item ids 1..`count` (default: a handful)."""
    if "items" in payload:
        return list(payload["items"])
    return list(range(1, int(payload.get("count", default_count)) + 1))


def item_payloads(items: Iterable[Any], fail_items: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """One child payload per item; items listed in `fail_items` carry `"fail": true`."""
    failing = set(fail_items)
    return [{"item_id": i, **({"fail": True} if i in failing else {})} for i in items]


def prepare_batch(items: list[Any]) -> dict[str, Any]:
    time.sleep(0.01)
    return {"id": _id("batch", *items), "items": items}


def process_item(item_id: Any, fail: bool = False) -> dict[str, Any]:
    """The unit of work of a child run: a deterministic checksum of the item."""
    time.sleep(0.01)
    if fail:
        raise SimulatedFailure(f"item {item_id} is corrupt (payload fail_items)")
    checksum = hashlib.sha256(str(item_id).encode()).hexdigest()[:6]
    return {"item_id": item_id, "checksum": checksum}


def store_batch_result(batch_id: str, stats: dict[str, Any]) -> dict[str, Any]:
    _effect(f"store {batch_id} {stats['successful']}/{stats['total']}", latency=0.01)
    return {"batch_id": batch_id, **stats}


# -- reports ---------------------------------------------------------------------------------


def report_day(scheduled_at: str | None) -> str:
    """The day a nightly report covers: the one before its slot (`scheduled_at`, ISO), or
    before today for a run triggered by hand. Reads the clock, so call it inside a step."""
    from datetime import UTC, datetime, timedelta

    at = datetime.fromisoformat(scheduled_at) if scheduled_at else datetime.now(UTC)
    return (at - timedelta(days=1)).date().isoformat()


def daily_sales(day: str) -> dict[str, Any]:
    """The day's totals from the (simulated) orders database: the same day, the same totals."""
    seed = int(_id("d", day)[2:], 16)
    _effect(f"query sales {day}", latency=0.02)
    return {"day": day, "orders": 40 + seed % 60, "revenue_cents": 150_000 + seed % 90_000}


def send_report(to: str, totals: dict[str, Any]) -> dict[str, Any]:
    report_id = _id("rpt", to, totals["day"])
    _effect(f"report {to} {report_id}", latency=0.01)
    return {"id": report_id, "to": to}


# -- customers (flow control: one sync per customer at a time) ------------------------------


def pull_customer(customer_id: str, fields: list[str]) -> dict[str, Any]:
    """Read a customer from the source system."""
    record_id = _id("pull", customer_id, *fields)
    _effect(f"pull-start {customer_id}", latency=0.0)
    _effect(f"pull-end {customer_id}", latency=0.1)
    return {"id": record_id, "customer_id": customer_id, "fields": fields}


def push_customer(customer_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """Write it to the CRM, which must never see two writes of one customer at once."""
    _effect(f"push {customer_id}")
    return {"id": _id("push", customer_id, record["id"])}
