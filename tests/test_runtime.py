"""Task limits and step semantics through real workers: concurrency, timeouts (async and
stuck in a thread), non-JSON results, plain `def` tasks, parallel step keys, and
`ctx.step.idempotency_key`."""

from __future__ import annotations

import time

from conftest import step_by_key, wait_until

from sylphrun import model, trigger
from sylphrun.journal import RunSpec

TASKS = """
import asyncio
import time
from ledger_helper import record
from sylphrun import task, Retry

def timed(i):
    record(LEDGER, f"start {i} {time.time():.6f}")
    time.sleep(0.15)
    record(LEDGER, f"end {i} {time.time():.6f}")
    return i

@task(id="serial", concurrency=1)
async def serial(payload, ctx):
    return await ctx.step.run("work", timed, payload["i"])

@task(id="slow-async", timeout=0.5)
async def slow_async(payload, ctx):
    await ctx.step.run("quick", lambda: 1)
    async def forever():
        await asyncio.sleep(30)
    await ctx.step.run("forever", forever)
    return "unreachable"

def stuck():
    record(LEDGER, "stuck")
    time.sleep(60)

@task(id="stuck-thread", timeout=0.5)
async def stuck_thread(payload, ctx):
    await ctx.step.run("quick", lambda: 1)
    await ctx.step.run("stuck", stuck)
    return "unreachable"

@task(id="stuck-body", timeout=0.5)
def stuck_body(payload, ctx):
    record(LEDGER, "body")
    time.sleep(60)

def hang_undo(result):
    record(LEDGER, "undo-pay")
    time.sleep(60)

def declined():
    raise ValueError("card declined")

@task(id="stuck-undo", timeout=1.0)
async def stuck_undo(payload, ctx):
    await ctx.step.run("reserve", lambda: 1, compensate=lambda r: record(LEDGER, "undo-reserve"))
    await ctx.step.run("pay", lambda: 2, compensate=hang_undo)
    await ctx.step.run("charge", declined)

def always_down():
    record(LEDGER, "try")
    raise ConnectionError("bank down")

@task(id="nested-retry", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def nested_retry(payload, ctx):
    await ctx.step.run("call", always_down,
                       retry=Retry(max_attempts=3, min_delay=0.05, max_delay=0.05))

class Invoice:
    pass

@task(id="not-json")
async def not_json(payload, ctx):
    await ctx.step.run("make-invoice", Invoice)
    return "unreachable"

@task(id="plain")
def plain(payload, ctx):
    a = ctx.step.run("a", lambda: payload["x"] + 1)
    b = ctx.step.run("b", lambda: {"value": a * 10})
    return {"a": a, "b": b, "attempt": ctx.attempt}

@task(id="parallel", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def parallel(payload, ctx):
    async def job(value, delay):
        record(LEDGER, f"job {value}")
        await asyncio.sleep(delay)
        return value
    # The second finishes first: keys must still follow call order.
    out = await asyncio.gather(ctx.step.run("a", job, "first", 0.2),
                               ctx.step.run("a", job, "second", 0.0),
                               ctx.step.run("b", job, "other", 0.1))
    if ctx.attempt == 1:
        raise RuntimeError("retry me")
    return out

@task(id="idem", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def idem(payload, ctx):
    def charge():
        record(LEDGER, f"charge-key {ctx.step.idempotency_key}")
        if ctx.attempt == 1:
            raise ConnectionError("timeout talking to the bank")
        return ctx.step.idempotency_key
    async def flaky_async():
        record(LEDGER, f"async-key {ctx.step.idempotency_key}")
        if sum(1 for x in open(LEDGER) if x.startswith("async-key")) == 1:
            raise ConnectionError("flaky")
        return ctx.step.idempotency_key
    a = await ctx.step.run("notify", flaky_async,
                           retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
    return {"charge": await ctx.step.run("charge", charge), "notify": a}
"""


def _intervals(lines: list[str]) -> list[tuple[float, float]]:
    starts, ends = {}, {}
    for line in lines:
        what, i, at = line.split()
        (starts if what == "start" else ends)[i] = float(at)
    assert starts.keys() == ends.keys()
    return sorted((starts[i], ends[i]) for i in starts)


def test_concurrency_one_never_runs_two_at_once(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    ids = [eng.trigger("serial", {"i": i}) for i in range(5)]
    results = [eng.wait(rid) for rid in ids]
    assert all(r.ok for r in results), [r.error for r in results]
    spans = _intervals(project.ledger_lines())
    assert len(spans) == 5
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"overlap: one started at {start} before another ended at {end}"


def test_timeout_fails_an_async_step(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("slow-async", timeout=60)
    assert result.status == model.FAILED
    assert result.error.startswith("TaskTimeout"), result.error
    step = step_by_key(eng, result.run_id, "forever")
    assert step.status == model.STEP_FAILED and step.error.startswith("TaskTimeout")
    # Cut off, not run to its end (journal times: no wall-clock budget a loaded machine misses).
    assert step.finished_at - step.started_at < 30
    assert step_by_key(eng, result.run_id, "quick").status == model.STEP_COMPLETED


def test_timeout_replaces_a_worker_stuck_in_a_sync_step(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    pids = set(eng.worker_pids())
    result = eng.run("stuck-thread", timeout=60)
    assert result.status == model.FAILED
    assert result.error.startswith("TaskTimeout"), result.error
    step = step_by_key(eng, result.run_id, "stuck")
    assert step.status == model.STEP_FAILED and step.error.startswith("TaskTimeout")
    assert step.finished_at - step.started_at < 60  # cut off, not slept out
    assert project.ledger_lines() == ["stuck"]  # failed at the stuck step, not run again
    wait_until(lambda: len(eng.worker_pids()) == 2, message="the worker to be replaced")
    assert pids - set(eng.worker_pids()), "the stuck worker was not replaced"


def test_timeout_of_a_plain_task_stuck_outside_any_step(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    pids = set(eng.worker_pids())
    result = eng.run("stuck-body", timeout=60)
    assert result.status == model.FAILED
    assert result.error.startswith("TaskTimeout"), result.error
    run = eng.run_record(result.run_id)
    assert run.finished_at - run.started_at < 60  # cut off, not slept out
    # Not replayed into the same hang, and the thread running it did not outlive the
    # run: its worker was replaced.
    assert project.ledger_lines() == ["body"]
    wait_until(lambda: len(eng.worker_pids()) == 2, message="the worker to be replaced")
    assert pids - set(eng.worker_pids()), "the worker running the stuck body was kept"


def test_timeout_of_a_stuck_compensation_fails_it_and_runs_the_others(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("stuck-undo", timeout=60)
    assert result.status == model.FAILED
    run = eng.run_record(result.run_id)
    assert run.finished_at - run.started_at < 60  # the hung undo was cut off
    assert result.error.startswith("ValueError: card declined"), result.error
    assert "compensate:pay" in result.error and "TaskTimeout" in result.error
    assert project.ledger_lines() == ["undo-pay", "undo-reserve"]
    undo = step_by_key(eng, result.run_id, "compensate:pay")
    assert undo.status == model.STEP_FAILED and "TaskTimeout" in undo.error
    assert step_by_key(eng, result.run_id, "compensate:reserve").status == model.STEP_COMPLETED


def test_non_json_step_result_fails_naming_the_step_and_type(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("not-json")
    assert result.status == model.FAILED
    assert "make-invoice" in result.error and "Invoice" in result.error, result.error
    step = step_by_key(eng, result.run_id, "make-invoice")
    assert step.status == model.STEP_FAILED and "Invoice" in step.error


def test_plain_def_task_gets_step_values(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("plain", {"x": 4})
    assert result.ok, result.error
    assert result.output == {"a": 5, "b": {"value": 50}, "attempt": 1}
    assert [(s.key, s.output) for s in eng.steps(result.run_id)] == [("a", 5), ("b", {"value": 50})]


def test_parallel_steps_get_deterministic_keys(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("parallel")
    assert result.ok, result.error
    assert result.output == ["first", "second", "other"]
    steps = {s.key: s.output for s in eng.steps(result.run_id)}
    assert steps == {"a": "first", "a#2": "second", "b": "other"}
    # Attempt 2 replayed all three from the journal, each under the same key.
    assert sorted(project.ledger_lines()) == ["job first", "job other", "job second"]


def test_step_idempotency_key_is_stable_across_retries(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("idem")
    assert result.ok, result.error
    run_id = result.run_id
    lines = project.ledger_lines()
    charge = [x.split(" ", 1)[1] for x in lines if x.startswith("charge-key")]
    notify = [x.split(" ", 1)[1] for x in lines if x.startswith("async-key")]
    # Run-level retry (thread step) and step-level retry (async step): same key each time.
    assert charge == [f"{run_id}:charge"] * 2
    assert notify == [f"{run_id}:notify"] * 2
    assert result.output == {"charge": f"{run_id}:charge", "notify": f"{run_id}:notify"}


def test_a_run_of_a_task_newer_than_the_workers_waits_for_workers_that_know_it(
    project, engine_factory
):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    # A task file saved while the workers run: the CLI discovers it and enqueues a run
    # before the reload has replaced the workers.
    project.write_tasks(
        """
from sylphrun import task

@task(id="added-later")
async def added_later(payload, ctx):
    return await ctx.step.run("hello", lambda: "hi")
""",
        name="tasks/extra.py",
    )
    [(run_id, _)] = trigger.enqueue(eng.conn, [RunSpec("added-later", "{}")])
    time.sleep(0.6)  # the old workers have looked at the queue more than once
    assert eng.run_record(run_id).status == model.QUEUED
    new = set(eng.supervisor.start_replacement())
    wait_until(lambda: new <= eng.supervisor.live_worker_ids(), message="new workers")
    eng.supervisor.retire_all_but(new)
    result = eng.wait(run_id)
    assert result.ok and result.output == "hi", result.error


def test_each_run_attempt_gives_a_step_its_own_retries(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("nested-retry")
    assert result.status == model.FAILED and "bank down" in result.error
    # Run-level retry re-executes the function: the step gets its 3 tries again.
    assert project.ledger_lines() == ["try"] * 6
    call = step_by_key(eng, result.run_id, "call")
    assert call.attempts == 6
    assert [(a.attempt, a.run_attempt) for a in call.attempt_log] == [
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 2),
        (5, 2),
        (6, 2),
    ]
