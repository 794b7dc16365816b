"""The core promise beyond kill -9 (issue 11): a completed step never runs again, and an
undone effect is never built on. Each case is one way the promise broke before.

Parallel siblings (items 1-2): `asyncio.gather` raises the first failure at once and
leaves the other steps running. The tasks below order the race with marker files, not
sleeps: the slow sibling waits until the other has failed, then goes on a little, so
without the drain the run's outcome is settled while it is still in flight.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import ledger_count, step_by_key, wait_until
from test_cli import assert_one_line_error

from sylphrun import model
from sylphrun.journal import queries

SIBLINGS = """
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

async def audit():
    await asyncio.sleep(0.5)
    record(LEDGER, "audit")
    return "audited"

@task(id="fire-and-forget")
async def fire_and_forget(payload, ctx):
    ctx.keep = asyncio.ensure_future(ctx.step.run("audit", audit))
    return "returned"

async def work():
    await asyncio.sleep(0.3)
    record(LEDGER, "work")
    return "worked"

@task(id="nap-beside-work")
async def nap_beside_work(payload, ctx):
    _, done = await asyncio.gather(ctx.step.sleep("nap", 0.1), ctx.step.run("work", work))
    return done

@task(id="sibling-retries", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def sibling_retries(payload, ctx):
    tag = payload["charge"]
    charge, reserved = await asyncio.gather(
        ctx.step.run("charge", CHARGES[tag], tag, compensate=refund),
        ctx.step.run("reserve", reserve, tag, "timeout"),
    )
    return {"charge": charge, "reserve": reserved, "attempt": ctx.attempt}
"""


@pytest.mark.parametrize("charge", ["async", "thread", "flaky"])
def test_a_sibling_completing_after_the_run_failed_is_compensated(project, engine_factory, charge):
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


SAGAS = """
import os
from ledger_helper import record
from sylphrun import task

def carrier_up():
    return os.path.exists(os.path.join(os.path.dirname(LEDGER), "carrier-up"))

def charge(run_id):
    record(LEDGER, f"charge:{run_id}")
    return {"id": run_id}

def refund(result):
    record(LEDGER, f"refund:{result['id']}")

def ship(charge):
    if not carrier_up():
        raise RuntimeError("carrier down")
    record(LEDGER, f"ship:{charge['id']}")
    return "shipped"

@task(id="saga")
async def saga(payload, ctx):
    paid = await ctx.step.run("charge", charge, ctx.run_id, compensate=refund)
    return await ctx.step.run("ship", ship, paid)

def release(charge_id):
    record(LEDGER, f"release:{charge_id}")

@task(id="seed-saga")
async def seed_saga(payload, ctx):
    await ctx.step.run("validate", lambda: "ok")
    paid = await ctx.step.run("charge", charge, ctx.run_id)
    try:
        return await ctx.step.run("ship", ship, paid)
    except Exception:
        await ctx.step.run("refund", refund, paid)
        raise
"""


def _replay(project, eng, run_id: str, step: str) -> str:
    done = project.cli("replay", run_id, "--from-step", step)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_replay_from_a_step_never_builds_on_an_undone_effect(project, engine_factory):
    project.write_tasks(SAGAS)
    eng = engine_factory().start()
    first = eng.run("saga")
    assert first.status == model.FAILED and "carrier down" in first.error
    assert project.ledger_lines() == [f"charge:{first.run_id}", f"refund:{first.run_id}"]

    # Shipping still fails: the replay charges anew and refunds its own charge, never the
    # original one a second time.
    second = eng.wait(_replay(project, eng, first.run_id, "ship"))
    assert second.status == model.FAILED
    assert ledger_count(project, f"refund:{first.run_id}") == 1
    assert project.ledger_lines()[2:] == [f"charge:{second.run_id}", f"refund:{second.run_id}"]
    steps = {s.key: s for s in eng.steps(second.run_id)}
    assert not steps["charge"].copied and steps["charge"].attempts == 1
    log = [line.message for line in queries.logs_of(eng.conn, second.run_id)]
    assert any("'charge' (undone by 'compensate:charge')" in m for m in log), log

    # Shipping works: the replay ships on a charge of its own, not on a refunded one.
    (project.root / "carrier-up").touch()
    third = eng.wait(_replay(project, eng, first.run_id, "ship"))
    assert third.ok, third.error
    assert project.ledger_lines()[4:] == [f"charge:{third.run_id}", f"ship:{third.run_id}"]


def test_a_failed_replay_does_not_undo_the_steps_it_copied(project, engine_factory):
    project.write_tasks(SAGAS)
    (project.root / "carrier-up").touch()
    eng = engine_factory().start()
    first = eng.run("saga")
    assert first.ok, first.error
    (project.root / "carrier-up").unlink()
    replayed = eng.wait(_replay(project, eng, first.run_id, "ship"))
    assert replayed.status == model.FAILED and "carrier down" in replayed.error
    # `charge` was copied: its effect is the completed original run's, which shipped on it.
    charge = step_by_key(eng, replayed.run_id, "charge")
    assert charge.copied and charge.output == {"id": first.run_id}
    assert project.ledger_lines() == [f"charge:{first.run_id}", f"ship:{first.run_id}"]
    assert "compensate:charge" not in {s.key for s in eng.steps(replayed.run_id)}


def test_replay_after_a_seed_style_saga_reruns_the_steps_before_its_undo(project, engine_factory):
    project.write_tasks(SAGAS)
    eng = engine_factory().start()
    first = eng.run("seed-saga")
    assert first.status == model.FAILED
    assert project.ledger_lines() == [f"charge:{first.run_id}", f"refund:{first.run_id}"]
    (project.root / "carrier-up").touch()
    second = eng.wait(_replay(project, eng, first.run_id, "ship"))
    assert second.ok, second.error
    assert project.ledger_lines()[2:] == [f"charge:{second.run_id}", f"ship:{second.run_id}"]
    assert not any(s.copied for s in eng.steps(second.run_id))
    log = " ".join(line.message for line in queries.logs_of(eng.conn, second.run_id))
    assert "'validate'" in log and "'charge'" in log and "compensation step ran after" in log


@pytest.mark.parametrize("step", ["compensate:charge", "refund"])
def test_replay_from_a_compensation_step_is_refused(project, engine_factory, step):
    project.write_tasks(SAGAS)
    eng = engine_factory().start()
    failed = eng.run("saga" if step == "compensate:charge" else "seed-saga")
    assert failed.status == model.FAILED
    wait_until(lambda: step in {s.key for s in eng.steps(failed.run_id)}, message=step)
    before = len(queries.list_runs(eng.conn))
    refused = project.cli("replay", failed.run_id, "--from-step", step)
    assert_one_line_error(refused, step, "compensation", "forward step")
    assert len(queries.list_runs(eng.conn)) == before


FETCHER = """
import os
from ledger_helper import record
from sylphrun import task

def fetch(i):
    record(LEDGER, f"fetch:{i}")
    return {"item": i}

def finish():
    if not os.path.exists(os.path.join(os.path.dirname(LEDGER), "ok")):
        raise RuntimeError("not yet")
    return "done"

@task(id="fetcher")
async def fetcher(payload, ctx):
    got = []
%s
    await ctx.step.run("finish", finish)
    return got
"""
THREE_FETCHES = """
    for i in range(3):
        got.append(await ctx.step.run("fetch", fetch, i))
"""
ONE_MORE_FETCH = """
    got.append(await ctx.step.run("fetch", fetch, 99))
    for i in range(3):
        got.append(await ctx.step.run("fetch", fetch, i))
"""
TWO_STEPS = """
    got.append(await ctx.step.run("a", fetch, "a"))
    got.append(await ctx.step.run("b", fetch, "b"))
"""
SWAPPED = """
    got.append(await ctx.step.run("b", fetch, "b"))
    got.append(await ctx.step.run("a", fetch, "a"))
"""


def _fetcher(body: str) -> str:
    return FETCHER % body.strip("\n")


def _reload(eng) -> None:
    """New workers on the code as it is now on disk; the old ones retire."""
    new = set(eng.supervisor.start_replacement())
    wait_until(lambda: new <= eng.supervisor.live_worker_ids(), message="new workers")
    eng.supervisor.retire_all_but(new)


def _retry(project, eng, run_id: str):
    done = project.cli("retry", run_id)
    assert done.returncode == 0, done.stderr
    return eng.wait(run_id)


def test_an_inserted_call_stops_the_run_as_diverged_until_the_code_matches(project, engine_factory):
    path = project.write_tasks(_fetcher(THREE_FETCHES))
    eng = engine_factory().start()
    first = eng.run("fetcher")
    assert first.status == model.FAILED and "not yet" in first.error
    assert project.ledger_lines() == ["fetch:0", "fetch:1", "fetch:2"]

    # One more call of `fetch` first: it takes the key `fetch`, journaled for fetch(0).
    project.write_tasks(_fetcher(ONE_MORE_FETCH))
    _reload(eng)
    diverged = _retry(project, eng, first.run_id)
    assert diverged.status == model.FAILED
    line = (
        path.read_text()
        .splitlines()
        .index('    got.append(await ctx.step.run("fetch", fetch, 99))')
        + 1
    )
    assert diverged.error.startswith(
        "StepDiverged: step 'fetch' was recorded as tasks.main:fetch with args "
    )
    assert "but the code now calls tasks.main:fetch with args " in diverged.error
    assert f"at tasks/main.py:{line}" in diverged.error, diverged.error
    assert project.ledger_lines() == ["fetch:0", "fetch:1", "fetch:2"]  # fetch(99) never ran
    assert eng.run_record(first.run_id).attempt == 2  # not retried automatically
    step = step_by_key(eng, first.run_id, "fetch")
    assert (step.status, step.output) == (model.STEP_COMPLETED, {"item": 0})
    assert step.error.startswith("StepDiverged") and step.fn == "tasks.main:fetch"

    shown = project.cli("show", first.run_id)
    assert "diverged: StepDiverged: step 'fetch'" in " ".join(shown.stdout.split())
    doc = json.loads(project.cli("show", first.run_id, "--json").stdout)
    assert doc["error"].startswith("StepDiverged")
    fetches = [s for s in doc["steps"] if s["name"] == "fetch"]
    assert {s["fn"] for s in fetches} == {"tasks.main:fetch"}
    assert len({s["args_hash"] for s in fetches}) == 3
    # The dashboard's step tree draws the same line under the step.
    from sylphrun.dashboard.steps_view import detail_lines

    lines = [x.text.plain for x in detail_lines(step, {}, 0.0, full=False)]
    assert any(x.startswith("diverged: StepDiverged: step 'fetch'") for x in lines), lines

    # The code is put back: a retry resumes on the journaled results, each fetch once.
    project.write_tasks(_fetcher(THREE_FETCHES))
    (project.root / "ok").touch()
    _reload(eng)
    resumed = _retry(project, eng, first.run_id)
    assert resumed.ok, resumed.error
    assert resumed.output == [{"item": 0}, {"item": 1}, {"item": 2}]
    assert project.ledger_lines() == ["fetch:0", "fetch:1", "fetch:2"]
    assert step_by_key(eng, first.run_id, "fetch").error is None  # the mark is cleared


THREE_LAMBDA_FETCHES = """
    for i in range(3):
        got.append(await ctx.step.run("fetch", lambda: fetch(i)))
"""
ONE_MORE_LAMBDA_FETCH = """
    got.append(await ctx.step.run("fetch", lambda: fetch(99)))
    for i in range(3):
        got.append(await ctx.step.run("fetch", lambda: fetch(i)))
"""


def test_an_inserted_call_is_caught_through_what_a_lambda_captures(project, engine_factory):
    """The seed's closures ported as lambdas: every lambda has the same qualname, so what
    it captures (`i`) is part of the call, and the shifted keys are caught here too."""
    project.write_tasks(_fetcher(THREE_LAMBDA_FETCHES))
    eng = engine_factory().start()
    first = eng.run("fetcher")
    assert first.status == model.FAILED and "not yet" in first.error
    project.write_tasks(_fetcher(ONE_MORE_LAMBDA_FETCH))
    _reload(eng)
    diverged = _retry(project, eng, first.run_id)
    assert diverged.error.startswith("StepDiverged: step 'fetch' was recorded as tasks.main:"), (
        diverged.error
    )
    assert "fetcher.<locals>.<lambda> with args" in diverged.error
    assert project.ledger_lines() == ["fetch:0", "fetch:1", "fetch:2"]  # fetch(99) never ran

    # Back to the lambdas: each capture hashes as it did, the run resumes and finishes.
    project.write_tasks(_fetcher(THREE_LAMBDA_FETCHES))
    (project.root / "ok").touch()
    _reload(eng)
    resumed = _retry(project, eng, first.run_id)
    assert resumed.ok, resumed.error
    assert resumed.output == [{"item": 0}, {"item": 1}, {"item": 2}]
    assert project.ledger_lines() == ["fetch:0", "fetch:1", "fetch:2"]


def test_swapped_steps_keep_their_results_and_warn(project, engine_factory):
    project.write_tasks(_fetcher(TWO_STEPS))
    eng = engine_factory().start()
    first = eng.run("fetcher")
    assert first.status == model.FAILED
    project.write_tasks(_fetcher(SWAPPED))
    (project.root / "ok").touch()
    _reload(eng)
    resumed = _retry(project, eng, first.run_id)
    assert resumed.ok, resumed.error
    assert resumed.output == [{"item": "b"}, {"item": "a"}]
    assert project.ledger_lines() == ["fetch:a", "fetch:b"]
    warnings = [x.message for x in queries.logs_of(eng.conn, first.run_id) if x.level == "WARNING"]
    assert any(
        "expected step 'a' next" in m and "called 'b'" in m and "reordered" in m for m in warnings
    ), warnings


def test_steps_journaled_before_calls_were_recorded_are_not_checked(project, engine_factory):
    project.write_tasks(_fetcher(THREE_FETCHES))
    eng = engine_factory().start()
    first = eng.run("fetcher")
    assert first.status == model.FAILED
    # As a journal from before the V3_STEP_CALLS migration has them.
    raw = sqlite3.connect(project.config().journal)
    raw.execute("UPDATE steps SET fn = NULL, args_hash = NULL")
    raw.commit()
    raw.close()
    project.write_tasks(_fetcher(ONE_MORE_FETCH))
    (project.root / "ok").touch()
    _reload(eng)
    resumed = _retry(project, eng, first.run_id)
    assert resumed.ok, resumed.error


def test_a_run_completes_only_after_a_step_it_did_not_await(project, engine_factory):
    project.write_tasks(SIBLINGS)
    eng = engine_factory().start()
    result = eng.run("fire-and-forget")
    assert result.ok and result.output == "returned", result.error
    assert project.ledger_lines() == ["audit"]
    step = step_by_key(eng, result.run_id, "audit")
    assert (step.status, step.output) == (model.STEP_COMPLETED, "audited")


def test_a_suspension_beside_a_running_step_waits_for_it_and_resumes(project, engine_factory):
    project.write_tasks(SIBLINGS)
    eng = engine_factory().start()
    result = eng.run("nap-beside-work")
    assert result.ok and result.output == "worked", result.error
    assert project.ledger_lines() == ["work"]
    assert step_by_key(eng, result.run_id, "nap").status == model.STEP_COMPLETED


def test_what_a_partial_binds_and_a_closure_captures_is_part_of_the_call():
    import functools

    from sylphrun.runtime.divergence import call_of

    def fetch(i):
        return i

    def closure(i):
        return lambda: fetch(i)

    assert call_of(functools.partial(fetch, 1), (), {}, "r1") != call_of(
        functools.partial(fetch, 2), (), {}, "r1"
    )
    assert call_of(closure(1), (), {}, "r1") != call_of(closure(2), (), {}, "r1")
    assert call_of(closure(1), (), {}, "r1") == call_of(closure(1), (), {}, "r1")
    # The run's own id stands for itself: a replay (a new id) sees the same call.
    assert call_of(closure("r1:charge"), (), {}, "r1") == call_of(
        closure("r2:charge"), (), {}, "r2"
    )
