"""`tasks_example/approval.py` end to end: started by an event, approved by another, and
the timeout and `cancel_on` paths."""

from __future__ import annotations

import json

from sylphrun import model
from tests import test_examples
from tests.conftest import wait_until

# The fixtures: the shipped examples on real workers, one engine for this module's tests
# (each sends events naming its own order ids, so neither sees the other's runs).
examples_engine = test_examples.examples_engine
project = test_examples.project
eng = test_examples.eng
pytestmark = test_examples.pytestmark


def send(project, *args: str) -> dict:
    out = project.cli("send", *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_an_order_created_event_starts_a_run_that_an_approval_completes(eng, project):
    [run_id] = send(project, "order.created", "--data", '{"order_id": "ord-7"}')["triggered_runs"]
    # Sent before the run reached its wait, it still counts.
    send(project, "order.approved", "--data", '{"order_id": "ord-7", "by": "ann"}')
    result = eng.wait(run_id, timeout=60)
    assert result.ok and result.output["status"] == "approved"
    assert result.output["approved_by"] == "ann"
    assert [s.key for s in eng.steps(run_id)] == [
        "reserve-inventory",
        "approval",
        "charge-payment",
        "create-shipment",
    ]


def test_an_unanswered_order_expires_and_a_cancelled_one_stops(eng, project):
    [late] = send(
        project, "order.created", "--data", '{"order_id": "ord-8", "approval_timeout": 0.5}'
    )["triggered_runs"]
    result = eng.wait(late, timeout=60)
    assert result.output["status"] == "expired"
    [run_id] = send(project, "order.created", "--data", '{"order_id": "ord-9"}')["triggered_runs"]
    wait_until(
        lambda: eng.run_record(run_id).status == model.WAITING,
        timeout=60,
        message="the order to wait for its approval",
    )
    assert send(project, "order.cancelled", "--data", '{"order_id": "ord-9"}')[
        "cancelled_runs"
    ] == [run_id]
    assert eng.run_record(run_id).status == model.CANCELLED
    assert [s.status for s in eng.steps(run_id)][-1] == model.STEP_CANCELLED
