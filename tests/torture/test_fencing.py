"""Fenced leases: a worker frozen (SIGSTOP) mid-step past its lease loses the run to
another worker; when it wakes (SIGCONT) every write it tries is rejected by the lease
epoch. A worker frozen while it holds the journal's write lock, which would stall every
other writer and so the takeover itself, is replaced by its supervisor."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import psutil
import pytest
from conftest import step_by_key, wait_until

from sylphrun import model
from sylphrun.journal import queries, store
from sylphrun.journal.connection import write_lock_holder

LEASE = 1.0
HEARTBEAT = 0.25

TASKS = """
import os
import time
from ledger_helper import record
from sylphrun import task

def effect(ctx, seconds):
    key = ctx.step.idempotency_key
    record(LEDGER, f"E|{key}|{os.getpid()}")
    time.sleep(seconds)
    record(LEDGER, f"F|{key}|{os.getpid()}")
    ctx.log.info(f"{key} finished in {os.getpid()}")
    return {"pid": os.getpid()}

@task(id="six")
async def six(payload, ctx):
    for i in range(6):
        await ctx.step.run(f"s{i}", effect, ctx, 1.5 if i == 2 else 0.01)
    return "done"

@task(id="hot")
async def hot(payload, ctx):
    for i in range(payload["n"]):
        await ctx.step.run(f"s{i}", lambda: None)
    return "done"

@task(id="quick")
async def quick(payload, ctx):
    return await ctx.step.run("one", lambda: 1)
"""


def _lines(project, kind: str, key: str) -> list[int]:
    return [
        int(x.split("|")[2])
        for x in project.ledger_lines()
        if x.startswith(f"{kind}|") and x.split("|")[1].endswith(f":{key}")
    ]


def test_a_worker_stopped_past_its_lease_is_fenced_out_when_it_wakes(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory(lease_seconds=LEASE, heartbeat_seconds=HEARTBEAT).start()
    run_id = eng.trigger("six")
    wait_until(lambda: _lines(project, "E", "s2"), message="step s2 to start")
    [stale] = _lines(project, "E", "s2")
    epoch = queries.lease_states(eng.conn, [run_id])[run_id][0]
    os.kill(stale, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        wait_until(
            lambda: queries.lease_states(eng.conn, [run_id])[run_id][0] > epoch,
            timeout=10,
            interval=0.01,
            message="another worker to take the run",
        )
        taken_after = time.monotonic() - stopped_at
        result = eng.wait(run_id, timeout=20)
        assert result.ok, result.error
        steps = eng.steps(run_id)
        logs = queries.logs_of(eng.conn, run_id)
    finally:
        os.kill(stale, signal.SIGCONT)
    # Re-dispatched within one lease period plus one heartbeat (plus the 0.25 s idle poll
    # and scheduling slack on a busy 2-core machine).
    assert taken_after < LEASE + HEARTBEAT + 0.25 + 0.5, f"taken over after {taken_after:.2f} s"
    # The stale worker wakes, finishes its step function, then tries to journal the result
    # and a log line: both rejected.
    wait_until(lambda: stale in _lines(project, "F", "s2"), message="the stale step to return")
    time.sleep(0.5)
    assert eng.steps(run_id) == steps
    assert queries.logs_of(eng.conn, run_id) == logs
    s2 = step_by_key(eng, run_id, "s2")
    assert s2.output["pid"] != stale  # the new owner's result, not the stale one's
    assert s2.attempts == 2 and [a.status for a in s2.attempt_log] == [model.STEP_INTERRUPTED]
    assert not [line for line in logs if str(stale) in line.message and "s2" in line.message]
    # Every other step committed exactly once.
    for i in (0, 1, 3, 4, 5):
        assert len(_lines(project, "E", f"s{i}")) == 1
    # Fenced, not killed: the stale worker dropped the run and carries on serving.
    assert psutil.Process(stale).status() != psutil.STATUS_ZOMBIE
    assert eng.run("quick", timeout=10).ok


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc/locks")
def test_a_worker_stopped_inside_a_write_is_replaced_so_nothing_stalls(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory(lease_seconds=3.0, heartbeat_seconds=HEARTBEAT).start()
    journal = eng.config.journal
    hot = [eng.trigger("hot", {"n": 20_000}) for _ in range(2)]
    workers = set(eng.worker_pids())
    frozen = None
    for _ in range(2000):  # freeze a worker at a moment it holds the write lock
        pid = write_lock_holder(journal)
        if pid not in workers:
            continue
        os.kill(pid, signal.SIGSTOP)
        wait_until(
            lambda pid=pid: psutil.Process(pid).status() == psutil.STATUS_STOPPED,
            interval=0.001,
            message="SIGSTOP",
        )
        if write_lock_holder(journal) == pid:
            frozen = pid
            break
        os.kill(pid, signal.SIGCONT)
    assert frozen is not None, "never caught a worker inside a write"
    try:
        # Any writer now waits on the frozen worker: a trigger, the other worker's claims
        # and heartbeats, the supervisor's releases. It must not wait for long.
        outcome: dict = {}
        started = time.monotonic()

        def trigger() -> None:
            outcome["run"] = eng.trigger("quick")
            outcome["took"] = time.monotonic() - started

        thread = threading.Thread(target=trigger, daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "a trigger waited 10 s on a frozen worker's write lock"
        assert eng.wait(outcome["run"], timeout=20).ok
    finally:
        try:
            os.kill(frozen, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert outcome["took"] < 3.0, outcome  # a heartbeat or so, not a lease
    assert frozen not in eng.worker_pids()
    with pytest.raises(psutil.NoSuchProcess):
        if psutil.Process(frozen).status() == psutil.STATUS_ZOMBIE:
            raise psutil.NoSuchProcess(frozen)
    # Both hot runs go on (the frozen worker's was released when it was killed), and no
    # step was committed twice.
    progress = {rid: len(eng.steps(rid)) for rid in hot}
    wait_until(
        lambda: all(len(eng.steps(rid)) > progress[rid] + 50 for rid in hot),
        timeout=20,
        message="both hot runs to go on",
    )
    for rid in hot:
        store.cancel_run(eng.conn, rid, time.time())
        assert all(s.attempts <= 2 for s in eng.steps(rid))
    assert queries.integrity_check(eng.conn) == "ok"
