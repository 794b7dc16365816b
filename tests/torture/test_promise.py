"""The core promise beyond kill -9 (issue 11): a completed step never runs again, and an
undone effect is never built on. Each case is one way the promise broke before.

Parallel siblings (items 1-2): `asyncio.gather` raises the first failure at once and
leaves the other steps running. The tasks below order the race with marker files, not
sleeps: the slow sibling waits until the other has failed, then goes on a little, so
without the drain the run's outcome is settled while it is still in flight.
"""

from __future__ import annotations

import pytest
from conftest import ledger_count, step_by_key

from sylphrun import model

SIBLINGS = '''
import asyncio, os, time
from ledger_helper import record
from sylphrun import task, Retry, NonRetriableError

HERE = os.path.dirname(LEDGER)

def mark(name):
    open(os.path.join(HERE, name), "w").close()

def marked(name):
    return os.path.exists(os.path.join(HERE, name))

async def await_mark(name):
    while not marked(name):
        await asyncio.sleep(0.01)

async def slow_charge(tag):
    await await_mark(f"{tag}-failed")
    await asyncio.sleep(0.5)  # the failed sibling's outcome would be settled by now
    record(LEDGER, "charge")
    return {"id": tag}

def slow_charge_sync(tag):
    while not marked(f"{tag}-failed"):
        time.sleep(0.01)
    time.sleep(0.5)
    record(LEDGER, "charge")
    return {"id": tag}

async def flaky_charge(tag):
    if not marked(f"{tag}-charge-tried"):
        mark(f"{tag}-charge-tried")
        record(LEDGER, "charge-failed")
        raise ConnectionError("bank busy")
    return await slow_charge(tag)

def refund(result):
    record(LEDGER, f"refund:{result['id']}")

async def reserve(tag, exc):
    await asyncio.sleep(0.2)
    if exc == "timeout" and marked(f"{tag}-failed"):
        return "reserved"  # only the first attempt times out
    mark(f"{tag}-failed")
    record(LEDGER, f"reserve-{exc}")
    if exc == "timeout":
        raise TimeoutError("warehouse slow")
    raise NonRetriableError("out of stock")

CHARGES = {"async": slow_charge, "thread": slow_charge_sync, "flaky": flaky_charge}

@task(id="sibling-fails")
async def sibling_fails(payload, ctx):
    tag = payload["charge"]
    fn = CHARGES[tag]
    retry = Retry(max_attempts=3, min_delay=0.05, max_delay=0.05) if tag == "flaky" else None
    await asyncio.gather(
        ctx.step.run("charge", fn, tag, compensate=refund, retry=retry),
        ctx.step.run("reserve", reserve, tag, "fatal"),
    )
    return "unreachable"

async def notify(tag):
    record(LEDGER, "notify")

@task(id="branch-goes-on")
async def branch_goes_on(payload, ctx):
    async def pay():
        await ctx.step.run("charge", slow_charge, "branch", compensate=refund)
        await ctx.step.run("notify", notify, "branch")  # the run has failed by now
    await asyncio.gather(pay(), ctx.step.run("reserve", reserve, "branch", "fatal"))

@task(id="sibling-retries", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def sibling_retries(payload, ctx):
    tag = payload["charge"]
    charge, reserved = await asyncio.gather(
        ctx.step.run("charge", CHARGES[tag], tag, compensate=refund),
        ctx.step.run("reserve", reserve, tag, "timeout"),
    )
    return {"charge": charge, "reserve": reserved, "attempt": ctx.attempt}
'''


@pytest.mark.parametrize("charge", ["async", "thread", "flaky"])
def test_a_sibling_completing_after_the_run_failed_is_compensated(
    project, engine_factory, charge
):
    project.write_tasks(SIBLINGS)
    eng = engine_factory().start()
    result = eng.run("sibling-fails", {"charge": charge})
    assert result.status == model.FAILED
    assert "out of stock" in result.error and "compensation(s) failed" not in result.error
    # The run ended only after `charge` completed, so its refund ran, once, after it.
    assert ledger_count(project, "charge") == 1
    assert ledger_count(project, f"refund:{charge}") == 1
    lines = project.ledger_lines()
    assert lines.index("charge") < lines.index(f"refund:{charge}")
    assert step_by_key(eng, result.run_id, "charge").status == model.STEP_COMPLETED
    undo = step_by_key(eng, result.run_id, "compensate:charge")
    assert (undo.kind, undo.status) == (model.COMPENSATION, model.STEP_COMPLETED)


@pytest.mark.parametrize("charge", ["async", "thread"])
def test_a_run_level_retry_waits_for_a_sibling_still_running(project, engine_factory, charge):
    project.write_tasks(SIBLINGS)
    eng = engine_factory().start()
    result = eng.run("sibling-retries", {"charge": charge})
    assert result.ok, result.error
    assert result.output == {"charge": {"id": charge}, "reserve": "reserved", "attempt": 2}
    # Attempt 2 began after attempt 1's `charge` was journaled: it replayed it.
    assert ledger_count(project, "charge") == 1
    assert ledger_count(project, f"refund:{charge}") == 0
    step = step_by_key(eng, result.run_id, "charge")
    assert (step.status, step.attempts) == (model.STEP_COMPLETED, 1)


def test_a_branch_starts_no_new_step_once_the_run_has_failed(project, engine_factory):
    project.write_tasks(SIBLINGS)
    eng = engine_factory().start()
    result = eng.run("branch-goes-on")
    assert result.status == model.FAILED and "out of stock" in result.error
    # `charge` was in flight, so it finished and was undone; `notify` came after the
    # failure had settled the run and was never started.
    assert project.ledger_lines() == ["reserve-fatal", "charge", "refund:branch"]
    assert "notify" not in {s.key for s in eng.steps(result.run_id)}
