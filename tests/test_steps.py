"""Step chaining, memoization and retries through real worker processes."""

from __future__ import annotations

from sylphrun import model

CHAIN = """
from ledger_helper import record
from sylphrun import task, Retry

def side_effect(name, value):
    record(LEDGER, name)
    return value

@task(id="chain", retry=Retry(max_attempts=3, min_delay=0.05, max_delay=0.1))
async def chain(payload, ctx):
    a = await ctx.step.run("validate", side_effect, "validate", {"id": 1})
    b = await ctx.step.run("charge", side_effect, "charge", a["id"] + 1)
    if ctx.attempt == 1 and payload.get("fail_once"):
        await ctx.step.run("flaky", lambda: 1 / 0)
    c = await ctx.step.run("fulfill", side_effect, "fulfill", b + 1)
    return {"result": c, "attempt": ctx.attempt}
"""


def test_chain_completes_and_journals_each_step(project, engine_factory):
    project.write_tasks(CHAIN)
    eng = engine_factory().start()
    result = eng.run("chain")
    assert result.ok, result.error
    assert result.output == {"result": 3, "attempt": 1}
    steps = eng.steps(result.run_id)
    assert [s.key for s in steps] == ["validate", "charge", "fulfill"]
    assert all(s.status == model.STEP_COMPLETED for s in steps)
    assert project.ledger_lines() == ["validate", "charge", "fulfill"]


def test_retry_skips_completed_steps(project, engine_factory):
    project.write_tasks(CHAIN)
    eng = engine_factory().start()
    result = eng.run("chain", {"fail_once": True})
    assert result.ok, result.error
    assert result.output["attempt"] == 2
    # Steps completed in attempt 1 ran exactly once; the failing step failed once.
    assert project.ledger_lines() == ["validate", "charge", "fulfill"]
    flaky = next(s for s in eng.steps(result.run_id) if s.key == "flaky")
    assert flaky.status == model.STEP_FAILED
    assert "ZeroDivisionError" in flaky.error
