"""Edge cases found in review, each through real workers: a saga that compensated is not
retried, nested waits suspend, waiting on a missing run fails, only step failures make
compensation, a step cancelled by user code is not left running, and retrying a cancelled
fan-out revives its children."""

from __future__ import annotations

from sylphrun import model
from sylphrun.journal import queries
from tests.conftest import wait_until

TASKS = """
import asyncio
import time
from ledger_helper import record
from sylphrun import task, Retry

@task(id="saga-retry", retry=Retry(max_attempts=3, min_delay=0.05, max_delay=0.1))
async def saga_retry(payload, ctx):
    await ctx.step.run("charge", lambda: record(LEDGER, "charge") or "pay_1")
    try:
        await ctx.step.run("ship", lambda: 1 / 0)
    except Exception:
        await ctx.step.run("refund", lambda: record(LEDGER, "refund"))
        raise
    record(LEDGER, "shipped")

@task(id="leaf")
async def leaf(payload, ctx):
    return await ctx.step.run("value", lambda: payload["n"] * 10)

@task(id="nested")
async def nested(payload, ctx):
    async def outer():
        async def inner():
            handle = await leaf.trigger({"n": 4})
            return (await handle.wait_for_completion()).output
        return await ctx.step.run("inner", inner)
    return await ctx.step.run("outer", outer)

@task(id="ghost-wait")
async def ghost_wait(payload, ctx):
    from sylphrun.trigger import RunHandle
    return (await RunHandle("run_doesnotexist", "leaf").wait_for_completion()).output

CACHE = {}

@task(id="cache-miss")
async def cache_miss(payload, ctx):
    try:
        return CACHE["k"]
    except KeyError:
        return await ctx.step.run("fetch", lambda: "fetched")

@task(id="impatient")
async def impatient(payload, ctx):
    async def slow():
        await asyncio.sleep(5)
    try:
        await asyncio.wait_for(ctx.step.run("slow", slow), 0.2)
    except asyncio.TimeoutError:
        pass
    return "moved on"

@task(id="fan-parent")
async def fan_parent(payload, ctx):
    handles = await napper.batch_trigger([{"i": i} for i in range(3)])
    async def collect():
        return await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))
    results = await ctx.step.run("collect", collect)
    return [r["status"] for r in results]

@task(id="napper")
async def napper(payload, ctx):
    await ctx.step.sleep("nap", 1.0)
    return payload["i"]
"""


def test_a_saga_whose_except_block_compensated_is_not_retried(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("saga-retry")
    assert result.status == model.FAILED
    assert eng.run_record(result.run_id).attempt == 1
    assert project.ledger_lines() == ["charge", "refund"]
    logs = [line.message for line in queries.logs_of(eng.conn, result.run_id)]
    assert any("not retried" in m for m in logs)


def test_a_step_waiting_inside_another_step_suspends_and_resumes(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("nested", timeout=20)
    assert result.ok, result.error
    assert result.output == 40


def test_waiting_on_a_run_that_does_not_exist_fails_the_run(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("ghost-wait", timeout=10)
    assert result.status == model.FAILED
    assert "run_doesnotexist" in result.error


def test_a_step_in_an_unrelated_except_block_is_an_ordinary_step(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("cache-miss")
    assert result.ok
    assert [(s.key, s.kind) for s in eng.steps(result.run_id)] == [("fetch", model.STEP)]


def test_a_step_cancelled_by_user_code_is_journaled_as_interrupted(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("impatient")
    assert result.ok and result.output == "moved on"
    [slow] = eng.steps(result.run_id)
    assert slow.status == model.STEP_INTERRUPTED
    assert "cancelled" in slow.attempt_log[-1].error


def test_retrying_a_cancelled_fan_out_revives_its_children(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    parent = eng.trigger("fan-parent")
    wait_until(
        lambda: (
            len(queries.children_of(eng.conn, parent)) == 3
            and all(c.status == "waiting" for c in queries.children_of(eng.conn, parent))
        ),
        message="children asleep",
    )
    from sylphrun import actions

    assert len(actions.cancel_run(eng.conn, parent)) == 4
    actions.retry_run(eng.conn, parent)
    result = eng.wait(parent, timeout=20)
    assert result.ok, result.error
    assert result.output == ["completed"] * 3
    assert eng.run_record(parent).children_done == 3
