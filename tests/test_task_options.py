"""The task options the README documents, as a user meets them: `timeout` bounds
execution time and restarts at every resume (issue 11 item 9), `concurrency` caps the
runs of a task executing at once, and a task body re-executes on every resume while its
`ctx.log` lines outside steps are journaled once per attempt (issue 12 item 7)."""

from __future__ import annotations

from sylphrun import model
from sylphrun.journal import queries

TASKS = """
import asyncio
from ledger_helper import record
from sylphrun import Retry, task

@task(id="naps", timeout=1.5)
async def naps(payload, ctx):
    record(LEDGER, "body")
    ctx.log.info("starting")
    await ctx.step.run("a", lambda: 1)
    await ctx.step.sleep("nap", 1.0)
    await ctx.step.sleep("nap-again", 1.0)
    return await ctx.step.run("b", lambda: 2)

@task(id="chatty", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def chatty(payload, ctx):
    record(LEDGER, "body")
    ctx.log.info("starting")
    for _ in range(2):
        ctx.log.info("polling")
    await ctx.step.sleep("nap", 0.3)
    ctx.log.info("woke")
    async def inside():
        ctx.log.info("in a step")
    await ctx.step.run("work", inside)
    await ctx.step.sleep("nap-again", 0.3)
    if ctx.attempt == 1:
        raise RuntimeError("once")

@task(id="overruns", timeout=0.5,
      retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def overruns(payload, ctx):
    record(LEDGER, "attempt " + str(ctx.attempt))
    async def slow():
        await asyncio.sleep(30)
    await ctx.step.run("slow", slow)

@task(id="one-at-a-time", concurrency=1)
async def one_at_a_time(payload, ctx):
    async def hold():
        record(LEDGER, "start " + str(payload["i"]))
        await asyncio.sleep(0.3)
        record(LEDGER, "end " + str(payload["i"]))
    await ctx.step.run("hold", hold)
"""


def test_timeout_bounds_one_execution_and_restarts_at_every_resume(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("naps", timeout=30)
    # 2 s asleep in a run with a 1.5 s timeout: time suspended does not count.
    assert result.ok, result.error
    run = eng.run_record(result.run_id)
    assert run.finished_at - run.started_at > 1.5
    assert project.ledger_lines() == ["body"] * 3  # three executions, each from the top


def test_log_lines_outside_steps_are_journaled_once_per_attempt(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("chatty", timeout=30)
    assert result.ok and eng.run_record(result.run_id).attempt == 2, result.error
    # Attempt 1 executed the body 3 times (two sleeps), attempt 2 once (its steps done)...
    assert project.ledger_lines() == ["body"] * 4
    # ...but its lines are journaled once per attempt, repeated lines counted; the step,
    # done in attempt 1, is not run again, nor is its line.
    lines = [x.message for x in queries.logs_of(eng.conn, result.run_id) if x.level == "INFO"]
    once = ["starting", "polling", "polling", "woke"]
    assert lines == once + ["in a step"] + once, lines


def test_a_task_timeout_says_it_is_execution_time(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("overruns", timeout=30)
    assert result.status == model.FAILED
    assert result.error.startswith(
        "TaskTimeout: task 'overruns' exceeded its timeout of 0.5 s of execution time "
        "(the clock restarts at every resume"
    ), result.error
    # Retried like any other failure, as the README says.
    assert project.ledger_lines() == ["attempt 1", "attempt 2"]


def test_concurrency_runs_one_at_a_time(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    ids = [eng.trigger("one-at-a-time", {"i": i}) for i in range(3)]
    assert all(eng.wait(i, timeout=30).ok for i in ids)
    lines = project.ledger_lines()
    # Never two started without the first ending: start, end, start, end...
    assert [x.split()[0] for x in lines] == ["start", "end"] * 3, lines


def test_the_readme_config_example_is_valid_and_says_the_defaults(tmp_path):
    import re
    from pathlib import Path

    from sylphrun.config import load_config

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1]
    [example] = re.findall(r"```toml\n(.*?)```", section, re.S)[:1]
    (tmp_path / "sylphrun.toml").write_text(example)
    config = load_config(tmp_path)
    assert config.tasks == ["tasks"] and config.workers == 2
    # The values it shows as the defaults are the defaults.
    (tmp_path / "sylphrun.toml").write_text('tasks = ["tasks"]\n')
    default = load_config(tmp_path)
    assert (config.slots, config.max_step_output) == (default.slots, default.max_step_output)
