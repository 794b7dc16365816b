"""The example tasks (`tasks_example/`), each pattern end to end through real workers.

The repo's `tasks_example` package is copied into a temp project, so these tests run the
shipped examples themselves, over a fresh journal. Side effects are counted through the
examples' ledger (`SYLPHRUN_EXAMPLE_LEDGER`), which the spawned workers inherit.

One engine (supervisor and workers, one journal) serves the whole module: starting one per
test cost each of them a supervisor and two worker processes. The tests need no more
isolation than that: each reads only its own runs (by run id), and waits for them to end,
so the ledger, emptied before each test, holds only that test's side effects. The saga
probes have task modules of their own, so they have an engine of their own.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Engine, Project, make_project

from sylphrun import model
from sylphrun.journal import queries

REPO = Path(__file__).resolve().parent.parent
ORDER_STEPS = [
    "validate",
    "reserve-inventory",
    "process-payment",
    "create-shipment",
    "send-confirmation",
]
SAGA_STEPS = ["reserve-inventory", "charge-payment", "create-shipment", "notify"]


def _forget_examples() -> None:
    for name in [m for m in sys.modules if m == "tasks_example" or m.startswith("tasks_example.")]:
        del sys.modules[name]


# Starts processes through fixtures the `slow` marker's rule does not know by name.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def examples_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with pytest.MonkeyPatch.context() as mp:
        project = make_project(tmp_path_factory.mktemp("examples") / "proj", mp)
        shutil.copytree(
            REPO / "tasks_example",
            project.root / "tasks_example",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        project.write_config(tasks='["tasks_example"]')
        mp.setenv("SYLPHRUN_EXAMPLE_LEDGER", str(project.ledger))
        _forget_examples()  # the repo's copy (or another module's) must not shadow this one
        engine = Engine(project).start()
        try:
            yield engine
        finally:
            engine.stop()
            _forget_examples()


@pytest.fixture
def project(examples_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The module's project (this overrides conftest's `project`), its ledger emptied:
    the previous test's runs have all ended, so nothing writes to it meanwhile."""
    monkeypatch.chdir(examples_engine.project.root)  # where a trigger finds the journal
    examples_engine.project.ledger.write_text("")
    return examples_engine.project


@pytest.fixture
def eng(project: Project, examples_engine: Engine) -> Engine:
    return examples_engine


def ledger(project, verb: str | None = None) -> list[str]:
    """The ledger's verbs in order; with `verb`, the ids of the lines with that verb."""
    lines = project.ledger_lines()
    if verb is None:
        return [line.split()[0] for line in lines]
    return [line.split()[1] for line in lines if line.split()[0] == verb]


def keys(eng, run_id: str) -> list[str]:
    return [s.key for s in eng.steps(run_id)]


def step(eng, run_id: str, key: str) -> model.Step:
    return next(s for s in eng.steps(run_id) if s.key == key)


def test_discovers_the_copied_examples(eng, project):
    assert set(eng.tasks) == {
        "process-order",
        "process-item",
        "batch-process",
        "batch-report",
        "order-saga",
        "order-saga-registered",
        "order-approval",
        "nightly-report",
        "sync-customer",
    }
    assert all(Path(t.source_file).is_relative_to(project.root) for t in eng.tasks.values())


# -- step chaining ---------------------------------------------------------------------------


def test_process_order_chains_five_steps(eng, project):
    result = eng.run("process-order", {})
    assert result.ok, result.error
    steps = eng.steps(result.run_id)
    assert [s.key for s in steps] == ORDER_STEPS
    assert {(s.kind, s.status, s.attempts) for s in steps} == {("step", "completed", 1)}
    # Results flow forward: the output is made of the steps' own results.
    outputs = {s.key: s.output for s in steps}
    assert outputs["validate"]["total_cents"] == 2 * 1250 + 1200
    assert outputs["process-payment"]["amount_cents"] == 3700
    assert result.output == {
        "order_id": "ord-1001",
        "shipment_id": outputs["create-shipment"]["id"],
        "payment_id": outputs["process-payment"]["id"],
    }
    assert ledger(project) == ["reserve", "charge", "ship", "email"]
    logs = queries.logs_of(eng.conn, result.run_id)
    assert any("order ord-1001 totals 3700 cents" in line.message for line in logs)


def test_flaky_payment_is_retried_without_repeating_completed_steps(eng, project):
    result = eng.run("process-order", {"flaky": "process-payment"})
    assert result.ok, result.error
    run = eng.run_record(result.run_id)
    assert run.attempt == 2
    attempts = queries.run_attempts(eng.conn, result.run_id)
    assert [(a.attempt, a.status) for a in attempts] == [(1, "failed")]
    assert "process-payment timed out on attempt 1" in attempts[0].error
    assert keys(eng, result.run_id) == ORDER_STEPS
    # validate and reserve ran once (attempt 1); the payment failed once, then succeeded.
    assert step(eng, result.run_id, "reserve-inventory").attempts == 1
    payment = step(eng, result.run_id, "process-payment")
    assert (payment.status, payment.attempts) == ("completed", 2)
    assert ledger(project) == ["reserve", "charge", "ship", "email"]
    # The log line of the body is written by each attempt, replayed steps or not.
    messages = [line.message for line in queries.logs_of(eng.conn, result.run_id)]
    assert [m.split(":")[0] for m in messages if "totals" in m] == ["attempt 1", "attempt 2"]


def test_persistent_failure_uses_every_attempt_and_charges_once(eng, project):
    result = eng.run("process-order", {"fail_at": "create-shipment"})
    assert result.status == model.FAILED
    assert "create-shipment is down" in result.error
    assert eng.run_record(result.run_id).attempt == 3
    assert keys(eng, result.run_id) == ORDER_STEPS[:4]
    shipment = step(eng, result.run_id, "create-shipment")
    assert (shipment.status, shipment.attempts) == ("failed", 3)
    assert [a.run_attempt for a in shipment.attempt_log] == [1, 2, 3]
    assert ledger(project) == ["reserve", "charge"]


def test_invalid_order_fails_at_once_without_retries(eng, project):
    result = eng.run("process-order", {"items": []})
    assert result.status == model.FAILED
    assert "NonRetriableError" in result.error and "has no items" in result.error
    assert eng.run_record(result.run_id).attempt == 1
    assert keys(eng, result.run_id) == ["validate"]
    assert ledger(project) == []


# -- fan-out / fan-in ------------------------------------------------------------------------


def test_batch_process_fans_out_and_in(eng, project):
    result = eng.run("batch-process", {})
    assert result.ok, result.error
    assert result.output == {"total": 5, "successful": 5, "failed": 0}
    steps = eng.steps(result.run_id)
    assert [s.key for s in steps] == [
        "prepare",
        "batch-trigger:process-item",
        "collect",
        "finalize",
    ]
    trigger = steps[1]
    assert trigger.kind == model.TRIGGER and len(trigger.child_run_ids) == 5
    children = queries.children_of(eng.conn, result.run_id)
    assert sorted(c.id for c in children) == sorted(trigger.child_run_ids)
    assert {(c.task_id, c.status) for c in children} == {("process-item", "completed")}
    assert sorted(c.payload["item_id"] for c in children) == [1, 2, 3, 4, 5]
    # The collect step journaled each child's RunResult, in payload order.
    collected = steps[2].output
    assert [r["run_id"] for r in collected] == trigger.child_run_ids
    assert [r["output"]["item_id"] for r in collected] == [1, 2, 3, 4, 5]
    assert ledger(project) == ["store"]


def test_batch_process_counts_partial_failures(eng):
    result = eng.run("batch-process", {"count": 20, "fail_items": [3, 7, 11]})
    assert result.ok, result.error
    assert result.output == {"total": 20, "successful": 17, "failed": 3}
    children = queries.children_of(eng.conn, result.run_id)
    failed = sorted(c.payload["item_id"] for c in children if c.status == model.FAILED)
    assert failed == [3, 7, 11]
    assert step(eng, result.run_id, "finalize").output["successful"] == 17


def test_batch_report_details_each_item(eng):
    result = eng.run("batch-report", {"items": ["a", "b", "c", "d"], "fail_items": ["b"]})
    assert result.ok, result.error
    report = result.output
    assert (report["total"], report["successful"], report["failed"]) == (4, 3, 1)
    assert [(d["item_id"], d["ok"]) for d in report["details"]] == [
        ("a", True),
        ("b", False),
        ("c", True),
        ("d", True),
    ]
    bad = report["details"][1]
    assert bad["result"] is None and "item b is corrupt" in bad["error"]
    assert report["details"][0]["result"]["item_id"] == "a"
    assert keys(eng, result.run_id) == ["batch-trigger:process-item", "aggregate"]


def test_batch_report_aborts_above_the_failure_rate(eng):
    result = eng.run(
        "batch-report", {"count": 10, "fail_items": [1, 2, 3], "max_failure_rate": 0.2}
    )
    assert result.status == model.FAILED
    assert "3 of 10 items failed" in result.error
    assert eng.run_record(result.run_id).attempt == 1


# -- saga ------------------------------------------------------------------------------------


def test_order_saga_completes_without_compensation(eng, project):
    result = eng.run("order-saga", {})
    assert result.ok, result.error
    assert result.output["success"] is True
    steps = eng.steps(result.run_id)
    assert [(s.key, s.kind) for s in steps] == [(k, "step") for k in SAGA_STEPS]
    assert ledger(project) == ["reserve", "charge", "ship", "email"]


def test_order_saga_compensates_in_reverse_order(eng, project):
    result = eng.run("order-saga", {"fail_at": "create-shipment"})
    assert result.status == model.FAILED
    assert "create-shipment is down" in result.error
    steps = eng.steps(result.run_id)
    assert [(s.key, s.kind, s.status) for s in steps] == [
        ("reserve-inventory", "step", "completed"),
        ("charge-payment", "step", "completed"),
        ("create-shipment", "step", "failed"),
        ("refund-payment", "compensation", "completed"),
        ("release-inventory", "compensation", "completed"),
    ]
    payment_id = steps[1].output["id"]
    reservation_id = steps[0].output["id"]
    assert steps[3].output == {"refunded": payment_id}
    assert steps[4].output == {"released": reservation_id}
    assert ledger(project) == ["reserve", "charge", "refund", "release"]
    assert ledger(project, "refund") == [payment_id]
    warnings = [
        line for line in queries.logs_of(eng.conn, result.run_id) if line.level == "WARNING"
    ]
    assert len(warnings) == 1 and "compensating" in warnings[0].message


def test_order_saga_undoes_only_what_was_done(eng, project):
    result = eng.run("order-saga", {"fail_at": "charge-payment"})
    assert result.status == model.FAILED
    assert [(s.key, s.kind) for s in eng.steps(result.run_id)] == [
        ("reserve-inventory", "step"),
        ("charge-payment", "step"),
        ("release-inventory", "compensation"),
    ]
    assert ledger(project) == ["reserve", "release"]


def test_registered_saga_does_not_compensate_while_a_retry_is_coming(eng, project):
    result = eng.run("order-saga-registered", {"flaky": "create-shipment"})
    assert result.ok, result.error
    assert eng.run_record(result.run_id).attempt == 2
    steps = eng.steps(result.run_id)
    assert [s.key for s in steps] == SAGA_STEPS
    assert all(s.kind == "step" for s in steps)
    assert ledger(project) == ["reserve", "charge", "ship", "email"]


def test_registered_saga_compensates_in_reverse_on_final_failure(eng, project):
    result = eng.run("order-saga-registered", {"fail_at": "create-shipment"})
    assert result.status == model.FAILED
    assert "create-shipment is down" in result.error
    assert eng.run_record(result.run_id).attempt == 3
    steps = eng.steps(result.run_id)
    assert [(s.key, s.kind, s.status) for s in steps] == [
        ("reserve-inventory", "step", "completed"),
        ("charge-payment", "step", "completed"),
        ("create-shipment", "step", "failed"),
        ("compensate:charge-payment", "compensation", "completed"),
        ("compensate:reserve-inventory", "compensation", "completed"),
    ]
    # Each undo received its step's result, and ran once, only after the last attempt:
    # attempts 1 and 2 had a retry coming, so nothing was undone then.
    assert steps[3].output == {"refunded": steps[1].output["id"]}
    assert steps[4].output == {"released": steps[0].output["id"]}
    attempts = queries.run_attempts(eng.conn, result.run_id)
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert steps[3].started_at >= attempts[1].finished_at
    assert [a.run_attempt for a in steps[2].attempt_log] == [1, 2, 3]
    assert ledger(project) == ["reserve", "charge", "refund", "release"]


def test_sync_customer_runs_one_sync_per_customer_at_a_time(eng, project):
    ids = [
        eng.trigger("sync-customer", {"customer_id": c})
        for c in ("acme", "acme", "globex", "acme", "globex")
    ]
    assert all(eng.wait(r, timeout=60).ok for r in ids)
    running: dict[str, int] = {}
    for line in project.ledger_lines():
        verb, customer = line.split()
        if verb in ("pull-start", "pull-end"):
            running[customer] = running.get(customer, 0) + (1 if verb == "pull-start" else -1)
            assert running[customer] <= 1, project.ledger_lines()
    assert ledger(project).count("push") == 5


def test_child_task_runs_alone(eng):
    ok = eng.run("process-item", {"item_id": 7})
    assert ok.ok and ok.output["item_id"] == 7
    bad = eng.run("process-item", {"item_id": 3, "fail": True})
    assert bad.status == model.FAILED and "item 3 is corrupt" in bad.error


# -- saga edge cases beyond the examples (engine bugs found while porting them) --------------

SAGA_PROBES = """
import asyncio
from ledger_helper import record
from sylphrun import Retry, task

def charge():
    record(LEDGER, "charge")
    return {"id": "pay_1"}

def refund(payment):
    record(LEDGER, "refund " + payment["id"])

def ship():
    raise RuntimeError("carrier down")

@task(id="late-failure", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.1))
async def late_failure(payload, ctx):
    if ctx.attempt == 2:
        # Non-durable code before the first step (a config fetch; or code changed by a
        # hot reload between attempts) fails the last attempt before `charge` is replayed.
        raise RuntimeError("pricing service unavailable")
    await ctx.step.run("charge", charge, compensate=refund)
    await ctx.step.run("ship", ship)

def release():
    record(LEDGER, "release")

@task(id="parallel-undo")
async def parallel_undo(payload, ctx):
    await ctx.step.run("reserve", lambda: {"id": "res_1"})
    try:
        await ctx.step.run("ship", ship)
    except Exception:
        async def undo_reserve():
            await ctx.step.run("release-inventory", release)
        async def notify_ops():
            await ctx.step.run("notify-ops", lambda: "paged")
        await asyncio.gather(undo_reserve(), notify_ops())
        raise
"""


@pytest.fixture(scope="module")
def probe_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine of its own (not the examples' `project`): the probes' tasks are in
    `tasks/`. Each probe reads only its own run, and the ledger emptied before it."""
    with pytest.MonkeyPatch.context() as mp:
        probe = make_project(tmp_path_factory.mktemp("probes") / "proj", mp)
        probe.write_tasks(SAGA_PROBES)
        engine = Engine(probe).start()
        try:
            yield engine
        finally:
            engine.stop()


@pytest.fixture
def probe(probe_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.chdir(probe_engine.project.root)
    probe_engine.project.ledger.write_text("")
    return probe_engine


def test_compensation_registered_in_an_earlier_attempt_still_runs(probe):
    result = probe.run("late-failure")
    assert result.status == model.FAILED
    assert probe.project.ledger_lines() == ["charge", "refund pay_1"]


def test_undo_steps_in_gathered_helpers_are_compensation(probe):
    # Regression (fixed in 1a46e7c): tasks that gather creates in the except block do not
    # inherit sys.exc_info(); the worker's task factory now carries "compensating" over.
    result = probe.run("parallel-undo")
    assert result.status == model.FAILED
    kinds = {s.key: s.kind for s in probe.steps(result.run_id)}
    assert kinds["release-inventory"] == kinds["notify-ops"] == model.COMPENSATION


# -- a schedule --------------------------------------------------------------------------------


def test_nightly_report_covers_the_day_before_its_slot(eng, project):
    assert eng.tasks["nightly-report"].schedule.describe() == "0 3 * * * (Europe/Paris)"
    result = eng.run("nightly-report", {"scheduled_at": "2026-11-29T02:00:00Z"})
    assert result.ok, result.error
    assert result.output["day"] == "2026-11-28" and result.output["orders"] >= 40
    assert keys(eng, result.run_id) == ["pick-day", "gather", "send"]
    assert ledger(project) == ["query", "report"]
