"""Stopping workers: SIGTERM (as `timeout` and systemd send it, to the process or to its
whole group) lets in-flight steps finish within the shutdown grace, hands the runs back
at the step boundary, prints no traceback and restarts nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from sylphrun.journal import queries
from tests.conftest import ledger_count, wait_until

SLOW = """
import time
from ledger_helper import record
from sylphrun import task

@task(id="slow")
async def slow_task(payload, ctx):
    def slow():
        time.sleep(payload["seconds"])
        record(LEDGER, "slow")
        return "slow done"
    a = await ctx.step.run("slow", slow)
    b = await ctx.step.run("after", lambda: record(LEDGER, "after") or "after done")
    return [a, b]
"""


def _start_slow_run(project, background, seconds: float):
    project.write_tasks(SLOW)
    w = background("worker", "--workers", "1")
    run_id = project.cli("trigger", "slow", "--payload", f'{{"seconds": {seconds}}}').stdout.strip()
    conn = project.journal()
    wait_until(
        lambda: any(s.key == "slow" for s in queries.steps_of(conn, run_id)),
        timeout=30,
        message="the slow step started",
    )
    return w, run_id, conn


@pytest.mark.parametrize("whole_group", [False, True], ids=["supervisor", "process-group"])
def test_sigterm_lets_a_4s_step_finish_then_hands_the_run_back(project, background, whole_group):
    w, run_id, conn = _start_slow_run(project, background, 4)
    if whole_group:
        w.signal_group(signal.SIGTERM)
    else:
        w.proc.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0, w.output
    assert "Traceback" not in w.output, w.output
    assert "restarting" not in w.output, w.output  # a shutdown restarts nothing (issue 12)
    run = queries.get_run(conn, run_id)
    assert run.status == "queued"
    [step] = queries.steps_of(conn, run_id)
    assert (step.key, step.status) == ("slow", "completed")
    # The next worker resumes it after the finished step.
    again = background("worker", "--workers", "1")
    wait_until(lambda: queries.get_run(conn, run_id).finished, timeout=60, message="run finished")
    assert queries.get_run(conn, run_id).status == "completed"
    assert ledger_count(project, "slow") == 1 and ledger_count(project, "after") == 1
    again.signal_group(signal.SIGTERM)
    assert again.wait(60) == 0
    conn.close()


def test_a_step_past_the_shutdown_grace_is_abandoned_with_one_line(project, background):
    project.write_config("shutdown_grace = 1\n")
    w, run_id, conn = _start_slow_run(project, background, 30)
    w.signal_group(signal.SIGTERM)
    assert w.wait(30) == 0, w.output
    assert "Traceback" not in w.output, w.output
    line = w.wait_for("shutdown grace")
    assert "'slow'" in line and "same idempotency key" in line, line
    assert queries.get_run(conn, run_id).status == "queued"
    [step] = queries.steps_of(conn, run_id)
    assert step.status == "interrupted"
    conn.close()


def test_sigterm_to_the_process_group_of_idle_workers_restarts_nothing(project, background):
    project.write_tasks(SLOW)
    w = background("worker", "--workers", "2")
    conn = project.journal()
    wait_until(
        lambda: len(queries.live_workers(conn, now=__import__("time").time(), stale_after=10)) == 2,
        message="two workers",
    )
    w.signal_group(signal.SIGTERM)
    assert w.wait(30) == 0, w.output
    assert "restarting" not in w.output and "Traceback" not in w.output, w.output
    conn.close()


PARALLEL = """
import asyncio
import time
from ledger_helper import record
from sylphrun import task

def work(name, seconds):
    time.sleep(seconds)
    record(LEDGER, name)
    return name

@task(id="parallel")
async def parallel(payload, ctx):
    async def quick_chain():
        # 1.5 s: the window in which the test sees exactly two steps (and sends SIGTERM)
        # before `next` starts; 0.5 s was missed once at load 14, and the wait timed out.
        first = await ctx.step.run("short", work, "short", 1.5)
        return [first, await ctx.step.run("next", work, "next", 0)]
    chain, long = await asyncio.gather(quick_chain(), ctx.step.run("long", work, "long", 4))
    return [*chain, long]
"""


def test_sigterm_lets_every_parallel_step_finish_before_the_run_is_handed_back(project, background):
    """A chain beside a long step reached its next step first and raised the hand-back
    while the long one still ran: the run was released under it, and it ran again."""
    project.write_tasks(PARALLEL)
    w = background("worker", "--workers", "1")
    run_id = project.cli("trigger", "parallel").stdout.strip()
    conn = project.journal()
    wait_until(
        lambda: len(queries.steps_of(conn, run_id)) == 2, timeout=60, message="both steps started"
    )
    w.signal_group(signal.SIGTERM)
    assert w.wait(60) == 0, w.output
    assert {s.key: s.status for s in queries.steps_of(conn, run_id)} == {
        "short": "completed",
        "long": "completed",
    }
    again = background("worker", "--workers", "1")
    wait_until(lambda: queries.get_run(conn, run_id).finished, timeout=60, message="run finished")
    assert queries.get_run(conn, run_id).output == ["short", "next", "long"]
    assert sorted(project.ledger_lines()) == ["long", "next", "short"]
    again.signal_group(signal.SIGTERM)
    again.wait(60)
    conn.close()


IMPORT_GATE = """
import os, time
from pathlib import Path
from sylphrun import task

Path("importing").touch()
deadline = time.monotonic() + 60
while not Path("gate").exists() and time.monotonic() < deadline:
    time.sleep(0.05)

@task(id="noop")
async def noop(payload, ctx):
    return None
"""


@pytest.mark.parametrize("command", ["worker", "dev --no-tui"])
def test_sigterm_while_the_task_modules_import_stops_it_even_if_the_parent_ignored_sigterm(
    project, command
):
    """A parent that ignores SIGTERM (a test session's worker once did) passes that on
    across exec: a SIGTERM landing before the command set its handler was lost, and the
    host served on (the PostgreSQL torture's lost stop)."""
    project.write_tasks(IMPORT_GATE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sylphrun", *command.split()],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN),
    )
    try:
        wait_until(lambda: (project.root / "importing").exists(), timeout=60, message="importing")
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(30)
        finally:
            (project.root / "gate").touch()
        assert code == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
