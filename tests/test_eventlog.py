"""Step events are coalesced (schema V2): readers still see every step change, in order.

A 100-step chain writes a handful of events instead of 200; the last change of a burst is
announced shortly after it; `sylphrun dev --no-tui` prints one line per step change, each
before the line of the run that followed it."""

from __future__ import annotations

import time

from conftest import wait_until

from sylphrun import model
from sylphrun.eventlog import EventPrinter
from sylphrun.journal import queries
from sylphrun.runtime.steps import NOTICE_EVERY

TASKS = '''
import asyncio
from sylphrun import task

async def same(x):
    return x

@task(id="chain")
async def chain(payload, ctx):
    for i in range(payload["n"]):
        await ctx.step.run(f"s{i}", same, i)
    # The body goes on after its last step without writing anything for a while.
    await asyncio.sleep(payload.get("linger", 0))
    return payload["n"]

def boom():
    raise ValueError("no stock")

@task(id="mixed")
async def mixed(payload, ctx):
    await ctx.step.run("reserve", same, 1)
    try:
        await ctx.step.run("charge", boom)
    except Exception:
        await ctx.step.run("release", same, 2)
    return "done"
'''


def _step_events(conn, run_id: str) -> list[tuple]:
    return [e for e in queries.events_since(conn, 0, limit=1_000_000)
            if e[2] == run_id and e[3].startswith("step.")]


def test_a_burst_of_steps_writes_a_few_events_not_one_per_change(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("chain", {"n": 100})
    assert result.ok, result.error
    steps = eng.steps(result.run_id)
    assert len(steps) == 100 and all(s.status == model.STEP_COMPLETED for s in steps)
    events = _step_events(eng.conn, result.run_id)
    # 200 step writes; one event per NOTICE_EVERY window at most, plus the first.
    elapsed = steps[-1].finished_at - steps[0].started_at
    assert 1 <= len(events) <= 2 + elapsed / NOTICE_EVERY, (len(events), elapsed)
    assert len(events) < 20


def test_the_last_change_of_a_burst_is_announced_soon_after(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    run_id = eng.trigger("chain", {"n": 3, "linger": 2.0})
    conn = eng.conn
    # While the body lingers (no write for 2 s), the last step's result gets its event.
    event = wait_until(
        lambda: next((e for e in _step_events(conn, run_id)
                      if e[3] == "step.completed" and e[4] == "s2"), None),
        timeout=1.5, message="an event for the last step's result")
    last = next(s for s in eng.steps(run_id) if s.key == "s2")
    assert event[1] - last.finished_at < NOTICE_EVERY + 0.5
    assert queries.get_run(conn, run_id).status == model.RUNNING
    assert eng.wait(run_id).ok


def test_the_event_log_prints_each_step_change_before_the_run_line(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    started = time.time()
    result = eng.run("mixed")
    assert result.ok, result.error
    lines: list[str] = []
    printer = EventPrinter(eng.conn, lambda text: lines.append(text.plain), started=started)
    for event in queries.events_since(eng.conn, 0, limit=10_000):
        printer.handle(event)
    printer.end_batch()
    body = [line.split(" ", 1)[1].strip() for line in lines]
    run = result.run_id
    order = [
        next(i for i, b in enumerate(body) if f"{run} mixed running" in b),
        next(i for i, b in enumerate(body) if f"{run} reserve completed" in b),
        next(i for i, b in enumerate(body) if f"{run} charge failed" in b and "no stock" in b),
        next(i for i, b in enumerate(body) if f"{run} release completed" in b and "[compensation]" in b),
        next(i for i, b in enumerate(body) if f"{run} mixed completed" in b),
    ]
    assert order == sorted(order), body
    # One line per change: a step that started and finished between two looks is one line.
    assert sum(f"{run} reserve" in b for b in body) == 1, body


# -- the log against hand-made journal histories (store calls, no worker) ---------------


def _claimed(conn, now: float):
    from sylphrun.journal import RunSpec, store

    [(run_id, _)] = store.enqueue_runs(conn, [RunSpec("t", "{}")], now)
    [claim], _ = store.claim_runs(conn, "w", 1, lease_seconds=60,
                                  known_tasks={"t": store.TaskTerms()}, now=now)
    return run_id, claim.epoch


def _print_all(conn, printer) -> None:
    for event in queries.events_since(conn, 0, limit=10_000):
        printer.handle(event)
    printer.end_batch()


class LivePrinter:
    """An EventPrinter fed the way `follow` feeds it: what is new, after each change."""

    def __init__(self, conn, started: float) -> None:
        self.conn, self.last, self.lines = conn, 0, []
        self.printer = EventPrinter(conn, lambda text: self.lines.append(text.plain),
                                    started=started)

    def poll(self) -> None:
        events = queries.events_since(self.conn, self.last, limit=10_000)
        for event in events:
            self.last = event[0]
            self.printer.handle(event)
        self.printer.end_batch()


def test_a_step_parked_long_after_it_started_is_printed_waiting(tmp_path):
    from sylphrun.journal import Connection, store

    conn = Connection(tmp_path / "journal.db")
    t = time.time() - 60
    log = LivePrinter(conn, started=t)
    run_id, epoch = _claimed(conn, t)
    store.record_step_start(conn, run_id, epoch, key="collect", name="collect", kind="step",
                            seq=1, run_attempt=1, now=t + 1)
    log.poll()
    # A parallel step, 10 s later: the log has looked at this run since collect started.
    store.record_step_start(conn, run_id, epoch, key="other", name="other", kind="step",
                            seq=2, run_attempt=1, now=t + 10)
    store.record_step_result(conn, run_id, epoch, key="other", output="1", now=t + 11)
    log.poll()
    # Parked 30 s after it started: parking writes no step timestamp, only its event.
    store.suspend_run(conn, run_id, epoch, children=[], wake_at=t + 40, now=t + 31)
    log.poll()
    assert any(f"{run_id} collect running" in line for line in log.lines), log.lines
    assert any(f"{run_id} collect waiting" in line for line in log.lines), log.lines
    conn.close()


def test_a_finished_run_retried_or_announced_late_does_not_print_its_old_steps_again(tmp_path):
    from sylphrun.journal import Connection, store

    conn = Connection(tmp_path / "journal.db")
    t = time.time() - 5
    run_id, epoch = _claimed(conn, t)
    for i in range(3):
        store.record_step_start(conn, run_id, epoch, key=f"s{i}", name=f"s{i}", kind="step",
                                seq=i + 1, run_attempt=1, now=t + i, notify=i == 0)
        store.record_step_result(conn, run_id, epoch, key=f"s{i}", output="1", now=t + i,
                                 notify=False)
    store.cancel_run(conn, run_id, now=t + 4)
    # A coalesced flush that lost the race with the cancel writes nothing: it is fenced.
    before = queries.last_event_id(conn)
    store.note_step_change(conn, run_id, epoch, key="s2", status="completed", now=t + 4.5)
    assert queries.last_event_id(conn) == before
    lines: list[str] = []
    printer = EventPrinter(conn, lambda text: lines.append(text.plain), started=t)
    _print_all(conn, printer)
    assert [line for line in lines if " s2 completed" in line], lines
    printed = len(lines)
    store.retry_run(conn, run_id, now=time.time())
    for event in queries.events_since(conn, before, limit=10_000):
        printer.handle(event)
    printer.end_batch()
    new = lines[printed:]
    assert any(f"{run_id} t queued" in line for line in new), new
    assert not any(" completed" in line for line in new), new
    conn.close()
