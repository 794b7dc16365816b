"""A kill at each instrumented point of a step (SYLPHRUN_TEST_CRASH_AT, see
`sylphrun/runtime/steps.py`): before its start record, after its side effect but before
its result is committed, and after the commit. Only the second leaves a step in doubt:
it is journaled as interrupted, shown so by `sylphrun show`, and runs again with the same
`ctx.step.idempotency_key`."""

from __future__ import annotations

import json

import pytest
from conftest import step_by_key

from sylphrun import model

# A step its worker died under on each of a run's three worker deaths (the crash budget),
# failed by the doomed execution that followed: its attempt log, oldest first.
CUT_OFF_BY_EACH_DEATH_THEN_FAILED = [model.STEP_INTERRUPTED] * 3 + [model.STEP_FAILED]

TASKS = """
import os
from ledger_helper import record
from sylphrun import task

def effect(ctx, name):
    record(LEDGER, f"{name}|{ctx.step.idempotency_key}|{os.getpid()}")
    return name

@task(id="three")
async def three(payload, ctx):
    out = []
    for name in ("a", "b", "c"):
        out.append(await ctx.step.run(name, effect, ctx, name))
    return out
"""


@pytest.mark.parametrize("point", ["before-start", "after-effect", "after-commit"])
def test_kill_at_each_point_of_a_step(project, engine_factory, monkeypatch, point):
    marker = project.root / "crashed"
    monkeypatch.setenv("SYLPHRUN_TEST_CRASH_AT", f"{point}:b:{marker}")
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    first_workers = set(eng.worker_pids())
    run_id = eng.trigger("three")
    result = eng.wait(run_id, timeout=30)
    assert result.ok, result.error
    assert result.output == ["a", "b", "c"]
    assert marker.exists(), "the hook did not fire"
    ledger = [line.split("|") for line in project.ledger_lines()]
    names = [x[0] for x in ledger]
    b = step_by_key(eng, run_id, "b")
    if point == "after-effect":
        # In doubt: the effect happened, its result was not journaled. It ran again, with
        # the same idempotency key, in another worker; the journal says so.
        assert names == ["a", "b", "b", "c"]
        (_, key1, pid1), (_, key2, pid2) = [x for x in ledger if x[0] == "b"]
        assert key1 == key2 == f"{run_id}:b"
        assert pid1 != pid2
        assert b.attempts == 2
        assert [a.status for a in b.attempt_log] == [model.STEP_INTERRUPTED]
        _assert_show_says_interrupted(project, run_id)
        _assert_dashboard_says_interrupted(eng, run_id)
    else:
        # Before the start record nothing is in doubt; after the commit the result is kept.
        assert names == ["a", "b", "c"]
        assert (b.attempts, b.attempt_log) == (1, [])
    for key in ("a", "c"):
        assert step_by_key(eng, run_id, key).attempts == 1
    # The worker that ran "a" really died there, and another finished the run.
    dead = int(ledger[0][2])
    assert dead in first_workers and dead not in eng.worker_pids()
    survivors = {"before-start": ["b", "c"], "after-effect": ["b", "c"], "after-commit": ["c"]}
    assert [x[0] for x in ledger if int(x[2]) != dead] == survivors[point]


def _assert_show_says_interrupted(project, run_id: str) -> None:
    text = project.cli("show", run_id)
    assert text.returncode == 0, text.stderr
    flat = " ".join(part.strip("│├└─ ") for part in text.stdout.splitlines())
    assert (
        flat.count(
            "attempt 1 interrupted: the worker stopped before the step finished; "
            "it runs again with the same idempotency key"
        )
        == 1
    ), text.stdout
    doc = json.loads(project.cli("show", run_id, "--json").stdout)
    [b] = [s for s in doc["steps"] if s["key"] == "b"]
    assert b["status"] == "completed" and b["attempts"] == 2
    assert [(a["attempt"], a["status"]) for a in b["attempt_log"]] == [(1, "interrupted")]
    assert "same idempotency key" in b["attempt_log"][0]["error"]


def _assert_dashboard_says_interrupted(eng, run_id: str) -> None:
    from sylphrun.dashboard.steps_view import attempt_line

    b = step_by_key(eng, run_id, "b")
    line = attempt_line(b.attempt_log[0], traceback_lines=None).text.plain
    assert line.startswith("attempt 1 ⚡ interrupted"), line
    assert "same idempotency key" in line


SAGA = """
import os
from ledger_helper import record
from sylphrun import task, Retry

def effect(name):
    record(LEDGER, name)
    return name

def undo(name):
    record(LEDGER, f"undo {name}")

def kill_my_worker():
    record(LEDGER, "ship")
    os.kill(os.getpid(), 9)

@task(id="poisoned-saga", retry=Retry(max_attempts=3, min_delay=0.05, max_delay=0.05))
async def poisoned_saga(payload, ctx):
    await ctx.step.run("reserve", effect, "reserve", compensate=undo)
    await ctx.step.run("charge", effect, "charge", compensate=undo)
    await ctx.step.run("ship", kill_my_worker)
"""


def test_a_saga_failed_for_killing_its_worker_still_runs_its_compensations(project, engine_factory):
    # Found by the torture: a run failed as WorkerCrashed was finished by the supervisor
    # directly, so a saga that charged a card never refunded it.
    project.write_tasks(SAGA)
    eng = engine_factory().start()
    run_id = eng.trigger("poisoned-saga")
    result = eng.wait(run_id, timeout=30)
    assert result.status == model.FAILED
    assert result.error.startswith("WorkerCrashed:"), result.error
    assert project.ledger_lines() == [
        "reserve",
        "charge",
        "ship",
        "ship",
        "ship",
        "undo charge",
        "undo reserve",
    ]
    ship = step_by_key(eng, run_id, "ship")
    assert ship.status == model.STEP_FAILED
    assert [a.status for a in ship.attempt_log] == CUT_OFF_BY_EACH_DEATH_THEN_FAILED
    for key in ("compensate:charge", "compensate:reserve"):
        comp = step_by_key(eng, run_id, key)
        assert (comp.kind, comp.status) == (model.COMPENSATION, model.STEP_COMPLETED)
    # WorkerCrashed is final: the task's retry policy does not loop it.
    assert eng.run_record(run_id).attempt == 1


def test_a_poisoned_saga_whose_undo_kills_its_worker_too_is_failed_not_looped(
    project, engine_factory
):
    project.write_tasks(
        SAGA.replace(
            'record(LEDGER, f"undo {name}")',
            'record(LEDGER, f"undo {name}")\n    os.kill(os.getpid(), 9)',
        )
    )
    eng = engine_factory().start()
    run_id = eng.trigger("poisoned-saga")
    result = eng.wait(run_id, timeout=30)
    assert result.status == model.FAILED
    assert result.error.startswith("WorkerCrashed:") and "4 times" in result.error
    assert "compensations did not all run" in result.error
    assert project.ledger_lines() == ["reserve", "charge", "ship", "ship", "ship", "undo charge"]
    assert step_by_key(eng, run_id, "compensate:charge").status == model.STEP_INTERRUPTED


# Found by the SIGKILL torture (a gather-saga's `compensate:charge` ended 'failed'): the
# crash that used up the run's budget (MAX_CRASHES) landed while an undo ran. The worker
# deaths before it happened elsewhere (here: in `ship`), so the undo is not what poisons the
# run; it was cut off like any step and must run again, not be failed and never refund.
CRASH_DURING_UNDO = """
import os
from ledger_helper import record
from sylphrun import NonRetriableError, task

def effect(name):
    record(LEDGER, name)
    return name

def first_time(marker):
    # True the first `n` times a marker is asked for (one file per time), in any process.
    path = f"{LEDGER}.{marker}"
    n = len(open(path).read()) if os.path.exists(path) else 0
    with open(path, "a") as f:
        f.write("x")
    return n

def ship():
    # Kills its worker twice (crashes 1 and 2), then the card is declined for good.
    record(LEDGER, "ship")
    if first_time("ship") < 2:
        os.kill(os.getpid(), 9)
    raise NonRetriableError("card declined")

def undo(name):
    record(LEDGER, f"undo {name}")
    if name == "charge" and first_time("undo") < UNDO_KILLS:
        os.kill(os.getpid(), 9)  # crash 3 (and on): the run is doomed here

@task(id="declined-saga")
async def declined_saga(payload, ctx):
    await ctx.step.run("reserve", effect, "reserve", compensate=undo)
    await ctx.step.run("charge", effect, "charge", compensate=undo)
    await ctx.step.run("ship", ship)
"""


def test_an_undo_cut_off_by_the_crash_that_dooms_the_run_runs_again(project, engine_factory):
    project.write_tasks("UNDO_KILLS = 1\n" + CRASH_DURING_UNDO)
    eng = engine_factory().start()
    run_id = eng.trigger("declined-saga")
    result = eng.wait(run_id, timeout=60)
    assert result.status == model.FAILED
    assert "card declined" in result.error and "compensation" not in result.error, result.error
    # The undo cut off by crash 3 ran again (in doubt, as any step), then the older one.
    assert project.ledger_lines() == [
        "reserve",
        "charge",
        "ship",
        "ship",
        "ship",
        "undo charge",
        "undo charge",
        "undo reserve",
    ]
    comp = step_by_key(eng, run_id, "compensate:charge")
    assert (comp.status, comp.attempts) == (model.STEP_COMPLETED, 2)
    assert [a.status for a in comp.attempt_log] == [model.STEP_INTERRUPTED]
    assert step_by_key(eng, run_id, "compensate:reserve").status == model.STEP_COMPLETED


def test_an_undo_that_killed_its_worker_every_time_is_failed_and_the_older_ones_run(
    project, engine_factory
):
    """The poisoned undo itself: each of the run's MAX_CRASHES worker deaths was in it. The
    doomed execution fails it without a fourth try (that would fail the whole run at once,
    older undos not run) and still undoes `reserve`."""
    project.write_tasks(
        "UNDO_KILLS = 99\n" + CRASH_DURING_UNDO.replace('first_time("ship") < 2', "False")
    )
    eng = engine_factory().start()
    run_id = eng.trigger("declined-saga")
    result = eng.wait(run_id, timeout=60)
    assert result.status == model.FAILED
    assert "card declined" in result.error, result.error
    assert "compensate:charge: WorkerCrashed" in result.error, result.error
    assert project.ledger_lines() == [
        "reserve",
        "charge",
        "ship",
        "undo charge",
        "undo charge",
        "undo charge",
        "undo reserve",
    ]
    comp = step_by_key(eng, run_id, "compensate:charge")
    assert comp.status == model.STEP_FAILED
    assert [a.status for a in comp.attempt_log] == CUT_OFF_BY_EACH_DEATH_THEN_FAILED
    assert step_by_key(eng, run_id, "compensate:reserve").status == model.STEP_COMPLETED


# The seed's saga style: the undo is a step in the `except` block (its kind inferred as
# compensation). After `pay` failed, every run-through goes straight to it, so all of a
# run's worker deaths landing there is likely under random kills (test_sigkill saw it).
SEED_STYLE_POISONED_UNDO = """
import os
from ledger_helper import record
from sylphrun import NonRetriableError, task

def effect(name):
    record(LEDGER, name)
    return name

def declined():
    record(LEDGER, "pay")
    raise NonRetriableError("card declined")

def release():
    record(LEDGER, "release")
    os.kill(os.getpid(), 9)

@task(id="seed-saga")
async def seed_saga(payload, ctx):
    await ctx.step.run("reserve", effect, "reserve")
    try:
        await ctx.step.run("pay", declined)
    except Exception:
        await ctx.step.run("release", release)
        raise
"""


def test_a_seed_style_undo_that_killed_its_worker_every_time_is_failed_once_not_looped(
    project, engine_factory
):
    project.write_tasks(SEED_STYLE_POISONED_UNDO)
    eng = engine_factory().start()
    run_id = eng.trigger("seed-saga")
    result = eng.wait(run_id, timeout=60)
    assert result.status == model.FAILED
    assert "WorkerCrashed" in result.error, result.error
    assert project.ledger_lines() == ["reserve", "pay", "release", "release", "release"]
    undo = step_by_key(eng, run_id, "release")
    assert (undo.kind, undo.status) == (model.COMPENSATION, model.STEP_FAILED)
    assert [a.status for a in undo.attempt_log] == CUT_OFF_BY_EACH_DEATH_THEN_FAILED
