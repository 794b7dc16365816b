"""`sylphrun wake RUN`: a sleep or a retry back-off ends now, with real workers."""

from __future__ import annotations

import json
from contextlib import closing

from sylphrun.journal import queries
from tests import test_cli
from tests.conftest import wait_until
from tests.test_cli import assert_one_line_error

worker = test_cli.worker  # the fixture: a real `sylphrun worker` process

TASKS = """
from sylphrun import task, Retry

@task(id="napper")
async def napper(payload, ctx):
    await ctx.step.sleep("long-nap", 3600)
    return await ctx.step.run("after", lambda: "awake")

@task(id="flaky-step")
async def flaky_step(payload, ctx):
    n = await ctx.step.run("count", lambda: 1)
    def fetch():
        import os
        marker = os.path.join(os.getcwd(), "fetched-once")
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise ConnectionError("upstream down")
        return "ok"
    return await ctx.step.run("fetch", fetch, retry=Retry(max_attempts=2, min_delay=3600,
                                                           max_delay=3600, jitter=0))

@task(id="flaky-run", retry=Retry(max_attempts=2, min_delay=3600, max_delay=3600, jitter=0))
async def flaky_run(payload, ctx):
    import os
    marker = os.path.join(os.getcwd(), "ran-once")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return "second"

@task(id="quick")
async def quick(payload, ctx):
    return 1
"""


def status_of(project, run_id: str) -> dict:
    out = project.cli("show", run_id, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def journal_run(project, run_id: str):
    """The run as the journal has it now: what the waits poll (a `show` per poll started
    a process each time; the CLI's own answers are checked once the wait is over)."""
    with closing(project.journal()) as conn:
        return queries.get_run(conn, run_id)


def journal_steps(project, run_id: str):
    with closing(project.journal()) as conn:
        return queries.steps_of(conn, run_id)


def trigger(project, task: str) -> str:
    out = project.cli("trigger", task)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_wake_ends_a_one_hour_sleep_now_and_the_run_completes(project, worker) -> None:
    project.write_tasks(TASKS)
    worker()
    run_id = trigger(project, "napper")
    wait_until(
        lambda: journal_run(project, run_id).status == "waiting",
        timeout=60,
        message="the run to sleep",
    )
    shown = project.cli("show", run_id)
    assert "sleeping until " in shown.stdout and "(in 59m" in shown.stdout, shown.stdout

    woke = project.cli("wake", run_id[:10])  # a prefix works, as for the other commands
    assert woke.returncode == 0, woke.stderr
    assert woke.stdout.strip() == f"woke run {run_id}: its sleep 'long-nap' ends now"
    wait_until(
        lambda: journal_run(project, run_id).status == "completed",
        timeout=60,
        message="the woken run to complete",
    )
    doc = status_of(project, run_id)
    assert doc["output"] == "awake"
    assert [s["status"] for s in doc["steps"]] == ["completed", "completed"]
    logs = project.cli("show", run_id).stdout
    assert "woken by user: its sleep 'long-nap' ends now" in logs

    again = project.cli("wake", run_id)  # completed: nothing to wake, nothing written
    assert_one_line_error(again, f"run {run_id} is completed", "only a sleeping run")


def test_wake_ends_a_step_retry_and_a_run_retry_back_off(project, worker) -> None:
    project.write_tasks(TASKS)
    worker()
    step_run = trigger(project, "flaky-step")
    run_run = trigger(project, "flaky-run")
    wait_until(
        lambda: any(s.status == "retrying" for s in journal_steps(project, step_run)),
        timeout=60,
        message="the step to wait for its retry",
    )
    wait_until(
        lambda: journal_run(project, run_run).attempt == 2,
        timeout=60,
        message="the run to wait for its retry",
    )
    assert "retrying at " in project.cli("show", step_run).stdout

    woke = project.cli("wake", step_run)
    assert woke.returncode == 0, woke.stderr
    assert woke.stdout.strip() == f"woke run {step_run}: its step 'fetch' is retried now"
    woke = project.cli("wake", run_run)
    assert woke.returncode == 0, woke.stderr
    assert woke.stdout.strip() == f"woke run {run_run}: its retry (attempt 2) starts now"
    for rid, output in ((step_run, "ok"), (run_run, "second")):
        wait_until(
            lambda rid=rid: journal_run(project, rid).status == "completed",
            timeout=60,
            message=f"{rid} to complete",
        )
        assert status_of(project, rid)["output"] == output


def test_wake_refuses_runs_that_are_not_sleeping(project) -> None:
    project.write_tasks(TASKS)
    run_id = trigger(project, "quick")  # queued, due now: no worker runs it
    assert_one_line_error(project.cli("wake", run_id), "queued and due now", "nothing to wake")
    assert_one_line_error(project.cli("wake", "nope"), "no run")
