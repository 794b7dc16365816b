"""Hangs turned into bounded waits or clean failures (issue 11, item 6): each case a run
or a writer used to wait on forever, silently."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import ledger_count, wait_until

from sylphrun import actions
from sylphrun.discover import discover
from sylphrun.journal import Connection, RunSpec, queries
from sylphrun.journal.lock_holder import stopped_lock_holder
from sylphrun.runtime.worker import Worker, WorkerSettings
from sylphrun.trigger import enqueue, wait_for_result

GATED = """
import os
import time
from pathlib import Path

import psutil
import pytest
from sylphrun import task

def wait_for_gate(path):
    while not os.path.exists(path):
        time.sleep(0.02)
    return "opened"

@task(id="gated")
async def gated(payload, ctx):
    return await ctx.step.run("gate", wait_for_gate, payload["gate"])
"""


def test_a_stale_lost_report_does_not_cancel_the_runs_new_execution(project, tmp_path):
    """The heartbeat thread reports the runs it could not renew; by the time the loop
    acts on it the same worker may hold the run again (cancelled, then retried). Dropping
    by run id cancelled the new execution before its first step, and the run stayed
    'running' forever, its lease renewed by every heartbeat."""
    project.write_tasks(GATED)
    config = project.config()
    tasks = discover(config)
    gate = tmp_path / "gate"
    conn = Connection(config.journal)
    # A heartbeat too slow to act in this test, and a lease too long to run out in it (it
    # would hide the bug): the stale report is delivered by hand,
    # exactly as the heartbeat thread delivers it (`call_soon_threadsafe(_drop_lost, ...)`).
    worker = Worker(
        WorkerSettings(
            config=config, worker_id="w-stale", heartbeat_seconds=3600, lease_seconds=3600
        ),
        tasks,
    )

    def holder_epoch(run_id: str) -> int | None:
        found = queries.lease_holder(conn, run_id)
        return None if found is None else found[2]

    async def scenario() -> str:
        serving = asyncio.create_task(worker.serve())
        try:
            [(run_id, _)] = await asyncio.to_thread(
                enqueue, conn, [RunSpec("gated", f'{{"gate": "{gate}"}}')]
            )
            first = await asyncio.to_thread(wait_until, lambda: holder_epoch(run_id))
            await asyncio.to_thread(actions.cancel_run, conn, run_id)
            await asyncio.to_thread(wait_until, lambda: run_id not in worker.active)
            await asyncio.to_thread(actions.retry_run, conn, run_id)
            await asyncio.to_thread(
                wait_until,
                lambda: (holder_epoch(run_id) or first) != first and run_id in worker.active,
            )
            worker._drop_lost([(run_id, first)])  # the stale report, old epoch
            gate.touch()
            result = await wait_for_result(conn, run_id, timeout=30)
            return result.status
        finally:
            worker.stop()
            await serving

    assert asyncio.run(scenario()) == "completed"
    conn.close()


CPU_BOUND = """
from ledger_helper import record
from sylphrun import task

def crunch(n):
    record(LEDGER, "crunch")
    return sum(range(n))  # one C call: holds the GIL throughout

@task(id="crunch")
async def crunch_task(payload, ctx):
    return await ctx.step.run("crunch", crunch, payload["n"])
"""


def _n_for_seconds(seconds: float) -> int:
    """A `sum(range(n))` that takes about `seconds` on this machine now."""
    n = 2_000_000
    started = time.perf_counter()
    sum(range(n))
    return int(n * seconds / max(time.perf_counter() - started, 1e-4))


def test_a_step_holding_the_gil_past_the_lease_runs_once(project, engine_factory):
    """Its worker's heartbeat thread cannot run, so the lease ran out and the run was taken
    over and re-run, again and again (12 overlapping attempts in 4 min). The supervisor
    sees the worker alive and not stopped, and renews for it."""
    project.write_tasks(CPU_BOUND)
    eng = engine_factory(workers=2, lease_seconds=1.0, heartbeat_seconds=0.25).start()
    n = _n_for_seconds(5.0)
    run_id = eng.trigger("crunch", {"n": n})
    result = eng.wait(run_id, timeout=120)
    assert result.ok, result.error
    assert result.output == n * (n - 1) // 2
    assert ledger_count(project, "crunch") == 1
    run = eng.run_record(run_id)
    assert run.attempt == 1


@pytest.mark.parametrize(
    "command",
    [("worker", "--workers", "2"), ("dev", "--no-tui", "--workers", "1")],
    ids=["worker", "dev"],
)
def test_deleting_the_journal_under_running_workers_stops_them_with_one_line(
    project, background, command
):
    """Workers kept writing to the deleted file, and `trigger --wait` on the new one said
    no workers run."""
    project.write_tasks(CPU_BOUND)
    proc = background(*command)
    journal = project.config().journal
    conn = Connection(journal)
    wait_until(
        lambda: queries.live_workers(conn, now=time.time(), stale_after=10),
        timeout=30,
        message="a live worker",
    )
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(journal) + suffix).unlink(missing_ok=True)
    assert proc.wait(60) == 1, proc.output
    assert "Traceback" not in proc.output and "restarting" not in proc.output, proc.output
    line = proc.wait_for("was deleted")
    assert str(journal) in line, proc.output


HOLD_AND_STOP = """
import os, signal, sys
from sylphrun.journal import Connection
conn = Connection(sys.argv[1])
with conn.write():
    print("holding", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)  # Ctrl-Z in the middle of a write
"""


def test_a_writer_waiting_on_a_stopped_lock_holder_says_who_after_2s(project, tmp_path):
    """A stopped (Ctrl-Z) script inside a write froze every writer, silently."""
    project.write_tasks(CPU_BOUND)
    journal = project.config().journal
    Connection(journal).close()
    script = tmp_path / "hold.py"
    script.write_text(HOLD_AND_STOP)
    holder = subprocess.Popen(
        [sys.executable, str(script), str(journal)], stdout=subprocess.PIPE, text=True
    )
    waiter = None
    try:
        assert holder.stdout.readline().strip() == "holding"
        wait_until(
            lambda: psutil.Process(holder.pid).status() == psutil.STATUS_STOPPED,
            message="holder stopped",
        )
        assert stopped_lock_holder(journal).startswith(f"journal locked by pid {holder.pid}")
        waiter = subprocess.Popen(
            [sys.executable, "-m", "sylphrun", "trigger", "crunch", "--payload", '{"n": 1}'],
            cwd=project.root,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(waiter.stderr), daemon=True).start()
        line = wait_until(
            lambda: next((x for x in lines if "journal locked" in x), None),
            timeout=30,
            message="the waiter's notice",
        )
        assert f"pid {holder.pid} (python" in line and "hold.py" in line, line
        assert "stopped (Ctrl-Z?)" in line and line.rstrip().endswith("waiting"), line
        os.kill(holder.pid, signal.SIGCONT)
        assert waiter.wait(30) == 0  # the write goes through once the holder continues
        assert len([x for x in lines if "journal locked" in x]) == 1
    finally:
        for p in (holder, waiter):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait(5)


def test_the_dashboard_status_line_names_a_stopped_lock_holder(project, tmp_path):
    from test_dashboard import drive, until

    from sylphrun.dashboard.app import DashboardApp
    from sylphrun.dashboard.widgets.status_line import StatusLine

    project.write_tasks(CPU_BOUND)
    config = project.config()
    Connection(config.journal).close()
    script = tmp_path / "hold.py"
    script.write_text(HOLD_AND_STOP)
    holder = subprocess.Popen(
        [sys.executable, str(script), str(config.journal)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        app = DashboardApp(config, tasks=discover(config))

        async def scenario(pilot) -> None:
            def status() -> str:
                return str(app.screen.query_one(StatusLine).render())

            await until(
                pilot,
                lambda: f"journal locked by pid {holder.pid}" in status(),
                what="the lock holder in the status line",
            )
            assert "stopped (Ctrl-Z?)" in status()

        drive(app, scenario)
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.wait(10)


STUCK = """
import time
from sylphrun import task

@task(id="stuck")
async def stuck(payload, ctx):
    return await ctx.step.run("block", time.sleep, 600)

@task(id="quick")
async def quick(payload, ctx):
    return await ctx.step.run("one", lambda: 1)
"""


def test_a_cancelled_runs_stuck_thread_gets_a_grace_then_its_worker_is_replaced(
    project, engine_factory
):
    """Each cancel of a run stuck in a sync step leaked a thread of the step pool: 32 of
    them and no step of any run could start again in that worker."""
    project.write_config("shutdown_grace = 1\n")
    project.write_tasks(STUCK)
    eng = engine_factory(workers=1).start()
    [old_pid] = eng.worker_pids()
    run_id = eng.trigger("stuck")
    wait_until(
        lambda: any(s.status == "running" for s in eng.steps(run_id)),
        message="the stuck step running",
    )
    actions.cancel_run(eng.conn, run_id)
    wait_until(
        lambda: eng.worker_pids() and eng.worker_pids() != [old_pid],
        timeout=30,
        message="the worker replaced",
    )
    assert eng.run_record(run_id).status == "cancelled"
    assert eng.run("quick", timeout=60).ok


FANOUT = """
import asyncio
from sylphrun import task

@task(id="item")
async def item(payload, ctx):
    return payload["i"]

@task(id="parent")
async def parent(payload, ctx):
    handles = await item.batch_trigger([{"i": i} for i in range(payload["n"])])
    async def collect():
        results = await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))
        return [r.output for r in results]
    return await ctx.step.run("collect", collect)
"""


def test_a_large_batch_is_inserted_in_chunks_and_a_crash_between_them_creates_none_twice(
    project, engine_factory, tmp_path, monkeypatch
):
    """300k children in one transaction held the write lock >10 s: the supervisor's
    watchdog replaced the worker six times in 90 s. Chunks of $SYLPHRUN_BATCH_CHUNK (5 here,
    5,000 by default), the worker SIGKILLed after the first."""
    project.write_tasks(FANOUT)
    marker = tmp_path / "crashed"
    monkeypatch.setenv("SYLPHRUN_BATCH_CHUNK", "5")
    monkeypatch.setenv("SYLPHRUN_TEST_CRASH_AT", f"between-chunks:batch-trigger:item:{marker}")
    eng = engine_factory(workers=1).start()
    n = 23
    result = eng.run("parent", {"n": n}, timeout=120)
    assert marker.exists(), "the crash point was not reached"
    assert result.ok, result.error
    # In payload order: the resumed parent found its children by their keys.
    assert result.output == list(range(n))
    children = queries.children_of(eng.conn, result.run_id)
    assert sorted(c.payload["i"] for c in children) == list(range(n))  # none twice, none lost
    [step] = [s for s in eng.steps(result.run_id) if s.kind == "trigger"]
    assert step.output == {"run_count": n, "by_key": True}  # the count, not 23 ids (or 1M)
    assert eng.run_record(result.run_id).children_total == n


def test_back_to_back_chunks_are_not_mistaken_for_a_frozen_lock_holder(
    project, engine_factory, monkeypatch
):
    """The supervisor's watchdog sampled only the lock holder's pid: a worker committing
    chunk after chunk looked like one holding the lock for a whole lease, and was killed
    (the 300k batch: six workers replaced in 90 s). A commit (the WAL moving) is progress."""
    project.write_tasks(
        FANOUT.replace('return await ctx.step.run("collect", collect)', "return len(handles)")
    )
    monkeypatch.setenv("SYLPHRUN_BATCH_CHUNK", "2000")
    events: list[str] = []
    eng = engine_factory(
        workers=1, lease_seconds=1.0, heartbeat_seconds=0.25, on_event=events.append
    ).start()
    n = 40_000
    result = eng.run("parent", {"n": n}, timeout=300)
    assert result.ok and result.output == n, result.error
    assert not [e for e in events if "write lock" in e], events
    assert eng.run_record(result.run_id).attempt == 1


def test_trigger_wait_stops_with_one_line_when_the_journal_is_deleted(project, background):
    project.write_tasks(CPU_BOUND)
    waiter = background("trigger", "crunch", "--payload", '{"n": 1}', "--wait")
    waiter.wait_for("no workers are running", timeout=30)
    journal = project.config().journal
    for suffix in ("", "-wal", "-shm"):
        Path(str(journal) + suffix).unlink(missing_ok=True)
    assert waiter.wait(30) != 0
    assert "Traceback" not in waiter.output, waiter.output
    assert "was deleted or replaced while waiting" in waiter.lines[-1], waiter.output
