"""The engine in real processes on a PostgreSQL journal, beside SQLite: the commands'
`--journal` option (a path or a postgresql:// URL over the config's setting), and the
engine's process-level behaviours on both backends."""

from __future__ import annotations

import json

import pytest

_HELLO = """
from sylphrun import task
from ledger_helper import record

@task(id="hello")
async def hello(payload, ctx):
    async def greet():
        return "hi " + payload.get("name", "x")
    got = await ctx.step.run("greet", greet)
    record(LEDGER, got)
    return got
"""


# -- `--journal`: one option on every command that opens the journal --------------------


@pytest.mark.slow
def test_journal_option_points_worker_trigger_and_runs_at_a_postgres_url(
    postgres_url, project, background
):
    project.write_tasks(_HELLO)  # the config names no journal: SQLite's default
    worker = background("worker", "--workers", "1", "--journal", postgres_url)
    done = project.cli(
        "trigger",
        "hello",
        "--payload",
        '{"name": "pg"}',
        "--timeout",
        "60",
        "--journal",
        postgres_url,
    )
    assert done.returncode == 0, (done.stdout, done.stderr, worker.output)
    assert project.ledger_lines() == ["hi pg"]
    listed = project.cli("runs", "--json", "--journal", postgres_url)
    assert listed.returncode == 0, listed.stderr
    [run] = json.loads(listed.stdout)
    assert run["status"] == "completed"
    shown = project.cli("show", run["run_id"], "--journal", postgres_url)
    assert shown.returncode == 0 and "greet" in shown.stdout, shown.stderr
    assert not (project.root / ".sylphrun" / "journal.db").exists()  # the config's, untouched


@pytest.mark.slow
def test_journal_option_takes_a_sqlite_path_from_the_current_folder(project):
    project.write_tasks(_HELLO)
    started = project.cli("trigger", "hello", "--journal", "elsewhere.db")
    assert started.returncode == 0, started.stderr
    assert (project.root / "elsewhere.db").exists()
    there = project.cli("runs", "--json", "--journal", "elsewhere.db")
    assert [r["run_id"] for r in json.loads(there.stdout)] == [started.stdout.strip()]
    default = project.cli("runs", "--json")
    assert json.loads(default.stdout) == []  # the config's journal never saw it


@pytest.mark.slow
def test_dev_journal_option_holds_across_a_reload(postgres_url, project, background):
    project.write_tasks(_HELLO)
    dev = background("dev", "--no-tui", "--workers", "1", "--journal", postgres_url)
    dev.wait_for("watching", timeout=60)
    first = project.cli("trigger", "hello", "--timeout", "60", "--journal", postgres_url)
    assert first.returncode == 0, (first.stderr, dev.output)  # the workers are up
    project.write_tasks(_HELLO.replace("hi ", "hello "))  # a save: the import check
    project.write_config("slots = 8\n")  # and a config edit: reloaded, --journal kept
    dev.wait_for("reloaded", timeout=60)
    done = project.cli(
        "trigger",
        "hello",
        "--payload",
        '{"name": "pg"}',
        "--timeout",
        "60",
        "--journal",
        postgres_url,
    )
    assert done.returncode == 0, (done.stdout, done.stderr, dev.output)
    assert project.ledger_lines() == ["hi x", "hello pg"]
    assert not (project.root / ".sylphrun" / "journal.db").exists(), dev.output


@pytest.mark.slow
@pytest.mark.parametrize("url", ["mysql://root@db/x", "postgresql://someone@127.0.0.1:1/db"])
def test_a_bad_journal_option_is_one_line_exit_2(project, url):
    project.write_tasks(_HELLO)
    for args in (["runs"], ["trigger", "hello"], ["worker"]):
        out = project.cli(*args, "--journal", url)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    assert not (project.root / ".sylphrun" / "journal.db").exists()


# -- workers wake on the journal's NOTIFY (no poke from another host reaches them) -------


def _wakeups_on(url_or_path):
    """A `JournalWakeups` listening on an event loop of this thread, and the loop."""
    import asyncio

    from sylphrun.journal import open_journal
    from sylphrun.runtime.wake import JournalWakeups

    loop = asyncio.new_event_loop()
    woken = asyncio.Event()
    journal = open_journal(url_or_path)
    wakeups = JournalWakeups(journal, loop, woken.set)
    wakeups.listen()
    return loop, woken, journal, wakeups


def _woken_within(loop, woken, seconds: float = 30) -> bool:
    import asyncio

    async def wait() -> bool:
        try:
            await asyncio.wait_for(woken.wait(), seconds)
        except TimeoutError:
            return False
        woken.clear()
        return True

    return loop.run_until_complete(wait())


def test_a_worker_loop_wakes_on_a_run_enqueued_elsewhere(postgres_url):
    from sylphrun.journal import RunSpec, open_journal

    loop, woken, journal, wakeups = _wakeups_on(postgres_url)
    other = open_journal(postgres_url)  # another host's trigger: no poke, only the NOTIFY
    try:
        assert wakeups.listening
        other.enqueue_runs([RunSpec("t", "{}")], now=1)
        assert _woken_within(loop, woken)
    finally:
        wakeups.close()
        loop.close()
        journal.close()
        other.close()


def test_a_lost_listener_falls_back_to_polling_and_listens_again(postgres_cluster, postgres_url):
    from sylphrun.journal import RunSpec, open_journal

    loop, woken, journal, wakeups = _wakeups_on(postgres_url)
    try:
        postgres_cluster.restart()  # the listener's connection is dropped
        assert _woken_within(loop, woken)  # told: claim now, the polls cover the gap
        assert not wakeups.listening
        wakeups.listen_again_if_due()
        assert not wakeups.listening  # not yet: a server coming back is given time
        wakeups.again_at = 0
        wakeups.listen_again_if_due()
        assert wakeups.listening
        other = open_journal(postgres_url)
        other.enqueue_runs([RunSpec("t", "{}")], now=1)
        other.close()
        assert _woken_within(loop, woken)
    finally:
        wakeups.close()
        loop.close()
        journal.close()


def test_a_sqlite_journal_has_no_listener_and_polls(tmp_path):
    loop, _, journal, wakeups = _wakeups_on(tmp_path / "journal.db")
    try:
        assert not wakeups.listening
    finally:
        wakeups.close()
        loop.close()
        journal.close()


# -- the engine in real worker processes, on each backend --------------------------------

ENGINE_TASKS = """
import asyncio
import os
import time
from ledger_helper import record
from sylphrun import task, Retry, NonRetriableError

ONCE = Retry(max_attempts=1)

def mark(name):
    record(LEDGER, name)
    return name

@task(id="two-steps")
async def two_steps(payload, ctx):
    a = await ctx.step.run("a", mark, "a")
    b = await ctx.step.run("b", mark, "b")
    return a + b

@task(id="gated", retry=ONCE)
async def gated(payload, ctx):
    await ctx.step.run("a", mark, "gated-a")
    if not os.path.exists(LEDGER + ".gate"):
        raise NonRetriableError("the gate is closed")
    await ctx.step.run("b", mark, "gated-b")
    return "through"

def double(i):
    record(LEDGER, f"child:{i}")
    return i * 2

@task(id="child", retry=ONCE)
async def child(payload, ctx):
    if payload["i"] == 3:
        raise NonRetriableError("child 3 fails")
    return await ctx.step.run("double", double, payload["i"])

@task(id="parent")
async def parent(payload, ctx):
    handles = await child.batch_trigger([{"i": i} for i in range(6)])
    async def collect():
        return await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))
    results = await ctx.step.run("collect", collect)
    ok = [r for r in results if r["ok"]]
    return {"ok": len(ok), "failed": len(results) - len(ok),
            "sum": sum(r["output"] for r in ok)}

def undo(name):
    def run(result):
        record(LEDGER, f"undo:{name}")
        return name
    return run

def ship():
    record(LEDGER, "ship")
    raise NonRetriableError("carrier down")

@task(id="order", retry=ONCE)
async def order(payload, ctx):
    await ctx.step.run("reserve", mark, "reserve", compensate=undo("reserve"))
    await ctx.step.run("charge", mark, "charge", compensate=undo("charge"))
    await ctx.step.run("ship", ship)

@task(id="napper")
async def napper(payload, ctx):
    await ctx.step.run("a", mark, "nap-a")
    await ctx.step.sleep("nap", 600)
    await ctx.step.run("b", mark, "nap-b")

def blocked_until_go():
    record(LEDGER, "two-started")
    while not os.path.exists(LEDGER + ".go"):
        time.sleep(0.02)
    record(LEDGER, "two")
    return "two"

@task(id="long")
async def long(payload, ctx):
    await ctx.step.run("one", mark, "one")
    await ctx.step.run("two", blocked_until_go)
    await ctx.step.run("three", mark, "three")
    return "done"
"""


@pytest.fixture(params=["sqlite", "postgres"])
def engine_on(request, project):
    """The project's journal on each backend (PostgreSQL: an empty database of the
    session's cluster, named in the config), with the engine tests' tasks."""
    if request.param == "postgres":
        project.write_config(f'journal = "{request.getfixturevalue("postgres_url")}"\n')
    project.write_tasks(ENGINE_TASKS)
    return request.param


def _run(project, run_id: str):
    from sylphrun.journal import open_journal

    journal = open_journal(project.config().journal)
    try:
        return journal.get_run(run_id)
    finally:
        journal.close()


def _wait_status(project, run_id: str, status: str, timeout: float = 90):
    from conftest import wait_until

    return wait_until(
        lambda: (run := _run(project, run_id)).status == status and run,
        timeout=timeout,
        interval=0.2,
        message=f"run {run_id} {status}",
    )


def _trigger(project, task_id: str, *args: str):
    out = project.cli("trigger", task_id, *args)
    assert out.returncode in (0, 1), out.stderr
    return out


def _count(project, line: str) -> int:
    return project.ledger_lines().count(line)


@pytest.mark.slow
def test_engine_trigger_completes(engine_on, project, background):
    worker = background("worker")
    done = _trigger(project, "two-steps", "--timeout", "60", "--json")
    assert done.returncode == 0, (done.stdout, worker.output)
    assert json.loads(done.stdout)["output"] == "ab"
    assert project.ledger_lines() == ["a", "b"]


@pytest.mark.slow
def test_engine_retry_resumes_a_failed_run_keeping_its_steps(engine_on, project, background):
    background("worker")
    failed = _trigger(project, "gated", "--timeout", "60", "--json")
    assert failed.returncode == 1, failed.stdout
    run_id = json.loads(failed.stdout)["run_id"]
    (project.root / "ledger.txt.gate").touch()
    retried = project.cli("retry", run_id)
    assert retried.returncode == 0, retried.stderr
    assert _wait_status(project, run_id, "completed").output == "through"
    assert project.ledger_lines() == ["gated-a", "gated-b"]  # step a not run again


@pytest.mark.slow
def test_engine_fan_out_and_in_with_a_failed_child(engine_on, project, background):
    background("worker")
    done = _trigger(project, "parent", "--timeout", "90", "--json")
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["output"] == {"ok": 5, "failed": 1, "sum": 24}
    assert sorted(project.ledger_lines()) == [f"child:{i}" for i in (0, 1, 2, 4, 5)]


@pytest.mark.slow
def test_engine_saga_compensates_in_reverse_once(engine_on, project, background):
    background("worker")
    failed = _trigger(project, "order", "--timeout", "60")
    assert failed.returncode == 1
    assert project.ledger_lines() == ["reserve", "charge", "ship", "undo:charge", "undo:reserve"]


@pytest.mark.slow
def test_engine_cancel_ends_a_sleeping_run(engine_on, project, background):
    from conftest import wait_until

    background("worker")
    run_id = _trigger(project, "napper").stdout.strip()
    wait_until(lambda: "nap-a" in project.ledger_lines(), timeout=60, message="step a done")
    cancelled = project.cli("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    _wait_status(project, run_id, "cancelled")
    assert "nap-b" not in project.ledger_lines()


@pytest.mark.slow
def test_engine_replay_from_a_step_copies_the_steps_before(engine_on, project, background):
    background("worker")
    first = _trigger(project, "two-steps", "--timeout", "60", "--json")
    run_id = json.loads(first.stdout)["run_id"]
    replayed = project.cli("replay", run_id, "--from-step", "b")
    assert replayed.returncode == 0, replayed.stderr
    new_id = replayed.stdout.strip()
    assert _wait_status(project, new_id, "completed").output == "ab"
    assert project.ledger_lines() == ["a", "b", "b"]


@pytest.mark.slow
def test_engine_kill_9_mid_run_recovers_without_repeating_a_completed_step(
    engine_on, project, background
):
    from conftest import wait_until

    first = background("worker")
    run_id = _trigger(project, "long").stdout.strip()
    wait_until(
        lambda: "two-started" in project.ledger_lines(), timeout=60, message="step two started"
    )
    first.kill()  # SIGKILL to the supervisor and its workers: step two never finished
    (project.root / "ledger.txt.go").touch()
    background("worker")
    assert _wait_status(project, run_id, "completed", timeout=120).output == "done"
    assert (_count(project, "one"), _count(project, "two"), _count(project, "three")) == (1, 1, 1)
    assert _count(project, "two-started") == 2  # the interrupted step ran again, once
