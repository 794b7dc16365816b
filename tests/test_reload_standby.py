"""A reload's processes started ahead: standby workers wait at their gate, imported but
unregistered, until a reload sends them the config; the standby import checker reads the
user's code only when told to go."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import wait_until

from sylphrun.reload import drop_check, run_check, start_check

VERSIONED = """
from sylphrun import task

@task(id="version")
async def version(payload, ctx):
    return await ctx.step.run("read", lambda: "{version}")
"""


def test_standby_workers_claim_nothing_until_a_reload_then_serve_the_new_code(
    project, engine_factory
):
    project.write_tasks(VERSIONED.format(version="v1"))
    eng = engine_factory().start()
    sup = eng.supervisor
    sup.prepare_standby()
    standby = {wp.worker_id: wp.process.pid for wp in sup.standby}
    assert len(standby) == sup.count
    time.sleep(1.0)  # long enough to have imported the runtime and registered, were they free
    assert all(wp.process.exitcode is None for wp in sup.standby)
    assert not set(standby) & sup.live_worker_ids()
    assert eng.run("version").output == "v1"  # served by the old set only

    project.write_tasks(VERSIONED.format(version="v2"))
    new = set(sup.start_replacement(project.config()))
    assert new == set(standby)  # the reload took the standby processes, no new spawn
    assert sup.standby == []
    wait_until(lambda: new <= sup.live_worker_ids(), message="the standby set to register")
    sup.retire_all_but(new)
    wait_until(lambda: {p.worker_id for p in sup.procs} == new, message="the old set to exit")
    assert eng.run("version").output == "v2"


def test_a_standby_worker_that_died_is_replaced_by_a_fresh_one(project, engine_factory):
    project.write_tasks(VERSIONED.format(version="v1"))
    eng = engine_factory().start()
    sup = eng.supervisor
    sup.prepare_standby()
    dead = sup.standby[0]
    os.kill(dead.process.pid, signal.SIGKILL)
    dead.process.join(5)
    new = set(sup.start_replacement())
    assert len(new) == sup.count and dead.worker_id not in new
    wait_until(lambda: new <= sup.live_worker_ids(), message="the replacement set to register")


def test_stopping_the_supervisor_ends_its_standby_workers(project, engine_factory):
    project.write_tasks(VERSIONED.format(version="v1"))
    eng = engine_factory().start()
    sup = eng.supervisor
    sup.prepare_standby()
    procs = [wp.process for wp in sup.standby]
    eng.stop()
    assert sup.standby == []
    assert all(p.exitcode is not None for p in procs)


@pytest.mark.slow  # the import check runs in its own process
def test_the_standby_checker_reads_the_code_saved_after_it_started(project):
    project.write_tasks(VERSIONED.format(version="v1"))
    checker = start_check(project.root)
    time.sleep(0.5)  # it has imported sylphrun and waits
    project.write_tasks(
        VERSIONED.format(version="v2") + "\n@task(id='added')\ndef added(p, ctx):\n    pass\n"
    )
    result = run_check(checker)
    assert result.ok, result.error
    assert result.task_ids == ("added", "version")

    broken = start_check(project.root)
    time.sleep(0.5)
    project.write_tasks("def broken(:\n")
    result = run_check(broken)
    assert not result.ok and "SyntaxError" in (result.error or "")

    idle = start_check(project.root)
    drop_check(idle)  # closing its stdin: it exits at once, checking nothing
    assert idle.returncode == 0


def test_new_workers_say_when_they_registered_and_a_failed_start_ends_the_wait(
    project, engine_factory
):
    project.write_tasks(VERSIONED.format(version="v1"))
    eng = engine_factory().start()
    sup = eng.supervisor
    new = set(sup.start_replacement())
    # The event, not a poll: once it says so, the journal has them (and their tasks).
    assert sup.wait_registered(new, timeout=60)
    assert new <= sup.live_worker_ids()
    sup.retire_all_but(new)

    project.write_tasks("raise RuntimeError('broken on purpose')\n")
    broken = set(sup.start_replacement(project.config()))
    assert not sup.wait_registered(broken, timeout=120)  # they exit: IMPORT_FAILED
    assert not broken & sup.live_worker_ids()
    # It returned because one of them exited (or was already gone), not on the timeout.
    assert any(
        p.process.exitcode is not None for p in sup.procs if p.worker_id in broken
    ) or not broken <= {p.worker_id for p in sup.procs}
    sup.abandon(broken)
    assert eng.run("version").output == "v1"  # the serving set never left
