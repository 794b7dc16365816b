"""kill -9 of worker processes: no completed step runs again, the in-flight step is shown
as interrupted, a poisoned run is failed instead of looped, and a dead worker's runs are
released at once (not when their lease expires)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import holder_pid, ledger_count, step_by_key, wait_until

from sylphrun import model
from sylphrun.config import load_config
from sylphrun.journal import queries
from sylphrun.runtime.supervisor import Supervisor

TASKS = """
import os
import time
from ledger_helper import record
from sylphrun import task

def effect(name, seconds=0.0):
    record(LEDGER, name)
    time.sleep(seconds)
    if seconds:  # a marker per process: the test knows this worker's step has returned
        open(f"{LEDGER}.slept.{os.getpid()}", "a").close()
    return name

@task(id="six-steps")
async def six_steps(payload, ctx):
    out = []
    for i in range(1, 7):
        out.append(await ctx.step.run(f"s{i}", effect, f"s{i}", 1.0 if i == 3 else 0.0))
    return out

@task(id="six-steps-serial", concurrency=1)
async def six_steps_serial(payload, ctx):
    return await six_steps.fn(payload, ctx)

def hang_first_time():
    # The first execution of this step hangs until it is killed; the next one returns.
    first = not os.path.exists(LEDGER + ".hung")
    if first:
        # The marker before the ledger line: the test kills us as soon as it sees the line.
        open(LEDGER + ".hung", "w").close()
    record(LEDGER, "hang")
    if first:
        time.sleep(60)
    return "ok"

@task(id="hangs-once")
async def hangs_once(payload, ctx):
    return await ctx.step.run("hang", hang_first_time)

def kill_my_worker():
    record(LEDGER, "boom")
    os.kill(os.getpid(), 9)

def slow_innocent():
    record(LEDGER, "innocent")
    time.sleep(1.0)
    return "fine"

@task(id="innocent")
async def innocent(payload, ctx):
    return await ctx.step.run("slow", slow_innocent)

@task(id="poison")
async def poison(payload, ctx):
    await ctx.step.run("before", effect, "before")
    await ctx.step.run("boom", kill_my_worker)
    return "unreachable"
"""


def test_kill_9_mid_run_resumes_without_repeating_completed_steps(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    run_id = eng.trigger("six-steps")
    wait_until(lambda: "s3" in project.ledger_lines(), message="step s3 to start")
    pid = holder_pid(eng, run_id)
    assert pid is not None and pid in eng.worker_pids()
    os.kill(pid, signal.SIGKILL)

    result = eng.wait(run_id, timeout=30)
    assert result.ok, result.error
    assert result.output == [f"s{i}" for i in range(1, 7)]
    # Completed steps ran once; only the in-flight step ran again (at-least-once).
    assert project.ledger_lines() == ["s1", "s2", "s3", "s3", "s4", "s5", "s6"]
    s3 = step_by_key(eng, run_id, "s3")
    assert s3.status == model.STEP_COMPLETED
    assert s3.attempts == 2
    assert [a.status for a in s3.attempt_log] == [model.STEP_INTERRUPTED]
    assert "interrupted" in s3.attempt_log[0].error
    for key in ("s1", "s2", "s4", "s5", "s6"):
        step = step_by_key(eng, run_id, key)
        assert (step.attempts, step.attempt_log) == (1, []), key
    # The supervisor replaced the dead worker, and the journal is intact.
    wait_until(
        lambda: len(eng.worker_pids()) == 2 and pid not in eng.worker_pids(),
        message="the dead worker to be replaced",
    )
    assert queries.integrity_check(eng.conn) == "ok"


def test_kill_9_of_every_worker_loses_nothing(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    run_id = eng.trigger("six-steps")
    wait_until(lambda: "s3" in project.ledger_lines(), message="step s3 to start")
    old = eng.worker_pids()
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    result = eng.wait(run_id, timeout=30)
    assert result.ok, result.error
    assert project.ledger_lines() == ["s1", "s2", "s3", "s3", "s4", "s5", "s6"]
    assert not set(old) & set(eng.worker_pids())
    assert queries.integrity_check(eng.conn) == "ok"


def test_run_that_kills_its_worker_three_times_fails_and_is_not_looped(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    run_id = eng.trigger("poison")
    result = eng.wait(run_id, timeout=30)
    assert result.status == model.FAILED
    assert result.error.startswith("WorkerCrashed:"), result.error
    assert "3 times" in result.error
    assert ledger_count(project, "boom") == 3
    assert ledger_count(project, "before") == 1
    boom = step_by_key(eng, run_id, "boom")
    # Three interrupted attempts, then the doomed execution fails the step without running
    # it (so that a saga's compensations still run, see tests/torture/test_kill_points.py).
    assert [a.status for a in boom.attempt_log] == [model.STEP_INTERRUPTED] * 3 + [
        model.STEP_FAILED
    ]
    # The attempt log says what became of the step: run again twice, then not.
    assert [("runs again" in a.error, "WorkerCrashed" in a.error) for a in boom.attempt_log] == [
        (True, False),
        (True, False),
        (False, True),
        (False, True),
    ]
    # Not looped: nothing claims it again.
    time.sleep(1.0)
    assert ledger_count(project, "boom") == 3
    assert eng.run_record(run_id).status == model.FAILED
    assert queries.integrity_check(eng.conn) == "ok"


# A lease no test outlives: a run that resumes at all was released by the supervisor, not
# by its lease running out. (A time budget instead failed on a loaded 2-core machine.)
LONG_LEASE = 600.0


def test_dead_workers_runs_are_released_at_once(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory(lease_seconds=LONG_LEASE).start()
    run_id = eng.trigger("hangs-once")
    wait_until(lambda: ledger_count(project, "hang") == 1, message="the step to hang")
    pid = holder_pid(eng, run_id)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # The supervisor released the run when the process died and woke the other worker.
    result = eng.wait(run_id, timeout=120)
    assert result.ok, result.error
    assert ledger_count(project, "hang") == 2


def test_runs_sharing_a_worker_with_a_poisoned_run_are_not_blamed(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory(workers=1).start()  # one worker: the two runs share it
    innocent = eng.trigger("innocent")
    wait_until(lambda: "innocent" in project.ledger_lines(), message="the innocent run to start")
    poison = eng.trigger("poison")
    assert eng.wait(poison, timeout=30).error.startswith("WorkerCrashed:")
    result = eng.wait(innocent, timeout=30)
    assert result.ok, result.error
    assert ledger_count(project, "boom") == 3


def _supervise(root: str) -> None:
    """A supervisor in a process of its own, so the test can kill -9 it with its workers."""
    os.chdir(root)
    sup = Supervisor(load_config(root), workers=1, lease_seconds=LONG_LEASE)
    sup.start()
    sup.serve(threading.Event())


def test_runs_of_workers_that_vanished_with_their_supervisor_are_recovered_at_start(
    project, engine_factory
):
    project.write_tasks(TASKS)
    proc = multiprocessing.get_context("spawn").Process(
        target=_supervise, args=(str(project.root),)
    )
    proc.start()
    try:
        eng = engine_factory()  # not started yet: it only triggers
        run_id = eng.trigger("hangs-once")
        wait_until(
            lambda: ledger_count(project, "hang") == 1, timeout=30, message="the step to hang"
        )
        workers = psutil.Process(proc.pid).children()
        os.kill(proc.pid, signal.SIGKILL)  # supervisor first, so nobody releases the run
        for w in workers:
            os.kill(w.pid, signal.SIGKILL)
    finally:
        proc.join(5)
    assert queries.lease_holder(eng.conn, run_id) is not None  # still held by the dead worker
    eng.start()
    # Released when the new supervisor started: the dead worker's lease has minutes to go.
    result = eng.wait(run_id, timeout=120)
    assert result.ok, result.error
    assert ledger_count(project, "hang") == 2


@pytest.mark.parametrize("task_id", ["six-steps", "six-steps-serial"])
def test_a_worker_paused_past_its_lease_cannot_overwrite_the_new_owner(
    project, engine_factory, task_id
):
    # "six-steps-serial" has concurrency=1: the frozen run must not count against its own
    # limit, or nobody may take it over.
    project.write_tasks(TASKS)
    eng = engine_factory(lease_seconds=1.0, heartbeat_seconds=0.2).start()
    run_id = eng.trigger(task_id)
    wait_until(lambda: "s3" in project.ledger_lines(), message="step s3 to start")
    pid = holder_pid(eng, run_id)
    os.kill(pid, signal.SIGSTOP)
    try:
        result = eng.wait(run_id, timeout=60)  # another worker takes the expired lease
        assert result.ok, result.error
        steps = eng.steps(run_id)
    finally:
        # The supervisor kills a worker stopped while it holds the write lock: it may be gone.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    _wait_until_it_tried_to_write(eng, project, pid)
    assert eng.steps(run_id) == steps
    assert eng.run_record(run_id).status == model.COMPLETED
    assert project.ledger_lines().count("s4") == 1
    s3 = step_by_key(eng, run_id, "s3")
    assert [a.status for a in s3.attempt_log] == [model.STEP_INTERRUPTED]


def _wait_until_it_tried_to_write(eng, project, pid: int) -> None:
    """The paused worker wakes, its step returns (the step's marker), and the worker goes
    on to journal the result, which the fence refuses. The refusal leaves no trace, so
    wait for two more heartbeats of that worker after the marker: its loop, which makes
    the write right after the step returns, has run by then. Or for it to be gone."""
    marker = Path(f"{project.ledger}.slept.{pid}")
    wait_until(
        lambda: marker.exists() or not psutil.pid_exists(pid),
        timeout=60,
        message="the paused worker's step to return",
    )

    def heartbeat() -> float | None:
        found = [
            w
            for w in queries.live_workers(eng.conn, now=time.time(), stale_after=3600)
            if w.pid == pid
        ]
        return found[0].heartbeat_at if found and psutil.pid_exists(pid) else None

    def beat_after(t: float) -> float | str:
        b = heartbeat()
        return "gone" if b is None else (b if b > t else 0.0)

    seen: float | str | None = heartbeat()
    for _ in range(2):
        if not isinstance(seen, float):
            return  # gone: replaced by the supervisor, it can write nothing more
        seen = wait_until(
            lambda t=seen: beat_after(t), timeout=60, message="a heartbeat of the woken worker"
        )
