"""Compensation: registered undos run in reverse order, exactly once, only when no retry
is left; the seed's try/except style marks its except-block steps as compensation."""

from __future__ import annotations

from conftest import ledger_count, step_by_key

from sylphrun import model
from sylphrun.journal import queries

TASKS = """
from ledger_helper import record
from sylphrun import task, Retry

def do(name):
    record(LEDGER, name)
    return {"id": name}

def undo(name):
    def run(result):
        record(LEDGER, f"undo:{name}:{result['id']}")
        return f"undid {name}"
    return run

def ship(attempt):
    record(LEDGER, f"ship-failed:{attempt}")
    raise RuntimeError("carrier down")

@task(id="order", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def order(payload, ctx):
    await ctx.step.run("reserve", do, "reserve", compensate=undo("reserve"))
    await ctx.step.run("charge", do, "charge", compensate=undo("charge"))
    await ctx.step.run("ship", ship, ctx.attempt)
    return "shipped"

def flaky_refund(result):
    n = sum(1 for line in open(LEDGER) if line.startswith("refund-try"))
    record(LEDGER, f"refund-try:{n + 1}")
    if n == 0:
        raise ConnectionError("refund API flaked")
    return "refunded"

@task(id="flaky-undo")
async def flaky_undo(payload, ctx):
    await ctx.step.run("charge", do, "charge", compensate=flaky_refund)
    await ctx.step.run("ship", ship, ctx.attempt)

def refund(result):
    record(LEDGER, f"refund:{result['id']}")

@task(id="fails-earlier", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def fails_earlier(payload, ctx):
    if ctx.attempt == 2:
        raise RuntimeError("config gone")  # before the charge step is replayed
    await ctx.step.run("charge", do, "charge", compensate=refund)
    raise RuntimeError("carrier down")

def boom():
    raise ValueError("card declined")

@task(id="seed-saga")
async def seed_saga(payload, ctx):
    await ctx.step.run("reserve", do, "reserve")
    try:
        await ctx.step.run("charge", boom)
    except Exception:
        await ctx.step.run("release", do, "release")
        return {"compensated": True}
    return {"compensated": False}
"""


def test_compensations_run_in_reverse_once_only_when_no_retry_is_left(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("order")
    assert result.status == model.FAILED
    assert "carrier down" in result.error and "compensation(s) failed" not in result.error
    # The ledger is ordered: attempt 1's failure is followed by attempt 2, not by an undo.
    assert project.ledger_lines() == [
        "reserve",
        "charge",
        "ship-failed:1",
        "ship-failed:2",
        "undo:charge:charge",
        "undo:reserve:reserve",
    ]
    steps = {s.key: s for s in eng.steps(result.run_id)}
    comp = [s for s in eng.steps(result.run_id) if s.kind == model.COMPENSATION]
    assert [s.key for s in comp] == ["compensate:charge", "compensate:reserve"]
    assert all(s.status == model.STEP_COMPLETED and s.attempts == 1 for s in comp)
    assert steps["compensate:charge"].output == "undid charge"
    # Both undos ran after the last attempt had failed, never while the retry was due.
    attempts = queries.run_attempts(eng.conn, result.run_id)
    assert [a.attempt for a in attempts] == [1, 2]
    assert all(s.started_at >= attempts[0].finished_at for s in comp)
    assert steps["ship"].attempts == 2


def test_a_compensation_that_fails_once_is_retried(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("flaky-undo")
    assert result.status == model.FAILED
    assert "carrier down" in result.error and "compensation(s) failed" not in result.error
    assert [x for x in project.ledger_lines() if x.startswith("refund-try")] == [
        "refund-try:1",
        "refund-try:2",
    ]
    comp = step_by_key(eng, result.run_id, "compensate:charge")
    assert (comp.kind, comp.status, comp.attempts) == (model.COMPENSATION, model.STEP_COMPLETED, 2)
    assert [a.status for a in comp.attempt_log] == ["failed"]
    assert "refund API flaked" in comp.attempt_log[0].error
    assert ledger_count(project, "ship-failed:1") == 1


def test_seed_style_except_block_steps_are_compensation(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("seed-saga")
    assert result.ok, result.error
    assert result.output == {"compensated": True}
    steps = eng.steps(result.run_id)
    assert [(s.key, s.kind, s.status) for s in steps] == [
        ("reserve", model.STEP, model.STEP_COMPLETED),
        ("charge", model.STEP, model.STEP_FAILED),
        ("release", model.COMPENSATION, model.STEP_COMPLETED),
    ]
    assert project.ledger_lines() == ["reserve", "release"]


def test_an_undo_from_an_earlier_attempt_runs_when_the_last_fails_before_its_step(
    project, engine_factory
):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("fails-earlier")
    assert result.status == model.FAILED
    assert "config gone" in result.error and "compensation(s) failed" not in result.error
    assert project.ledger_lines() == ["charge", "refund:charge"]
    comp = step_by_key(eng, result.run_id, "compensate:charge")
    assert (comp.kind, comp.status) == (model.COMPENSATION, model.STEP_COMPLETED)
