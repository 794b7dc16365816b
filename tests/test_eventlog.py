"""Step events are coalesced (schema V2): readers still see every step change, in order.

A 100-step chain writes a handful of events instead of 200; the last change of a burst is
announced shortly after it; `sylphrun dev --no-tui` prints one line per step change, each
before the line of the run that followed it, found through the feed's exact cursor: no
clock, so a change committed late or two in the same millisecond print once, in order."""

from __future__ import annotations

from conftest import wait_until

from sylphrun import model
from sylphrun.eventlog import EventPrinter
from sylphrun.journal import RunSpec, open_journal, queries
from sylphrun.journal.types import TaskTerms
from sylphrun.runtime.steps import NOTICE_EVERY

TASKS = """
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
"""


def _step_events(conn, run_id: str) -> list[tuple]:
    return [
        e
        for e in queries.events_since(conn, 0, limit=1_000_000)
        if e[2] == run_id and e[3].startswith("step.")
    ]


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
        lambda: next(
            (e for e in _step_events(conn, run_id) if e[3] == "step.completed" and e[4] == "s2"),
            None,
        ),
        timeout=1.5,
        message="an event for the last step's result",
    )
    last = next(s for s in eng.steps(run_id) if s.key == "s2")
    assert event[1] - last.finished_at < NOTICE_EVERY + 0.5
    assert queries.get_run(conn, run_id).status == model.RUNNING
    assert eng.wait(run_id).ok


def _print_changes(journal, printer, cursor):
    """Feed the printer every change after `cursor`, as `follow` does; the cursor after."""
    page = journal.changes_since(cursor, limit=10_000)
    for change in page.changes:
        printer.handle(change)
    printer.end_batch(page.cursor)
    return page.cursor


def test_the_event_log_prints_each_step_change_before_the_run_line(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    journal = open_journal(eng.config.journal)
    start = journal.feed_cursor()
    result = eng.run("mixed")
    assert result.ok, result.error
    lines: list[str] = []
    printer = EventPrinter(journal, lambda text: lines.append(text.plain), start=start)
    _print_changes(journal, printer, start)
    journal.close()
    body = [line.split(" ", 1)[1].strip() for line in lines]
    run = result.run_id
    order = [
        next(i for i, b in enumerate(body) if f"{run} mixed running" in b),
        next(i for i, b in enumerate(body) if f"{run} reserve completed" in b),
        next(i for i, b in enumerate(body) if f"{run} charge failed" in b and "no stock" in b),
        next(
            i
            for i, b in enumerate(body)
            if f"{run} release completed" in b and "[compensation]" in b
        ),
        next(i for i, b in enumerate(body) if f"{run} mixed completed" in b),
    ]
    assert order == sorted(order), body
    # One line per change: a step that started and finished between two looks is one line.
    assert sum(f"{run} reserve" in b for b in body) == 1, body


# -- the log against hand-made journal histories (journal calls, no worker) --------------


def _claimed(journal, now: float):
    [(run_id, _)] = journal.enqueue_runs([RunSpec("t", "{}")], now)
    [claim], _ = journal.claim_runs(
        "w", 1, lease_seconds=60, known_tasks={"t": TaskTerms()}, now=now
    )
    return run_id, claim.epoch


class LivePrinter:
    """An EventPrinter fed the way `follow` feeds it: what is new, after each change."""

    def __init__(self, journal) -> None:
        self.journal, self.lines = journal, []
        self.cursor = journal.feed_cursor()
        self.printer = EventPrinter(
            journal, lambda text: self.lines.append(text.plain), start=self.cursor
        )

    def poll(self) -> list[str]:
        printed = len(self.lines)
        self.cursor = _print_changes(self.journal, self.printer, self.cursor)
        return self.lines[printed:]


def _start(journal, run_id, epoch, key, *, seq, now, notify=True):
    journal.record_step_start(
        run_id,
        epoch,
        key=key,
        name=key,
        kind="step",
        seq=seq,
        run_attempt=1,
        now=now,
        notify=notify,
    )


def _complete(journal, run_id, epoch, key, *, now, notify=True):
    journal.record_step_result(run_id, epoch, key=key, output="1", now=now, notify=notify)


def test_a_step_parked_long_after_it_started_is_printed_waiting(tmp_path):
    journal = open_journal(tmp_path / "journal.db")
    t = 1_000.0
    log = LivePrinter(journal)
    run_id, epoch = _claimed(journal, t)
    _start(journal, run_id, epoch, "collect", seq=1, now=t + 1)
    log.poll()
    # A parallel step, 10 s later: the log has looked at this run since collect started.
    _start(journal, run_id, epoch, "other", seq=2, now=t + 10)
    _complete(journal, run_id, epoch, "other", now=t + 11)
    log.poll()
    # Parked 30 s after it started: parking writes no step timestamp, only its event.
    journal.suspend_run(run_id, epoch, children=[], wake_at=t + 40, now=t + 31)
    log.poll()
    assert any(f"{run_id} collect running" in line for line in log.lines), log.lines
    assert any(f"{run_id} collect waiting" in line for line in log.lines), log.lines
    journal.close()


def test_a_finished_run_retried_or_announced_late_does_not_print_its_old_steps_again(tmp_path):
    journal = open_journal(tmp_path / "journal.db")
    t = 1_000.0
    start = journal.feed_cursor()
    run_id, epoch = _claimed(journal, t)
    for i in range(3):
        _start(journal, run_id, epoch, f"s{i}", seq=i + 1, now=t + i, notify=i == 0)
        _complete(journal, run_id, epoch, f"s{i}", now=t + i, notify=False)
    journal.cancel_run(run_id, now=t + 4)
    # A coalesced flush that lost the race with the cancel writes nothing: it is fenced.
    before = journal.feed_cursor()
    journal.note_step_change(run_id, epoch, key="s2", status="completed", now=t + 4.5)
    assert journal.changes_since(before).changes == []
    lines: list[str] = []
    printer = EventPrinter(journal, lambda text: lines.append(text.plain), start=start)
    cursor = _print_changes(journal, printer, start)
    assert [line for line in lines if " s2 completed" in line], lines
    printed = len(lines)
    journal.retry_run(run_id, now=t + 10)
    _print_changes(journal, printer, cursor)
    new = lines[printed:]
    assert any(f"{run_id} t queued" in line for line in new), new
    assert not any(" completed" in line for line in new), new
    journal.close()


def test_a_step_change_committed_late_with_an_old_time_is_printed_once(tmp_path):
    """The clock played no part: a result stamped long before the log's last look (its
    worker read the clock, then waited on the write lock) still prints, once, in order."""
    journal = open_journal(tmp_path / "journal.db")
    t = 1_000.0
    log = LivePrinter(journal)
    run_id, epoch = _claimed(journal, t)
    _start(journal, run_id, epoch, "early", seq=1, now=t + 1)
    _start(journal, run_id, epoch, "late", seq=2, now=t + 1)
    log.poll()
    # The log looks again and again while time passes (its look is "now": t is long gone).
    _start(journal, run_id, epoch, "third", seq=3, now=t + 100)
    log.poll()
    # Two silent results, the first with a time from before all of that; the coalesced
    # notice names only the last one.
    _complete(journal, run_id, epoch, "early", now=t + 2, notify=False)
    _complete(journal, run_id, epoch, "third", now=t + 101, notify=False)
    journal.note_step_change(run_id, epoch, key="third", status="completed", now=t + 101)
    assert _steps(log.poll()) == [("early", "completed"), ("third", "completed")], log.lines
    assert log.poll() == []
    assert _steps(log.lines) == [
        ("early", "running"),
        ("late", "running"),
        ("third", "running"),
        ("early", "completed"),
        ("third", "completed"),
    ], log.lines
    journal.close()


def _steps(lines: list[str]) -> list[tuple[str, str]]:
    """(key, status) of the step lines ("HH:MM:SS   ✓ run_x key status ...")."""
    return [tuple(line.split()[3:5]) for line in lines if line[8:11] == "   "]


def test_changes_in_the_same_millisecond_print_once_each_in_order_across_polls(tmp_path):
    journal = open_journal(tmp_path / "journal.db")
    t = 1_000.0
    log = LivePrinter(journal)
    run_id, epoch = _claimed(journal, t)
    log.poll()
    # Every write at the same time: nothing but the journal's order tells them apart.
    for i in range(4):
        _start(journal, run_id, epoch, f"s{i}", seq=i + 1, now=t, notify=i == 0)
        if i % 2:
            log.poll()  # the log looks between the changes of the same millisecond
        _complete(journal, run_id, epoch, f"s{i}", now=t, notify=False)
    journal.note_step_change(run_id, epoch, key="s3", status="completed", now=t)
    journal.finish_run(
        run_id, epoch, status="completed", output="null", error=None, traceback=None, now=t
    )
    log.poll()
    log.poll()
    done = [key for key, status in _steps(log.lines) if status == "completed"]
    assert done == ["s0", "s1", "s2", "s3"], log.lines
    assert len(log.lines) == len(set(log.lines)), log.lines  # nothing printed twice
    assert log.lines[-1].endswith("t completed"), log.lines
    journal.close()
