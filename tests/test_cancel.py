"""Cancelling a run closes its open steps and counts its children apart from failed ones
(issue 12, item 2)."""

from __future__ import annotations

import json

from sylphrun import model
from sylphrun.journal import queries
from tests.conftest import ledger_count, step_by_key, wait_until

TASKS = """
import asyncio, os, time
from ledger_helper import record
from sylphrun import task

@task(id="child")
async def child(payload, ctx):
    if payload.get("fail"):
        raise RuntimeError("child failed")
    if payload.get("nap"):
        await ctx.step.sleep("nap", 600)
    return payload

@task(id="fan-out")
async def fan_out(payload, ctx):
    batch = await child.batch_trigger([{"n": 1}, {"fail": True}, {"nap": True}])
    async def collect():
        return await asyncio.gather(*(h.wait_for_completion() for h in batch.runs))
    return await ctx.step.run("collect", collect)

@task(id="blocks-the-loop")
async def blocks_the_loop(payload, ctx):
    async def hold():
        record(LEDGER, "started")
        deadline = time.time() + 60
        # Blocks the worker's event loop: the cancel's wake-up is read only after this
        # returns, so the worker goes on to journal the result, and the fence refuses it.
        while not os.path.exists(payload["release"]) and time.time() < deadline:
            time.sleep(0.01)
        record(LEDGER, "returning")
        return "late result"
    return await ctx.step.run("hold", hold)

@task(id="short-nap")
async def short_nap(payload, ctx):
    await ctx.step.sleep("nap", 1.0)
    return "rested"

@task(id="long-nap")
async def long_nap(payload, ctx):
    await ctx.step.sleep("nap", 3600)
    return "rested"

@task(id="marker")
async def marker(payload, ctx):
    return "ok"
"""


def test_cancel_closes_parked_steps_and_counts_children_apart(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory(workers=1).start()
    parent = eng.trigger("fan-out")

    def napping():
        return [c.id for c in queries.children_of(eng.conn, parent) if c.status == model.WAITING]

    def settled():
        # The napper parks at its sleep on its own time: two children done and the parent
        # parked say nothing of it (seen under load: not yet parked).
        run = eng.run_record(parent)
        return run.status == model.WAITING and run.children_done == 2 and napping()

    wait_until(
        settled, timeout=60, message="two children finished, the napper and the parent parked"
    )
    [napper] = napping()
    assert step_by_key(eng, parent, "collect").status == model.STEP_WAITING
    cancelled = project.cli("cancel", parent)
    assert cancelled.returncode == 0, cancelled.stderr

    collect = step_by_key(eng, parent, "collect")
    assert collect.status == model.STEP_CANCELLED and collect.finished_at is not None
    nap = step_by_key(eng, napper, "nap")
    assert nap.status == model.STEP_CANCELLED and nap.finished_at is not None
    run = eng.run_record(parent)
    assert (run.children_done, run.children_failed, run.children_cancelled) == (3, 1, 1)

    doc = json.loads(project.cli("show", parent, "--json").stdout)
    assert doc["children"] == {"total": 3, "done": 3, "failed": 1, "cancelled": 1}
    assert [s["status"] for s in doc["steps"] if s["key"] == "collect"] == ["cancelled"]
    text = project.cli("show", parent).stdout
    assert "children: 3/3 finished: 1 completed, 1 failed, 1 cancelled" in text
    listed = project.cli("runs").stdout
    assert "3: 1 ok, 1 failed, 1 cancelled" in listed

    # A retry revives the cancelled child: it no longer counts as cancelled.
    assert project.cli("retry", parent).returncode == 0
    run = eng.run_record(parent)
    assert (run.children_done, run.children_failed, run.children_cancelled) == (2, 1, 0)


def test_a_worker_executing_a_cancelled_run_cannot_overwrite_its_step(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory(workers=1).start()
    release = project.root / "release"
    run_id = eng.trigger("blocks-the-loop", {"release": str(release)})
    wait_until(lambda: ledger_count(project, "started") == 1, timeout=60, message="step started")
    assert project.cli("cancel", run_id).returncode == 0
    assert step_by_key(eng, run_id, "hold").status == model.STEP_CANCELLED
    release.touch()
    wait_until(lambda: ledger_count(project, "returning") == 1, message="step function returned")
    # The one worker's loop has moved on past the late result once it ran another run.
    assert eng.run("marker", timeout=60).ok
    hold = step_by_key(eng, run_id, "hold")
    assert hold.status == model.STEP_CANCELLED and hold.output is None
    assert [a.status for a in hold.attempt_log] == ["interrupted"]
    assert eng.run_record(run_id).status == model.CANCELLED


def test_the_dashboard_s_fan_out_text_counts_cancelled_children_apart():
    from sylphrun.dashboard import text as fmt

    line = fmt.progress_line(3, 1, 4, cancelled=1).plain
    assert "1 completed, 1 failed, 1 cancelled, 1 pending of 4" in line
    assert fmt.children_text(3, 4, 1, 1).plain == "3/4 1✗ 1⊘"


def test_a_v2_journal_s_cancelled_children_move_out_of_the_failed_count(tmp_path):
    import sqlite3

    from sylphrun.journal import Connection
    from sylphrun.journal.schema import MIGRATIONS

    path = tmp_path / "journal.db"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.executescript(
        f"BEGIN;\n{MIGRATIONS[0]}\n{MIGRATIONS[1]}\nPRAGMA user_version = 2;\nCOMMIT;"
    )
    raw.execute(
        "INSERT INTO runs (id, task_id, status, payload, created_at, updated_at,"
        " children_total, children_done, children_failed)"
        " VALUES ('run_p', 'p', 'cancelled', '{}', 1, 1, 4, 3, 2)"
    )
    for rid, status in (
        ("run_a", "completed"),
        ("run_b", "failed"),
        ("run_c", "cancelled"),
        ("run_d", "queued"),
    ):
        raw.execute(
            "INSERT INTO runs (id, task_id, status, payload, created_at, updated_at,"
            " parent_run_id) VALUES (?, 'c', ?, '{}', 1, 1, 'run_p')",
            (rid, status),
        )
    raw.close()
    conn = Connection(path)
    try:
        run = queries.get_run(conn, "run_p")
        assert (run.children_done, run.children_failed, run.children_cancelled) == (3, 1, 1)
        assert run.children_completed == 1
    finally:
        conn.close()


def test_a_retried_cancelled_run_resumes_its_cancelled_steps(project, engine_factory):
    # A long nap, so the cancel always finds it asleep however loaded the machine; the
    # retried run sleeps again (the step is `waiting`, not left `cancelled`), and `wake`
    # ends that sleep: before, the step stayed `cancelled` and `wake` changed nothing.
    project.write_tasks(TASKS)
    eng = engine_factory(workers=1).start()
    run_id = eng.trigger("long-nap")
    wait_until(lambda: eng.run_record(run_id).status == model.WAITING, message="the nap")
    assert project.cli("cancel", run_id).returncode == 0
    assert step_by_key(eng, run_id, "nap").status == model.STEP_CANCELLED
    assert project.cli("retry", run_id).returncode == 0
    wait_until(
        lambda: (
            eng.run_record(run_id).status == model.WAITING
            and step_by_key(eng, run_id, "nap").status == model.STEP_WAITING
        ),
        message="the retried run asleep again",
    )
    assert project.cli("wake", run_id).returncode == 0
    result = eng.wait(run_id, timeout=60)
    assert result.ok and result.output == "rested", result.error
    assert step_by_key(eng, run_id, "nap").status == model.STEP_COMPLETED
