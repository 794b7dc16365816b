"""Events under SIGKILL (issue 14): RUNS runs each wait for the event matching its own key
(`match={"n": i}`) while 4 sender processes send the RUNS events and two `sylphrun worker`
processes are killed (-9: the whole process group, or the supervisor alone) at random and
started again. Every run must get exactly its own event, no event may be taken twice or
lost: checked from the journal (each run's output and wait step, each event consumed once)
and from a ledger the step after the wait appends to.

SYLPHRUN_TORTURE_SEED reproduces a run; SYLPHRUN_EVENT_TORTURE_RUNS sizes it (the issue's
1,000: see the reliability table in bench/README.md for what it gives by hand).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict

from conftest import Background, wait_until

from sylphrun.trigger import batch_trigger

SEED = int(os.environ.get("SYLPHRUN_TORTURE_SEED", "7"))
RUNS = int(os.environ.get("SYLPHRUN_EVENT_TORTURE_RUNS", "200"))
SENDERS = 4

TASKS = """
from ledger_helper import record
from sylphrun import task

@task(id="await-n")
async def await_n(payload, ctx):
    got = await ctx.step.wait_for_event("go", "torture.go", match={"n": payload["n"]})
    await ctx.step.run("after", lambda: record(
        LEDGER, f"{ctx.run_id}|{payload['n']}|{got['n']}|{got['from']}"))
    return got
"""

# Each sender sends the events n = k, k+4, ... with a small random pause, so the sends
# spread over the kills; an id per event (a sender is not killed here, but a retried send
# must not count twice).
SENDER = """
import asyncio, random, sys, time
import sylphrun

async def main(k, runs, seed):
    rng = random.Random(seed * 10 + k)
    for n in range(k, runs, 4):
        await sylphrun.send_event("torture.go", {"n": n, "from": k}, id=f"go-{n}")
        if rng.random() < 0.1:
            time.sleep(rng.uniform(0.0, 0.05))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
"""


def _db(project) -> sqlite3.Connection:
    return sqlite3.connect(str(project.config().journal), timeout=30)


def _count(project, sql: str, *args) -> int:
    if not project.config().journal.exists():  # no worker has created it yet
        return 0
    db = _db(project)
    try:
        return db.execute(sql, args).fetchone()[0]
    except sqlite3.OperationalError:  # its tables are being created
        return 0
    finally:
        db.close()


def _kill_one(
    rng: random.Random,
    workers: list[Background],
    retired: list[Background],
    kills: dict[str, int],
    root,
) -> None:
    i = rng.randrange(len(workers))
    if rng.random() < 0.6:
        workers[i].kill()
        kills["group"] += 1
    else:
        # The supervisor alone: its workers are orphaned and exit on their own.
        os.kill(workers[i].proc.pid, signal.SIGKILL)
        workers[i].proc.wait(10)
        retired.append(workers[i])
        kills["supervisor"] += 1
    workers[i] = Background(root, "worker", "--workers", "1")


def test_every_waiting_run_gets_exactly_its_event_while_workers_are_killed(project):
    rng = random.Random(SEED)
    project.write_tasks(TASKS)
    workers = [Background(project.root, "worker", "--workers", "1") for _ in range(2)]
    retired: list[Background] = []
    kills = {"group": 0, "supervisor": 0}
    senders: list[subprocess.Popen] = []
    try:
        wait_until(
            lambda: _count(project, "SELECT COUNT(*) FROM tasks WHERE id = 'await-n'"),
            timeout=60,
            message="a worker to register the task",
        )
        handle = asyncio.run(batch_trigger("await-n", [{"n": n} for n in range(RUNS)]))
        run_of = dict(enumerate(handle.run_ids))
        wait_until(
            lambda: _count(project, "SELECT COUNT(*) FROM event_waits") >= RUNS // 2,
            timeout=120,
            message="half the runs to wait",
        )
        started = time.monotonic()
        senders = [
            subprocess.Popen(
                [sys.executable, "-c", SENDER, str(k), str(RUNS), str(SEED)], cwd=project.root
            )
            for k in range(SENDERS)
        ]
        while any(p.poll() is None for p in senders) or sum(kills.values()) < 6:
            time.sleep(rng.uniform(0.1, 0.8))  # when the next kill lands: the torture's dice
            _kill_one(rng, workers, retired, kills, project.root)
        assert [p.wait(60) for p in senders] == [0] * SENDERS
        sent_in = time.monotonic() - started  # to the kill loop's granularity (< 1 s)
        wait_until(
            lambda: _count(project, "SELECT COUNT(*) FROM runs WHERE status = 'completed'") == RUNS,
            timeout=240,
            interval=0.2,
            message=f"all {RUNS} runs to complete (kills: {kills})",
        )
    finally:
        for p in senders:
            if p.poll() is None:
                p.kill()
        for w in retired:
            try:
                os.killpg(w.proc.pid, signal.SIGKILL)  # an orphan that lingered
            except ProcessLookupError:
                pass
        for w in workers + retired:
            w.kill()
    assert sum(kills.values()) >= 6, kills
    print(
        f"\nevent torture: {RUNS} runs, {RUNS} events from {SENDERS} processes in "
        f"{sent_in:.1f} s, all done {time.monotonic() - started:.1f} s after the first "
        f"send; kills {kills}"
    )
    _check_journal(project, run_of)
    _check_ledger(project, run_of)


def _check_journal(project, run_of: dict[int, str]) -> None:
    db = _db(project)
    try:
        outputs = dict(db.execute("SELECT id, output FROM runs WHERE task_id = 'await-n'"))
        waits = dict(
            db.execute("SELECT run_id, output FROM steps WHERE key = 'go' AND status = 'completed'")
        )
        sent = dict(db.execute("SELECT id, seq FROM sent_events WHERE name = 'torture.go'"))
        consumed = db.execute(
            "SELECT event_seq, run_id FROM event_deliveries WHERE outcome = 'consumed'"
        ).fetchall()
        open_waits = db.execute("SELECT COUNT(*) FROM event_waits").fetchone()[0]
    finally:
        db.close()
    assert len(outputs) == len(run_of) and len(sent) == len(run_of)
    wrong = {
        n: outputs[r]
        for n, r in run_of.items()
        if json.loads(outputs[r]) != {"n": n, "from": n % SENDERS}
    }
    assert not wrong, f"runs with another event's data: {dict(list(wrong.items())[:5])}"
    took = {n: json.loads(waits[r])["event_id"] for n, r in run_of.items()}
    assert took == {n: f"go-{n}" for n in run_of}, "a wait step took another event"
    by_event: dict[int, list[str]] = defaultdict(list)
    for seq, run_id in consumed:
        by_event[seq].append(run_id)
    expected = {sent[f"go-{n}"]: [r] for n, r in run_of.items()}
    twice = {s: rs for s, rs in by_event.items() if len(rs) > 1}
    assert not twice, f"events consumed twice: {dict(list(twice.items())[:5])}"
    assert dict(by_event) == expected, "an event consumed by the wrong run, or not at all"
    assert open_waits == 0


def _check_ledger(project, run_of: dict[int, str]) -> None:
    """The step after the wait may run again if its worker died before its commit (at
    least once), but every run of it saw its own run's event, and each run got there."""
    lines: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for line in project.ledger_lines():
        run_id, n, got, sender = line.split("|")
        lines[run_id].append((n, got, sender))
    missing = [n for n, r in run_of.items() if not lines.get(r)]
    assert not missing, f"runs whose step after the wait never ran: {missing[:10]}"
    wrong = {
        r: seen
        for r, seen in lines.items()
        if any(n != got or int(sender) != int(n) % SENDERS for n, got, sender in seen)
    }
    assert not wrong, f"a step saw another run's event: {dict(list(wrong.items())[:5])}"
    assert set(lines) == set(run_of.values())
