"""Fan-out and fan-in through real workers: batch triggers, partial failures, suspension
of waiting parents, trigger_and_wait, idempotent triggers, and durable sleep."""

from __future__ import annotations

import time

from conftest import step_by_key, wait_until

from sylphrun import model
from sylphrun.journal import queries

TASKS = """
import asyncio
from ledger_helper import record
from sylphrun import task, Retry, NonRetriableError

@task(id="child")
async def child(payload, ctx):
    i = payload["i"]
    if i % 7 == 0:
        raise NonRetriableError(f"child {i} fails")
    async def double():
        return i * 2
    return await ctx.step.run("double", double)

@task(id="parent")
async def parent(payload, ctx):
    handles = await child.batch_trigger([{"i": i} for i in range(payload["n"])])
    async def collect():
        return await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))
    results = await ctx.step.run("collect", collect)
    ok = [r for r in results if r["ok"]]
    return {"results": results if payload.get("full") else results[:8],
            "ok": len(ok), "failed": len(results) - len(ok),
            "sum": sum(r["output"] for r in ok)}

@task(id="waiter")
async def waiter(payload, ctx):
    one = await child.trigger_and_wait({"i": payload["i"]})
    return {"ok": one.ok, "output": one.output, "error": one.error, "run_id": one.run_id}

@task(id="noted-child")
async def noted_child(payload, ctx):
    record(LEDGER, f"child:{payload['i']}")
    return payload["i"]

@task(id="retried-parent", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def retried_parent(payload, ctx):
    handles = await noted_child.batch_trigger([{"i": i} for i in range(5)])
    async def collect():
        return await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))
    results = await ctx.step.run("collect", collect)
    if ctx.attempt == 1:
        raise RuntimeError("fail after the children ran")
    return {"attempt": ctx.attempt, "outputs": [r["output"] for r in results]}

@task(id="step-trigger")
async def step_trigger(payload, ctx):
    async def spawn():
        import os
        handles = await noted_child.batch_trigger([{"i": 10 + i} for i in range(3)])
        if not os.path.exists(LEDGER + ".tried"):
            open(LEDGER + ".tried", "w").close()
            raise RuntimeError("flaky after triggering")
        return handles.run_ids
    retry = Retry(max_attempts=3, min_delay=0.05, max_delay=0.05)
    ids = await ctx.step.run("spawn", spawn, retry=retry)
    return ids

@task(id="fan-in-retry")
async def fan_in_retry(payload, ctx):
    async def collect():
        child_result = await noted_child.trigger_and_wait({"i": 99})  # parks the step
        if "collect-failed" not in open(LEDGER).read().split():
            record(LEDGER, "collect-failed")
            raise ConnectionError("flaky fan-in")
        return child_result.output
    return await ctx.step.run("collect", collect,
                              retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))

@task(id="sleeper")
async def sleeper(payload, ctx):
    await ctx.step.run("before", record, LEDGER, "before")
    await ctx.step.sleep("nap", payload["seconds"])
    await ctx.step.run("after", record, LEDGER, "after")
    return "rested"
"""


def test_fan_out_200_children_with_partial_failures(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("parent", {"n": 200, "full": True}, timeout=60)
    assert result.ok, result.error
    failing = [i for i in range(200) if i % 7 == 0]
    assert result.output["failed"] == len(failing) == 29
    assert result.output["ok"] == 171
    assert result.output["sum"] == sum(2 * i for i in range(200) if i % 7)
    results = result.output["results"]
    # The collect step journals RunResults as JSON objects, in payload order.
    assert all(set(r) == {"ok", "status", "output", "error", "run_id"} for r in results)
    assert results[0]["ok"] is False and results[0]["status"] == model.FAILED
    assert "child 0 fails" in results[0]["error"] and results[0]["output"] is None
    assert results[1] == {
        "ok": True,
        "status": model.COMPLETED,
        "output": 2,
        "error": None,
        "run_id": results[1]["run_id"],
    }
    children = queries.children_of(eng.conn, result.run_id)
    assert [c.id for c in sorted(children, key=lambda c: c.payload["i"])] == [
        r["run_id"] for r in results
    ]
    run = eng.run_record(result.run_id)
    assert (run.children_total, run.children_done, run.children_failed) == (200, 200, 29)
    steps = eng.steps(result.run_id)
    assert [(s.key, s.kind) for s in steps] == [
        ("batch-trigger:child", model.TRIGGER),
        ("collect", model.STEP),
    ]
    assert len(steps[0].child_run_ids) == 200
    # The fan-in step was parked with its run, not interrupted: one attempt, no in-doubt log.
    assert (steps[1].attempts, steps[1].attempt_log) == (1, [])


def test_fan_out_1000_children_on_two_workers_does_not_deadlock(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    started = time.monotonic()
    result = eng.run("parent", {"n": 1000}, timeout=90)
    assert result.ok, result.error
    assert result.output["ok"] + result.output["failed"] == 1000
    assert result.output["failed"] == len([i for i in range(1000) if i % 7 == 0])
    run = eng.run_record(result.run_id)
    assert (run.children_total, run.children_done) == (1000, 1000)
    # The parent suspended (freeing its slot) while its children ran.
    kinds = [
        e[3] for e in queries.events_since(eng.conn, 0, limit=1_000_000) if e[2] == result.run_id
    ]
    assert "run.waiting" in kinds
    print(f"1000 children in {time.monotonic() - started:.1f} s")


def test_trigger_and_wait_inside_a_run_is_a_wait_step(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("waiter", {"i": 4})
    assert result.ok, result.error
    assert result.output["ok"] is True and result.output["output"] == 8
    steps = eng.steps(result.run_id)
    assert [(s.key, s.kind, s.status) for s in steps] == [
        ("trigger:child", model.TRIGGER, model.STEP_COMPLETED),
        ("wait:child", model.WAIT, model.STEP_COMPLETED),
    ]
    assert steps[0].child_run_ids == [result.output["run_id"]]
    assert steps[1].output["run_id"] == result.output["run_id"]
    failed = eng.run("waiter", {"i": 7})
    assert failed.ok, failed.error  # the parent sees the child's failure as a value
    assert failed.output["ok"] is False and "child 7 fails" in failed.output["error"]


def test_retried_parent_does_not_create_its_children_twice(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("retried-parent")
    assert result.ok, result.error
    assert result.output == {"attempt": 2, "outputs": [0, 1, 2, 3, 4]}
    assert len(queries.children_of(eng.conn, result.run_id)) == 5
    run = eng.run_record(result.run_id)
    assert (run.children_total, run.children_done) == (5, 5)
    assert sorted(project.ledger_lines()) == [f"child:{i}" for i in range(5)]


def test_trigger_inside_a_retried_step_does_not_duplicate_children(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("step-trigger")
    assert result.ok, result.error
    assert step_by_key(eng, result.run_id, "spawn").attempts == 2
    children = queries.children_of(eng.conn, result.run_id)
    assert sorted(c.id for c in children) == sorted(result.output)
    assert eng.run_record(result.run_id).children_total == 3
    wait_until(lambda: len(project.ledger_lines()) >= 3, message="children to run")
    time.sleep(0.2)
    assert sorted(project.ledger_lines()) == ["child:10", "child:11", "child:12"]


def test_idempotency_key_outside_a_run_returns_the_same_run(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    first = eng.trigger("noted-child", {"i": 1}, idempotency_key="order-42")
    again = eng.trigger("noted-child", {"i": 1}, idempotency_key="order-42")
    other = eng.trigger("noted-child", {"i": 1}, idempotency_key="order-43")
    assert first == again != other
    assert eng.wait(first).ok and eng.wait(other).ok
    after = eng.trigger("noted-child", {"i": 1}, idempotency_key="order-42")
    assert after == first
    time.sleep(0.2)
    assert project.ledger_lines() == ["child:1", "child:1"]
    assert eng.run_record(first).idempotency_key == "order-42"


def test_durable_sleep_suspends_without_holding_a_worker(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    started = time.monotonic()
    run_id = eng.trigger("sleeper", {"seconds": 1.0})
    wait_until(lambda: eng.run_record(run_id).status == model.WAITING, message="the run to sleep")
    assert queries.lease_holder(eng.conn, run_id) is None
    nap = step_by_key(eng, run_id, "nap")
    assert (nap.kind, nap.status) == (model.SLEEP, model.STEP_WAITING)
    result = eng.wait(run_id)
    assert result.ok and result.output == "rested"
    assert time.monotonic() - started >= 1.0
    assert project.ledger_lines() == ["before", "after"]
    nap = step_by_key(eng, run_id, "nap")
    assert nap.status == model.STEP_COMPLETED


def test_a_step_parked_on_a_child_keeps_its_retries(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("fan-in-retry")
    assert result.ok, result.error
    assert result.output == 99
    collect = step_by_key(eng, result.run_id, "collect")
    # Parking (waiting on the child) is not an attempt; the one failure is.
    assert collect.attempts == 2
    assert [(a.attempt, a.status) for a in collect.attempt_log] == [(1, "failed")]
    assert len(queries.children_of(eng.conn, result.run_id)) == 1
