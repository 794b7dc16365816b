"""Events with real workers: `wait_for_event` suspends and resumes on a send, no race with
an early send, one event per wait, fan-out, timeouts, a send inside a run journaled once,
`on_event`, `cancel_on`, `sleep_until`, and waits surviving a restart."""

from __future__ import annotations

import asyncio
import json
from contextlib import closing

import sylphrun
from sylphrun import model
from sylphrun.journal import queries, sent_events
from tests import test_dev
from tests.conftest import ledger_count, wait_until
from tests.test_dev import _edit

dev = test_dev.dev  # the fixture: a real `sylphrun dev --no-tui` process

TASKS = """
import os, json
from datetime import datetime, timezone
from sylphrun import task, CancelOn, send_event
from ledger_helper import record

@task(id="approval")
async def approval(payload, ctx):
    got = await ctx.step.wait_for_event("approved", "order.approved",
                                        match={"order_id": payload["order_id"]},
                                        timeout=payload.get("timeout"))
    await ctx.step.run("after", lambda: record(LEDGER, f"after {payload['order_id']}"))
    return got

@task(id="gated")
async def gated(payload, ctx):
    # Busy elsewhere (a step waiting for a file) while the event is sent: it still counts.
    def gate():
        import time
        while not os.path.exists(payload["gate"]):
            time.sleep(0.01)
    await ctx.step.run("gate", gate)
    return await ctx.step.wait_for_event("w", "ping")

@task(id="two-waits")
async def two_waits(payload, ctx):
    a = await ctx.step.wait_for_event("a", "ping")
    b = await ctx.step.wait_for_event("b", "ping")
    return [a["n"], b["n"]]

@task(id="sync-wait")
def sync_wait(payload, ctx):  # a plain `def` task: ctx.step calls block its thread
    return ctx.step.wait_for_event("w", "ping", match={"n": 2})

@task(id="sender", retry=__import__("sylphrun").Retry(max_attempts=2, min_delay=0, jitter=0))
async def sender(payload, ctx):
    sent = await send_event("order.approved", {"order_id": payload["order_id"]})
    record(LEDGER, "sent")
    if ctx.attempt == 1:
        raise RuntimeError("fail after sending")
    return sent.event_id

@task(id="step-sender")
async def step_sender(payload, ctx):
    async def notify():
        sent = await send_event("ping", {"n": payload["n"]})
        record(LEDGER, "notified")
        if not os.path.exists(payload["marker"]):
            open(payload["marker"], "w").close()
            raise ConnectionError("flaky after the send")
        return sent.event_id
    return await ctx.step.run("notify", notify, retry=__import__("sylphrun").Retry(
        max_attempts=2, min_delay=0, jitter=0))

@task(id="on-created", on_event="order.created")
async def on_created(payload, ctx):
    return payload

@task(id="cancellable", cancel_on=[CancelOn("order.cancelled", match="order_id")])
async def cancellable(payload, ctx):
    await ctx.step.wait_for_event("never", "never.sent")

@task(id="naive")
async def naive(payload, ctx):
    await ctx.step.sleep_until("nap", datetime(2030, 1, 1))

@task(id="bad-match")
async def bad_match(payload, ctx):
    await ctx.step.wait_for_event("w", "e", match={"ids": [1, 2]})

@task(id="until")
async def until(payload, ctx):
    await ctx.step.sleep_until("nap", datetime.fromtimestamp(payload["at"], timezone.utc))
    return "woke"
"""


def send(name, data=None, **kw):
    return asyncio.run(sylphrun.send_event(name, data, **kw))


def status(eng, run_id):
    return eng.run_record(run_id).status


def test_a_waiting_run_holds_no_worker_and_resumes_with_the_events_data(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    run_id = eng.trigger("approval", {"order_id": 42})
    other = eng.trigger("approval", {"order_id": 42})
    wait_until(
        lambda: status(eng, run_id) == status(eng, other) == model.WAITING,
        timeout=60,
        message="both runs to wait",
    )
    [w] = sent_events.event_waits_of(eng.conn, run_id)
    assert (w.event, w.match, w.timeout_at) == ("order.approved", {"order_id": 42}, None)
    shown = project.cli("show", run_id)
    assert "waiting for event order.approved where order_id=42" in shown.stdout, shown.stderr
    doc = json.loads(project.cli("show", run_id, "--json").stdout)
    assert doc["waiting_for"] == [
        {
            "step": "approved",
            "event": "order.approved",
            "match": {"order_id": 42},
            "timeout_at": None,
        }
    ]
    assert send("order.approved", {"order_id": 41}).matched_runs == []
    sent = send("order.approved", {"order_id": 42, "by": "ann"})
    assert sorted(sent.matched_runs) == sorted([run_id, other])  # fan-out
    for rid in (run_id, other):
        result = eng.wait(rid, timeout=60)
        assert result.ok and result.output == {"order_id": 42, "by": "ann"}
    step = next(s for s in eng.steps(run_id) if s.key == "approved")
    assert (step.kind, step.output["event_id"]) == (model.WAIT, sent.event_id)


def test_an_event_sent_before_the_wait_began_is_not_missed(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    gate = project.root / "gate"
    run_id = eng.trigger("gated", {"gate": str(gate)})
    wait_until(
        lambda: any(s.key == "gate" for s in eng.steps(run_id)),
        timeout=60,
        message="the run to be busy in its gate step",
    )
    send("ping", {"n": 1})
    gate.touch()
    assert eng.wait(run_id, timeout=60).output == {"n": 1}


def test_two_waits_get_two_events_in_send_order_and_a_timeout_gives_none(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    two = eng.trigger("two-waits")
    sync = eng.trigger("sync-wait")
    timed = eng.trigger("approval", {"order_id": 7, "timeout": 0.5})
    send("ping", {"n": 1})
    send("ping", {"n": 2})
    assert eng.wait(two, timeout=60).output == [1, 2]
    assert eng.wait(sync, timeout=60).output == {"n": 2}
    result = eng.wait(timed, timeout=60)
    assert result.ok and result.output is None
    assert ledger_count(project, "after 7") == 1


def test_a_send_inside_a_retried_run_is_sent_once(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    waiter = eng.trigger("approval", {"order_id": 5})
    run_id = eng.trigger("sender", {"order_id": 5})
    result = eng.wait(run_id, timeout=60)
    assert result.ok and eng.run_record(run_id).attempt == 2
    assert ledger_count(project, "sent") == 2
    assert [e.event_id for e in sent_events.recent_events(eng.conn)] == [result.output]
    assert eng.wait(waiter, timeout=60).output == {"order_id": 5}


def test_a_send_inside_a_retried_step_function_is_sent_once(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    run_id = eng.trigger("step-sender", {"n": 3, "marker": str(project.root / "m")})
    result = eng.wait(run_id, timeout=60)
    assert result.ok and ledger_count(project, "notified") == 2
    assert [e.event_id for e in sent_events.recent_events(eng.conn)] == [result.output]


def test_concurrent_senders_give_each_waiting_run_exactly_its_event(project, engine_factory):
    import subprocess
    import sys

    project.write_tasks(TASKS)
    eng = engine_factory().start()
    runs = {i: eng.trigger("approval", {"order_id": i}) for i in range(24)}
    wait_until(
        lambda: sum(status(eng, r) == model.WAITING for r in runs.values()) >= 12,
        timeout=90,
        message="half the runs to wait",
    )
    script = (
        "import asyncio, sys, sylphrun\n"
        "async def main():\n"
        "    for i in range(int(sys.argv[1]), 24, 3):\n"
        "        event = {'order_id': i, 'from': sys.argv[1]}\n"
        "        await sylphrun.send_event('order.approved', event)\n"
        "asyncio.run(main())\n"
    )
    senders = [
        subprocess.Popen([sys.executable, "-c", script, str(k)], cwd=project.root) for k in range(3)
    ]
    assert [p.wait(60) for p in senders] == [0, 0, 0]
    for i, run_id in runs.items():
        result = eng.wait(run_id, timeout=90)
        assert result.output == {"order_id": i, "from": str(i % 3)}
        assert ledger_count(project, f"after {i}") == 1


def test_on_event_triggers_and_cancel_on_cancels_from_the_cli(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    out = project.cli("send", "order.created", "--data", '{"order_id": 9}', "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    [triggered] = doc["triggered_runs"]
    assert eng.wait(triggered, timeout=60).output == {"order_id": 9}
    again = project.cli(
        "send", "order.created", "--data", '{"order_id": 9}', "--id", doc["event_id"], "--json"
    )
    assert json.loads(again.stdout)["triggered_runs"] == [triggered]
    keep = eng.trigger("cancellable", {"order_id": 1})
    stop = eng.trigger("cancellable", {"order_id": 2})
    wait_until(
        lambda: status(eng, keep) == status(eng, stop) == model.WAITING,
        timeout=60,
        message="both runs to wait",
    )
    out = project.cli("send", "order.cancelled", "--data", '{"order_id": 2}')
    assert out.returncode == 0 and out.stdout.startswith("evt_"), out.stderr
    assert status(eng, stop) == model.CANCELLED and status(eng, keep) == model.WAITING
    assert eng.steps(stop)[0].status == model.STEP_CANCELLED
    rows = {r["id"]: r for r in json.loads(project.cli("tasks", "--json").stdout)}
    assert rows["on-created"]["on_event"] == ["order.created"]
    assert rows["cancellable"]["cancel_on"] == [{"event": "order.cancelled", "match": "order_id"}]
    assert "on_event" not in rows["approval"]
    listed = json.loads(project.cli("events", "--json").stdout)
    assert [e["name"] for e in listed][:2] == ["order.cancelled", "order.created"]
    assert listed[0]["cancelled_runs"] == [stop]
    text = project.cli("events", "--name", "order.created").stdout.splitlines()
    assert len(text) == 1 and f"triggered {triggered}" in text[0]


def test_bad_sends_are_one_line_and_write_nothing(project):
    project.write_tasks(TASKS)
    huge = json.dumps({"x": "y" * 1_100_000})
    for args, stdin in (
        (["--data", "{oops"], None),
        (["--data", "[1]"], None),
        (["--data", '{"x": NaN}'], None),
        (["--data", "-"], huge),
        (["--data", "{}", "--id", ""], None),
        (["", "--data", "{}"], None),
    ):
        out = project.cli("send", *(args if args[0] == "" else ["e", *args]), input=stdin)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, (args, out.stderr)
        assert out.stderr.startswith("error: ")
    with closing(project.journal()) as conn:
        assert sent_events.recent_events(conn) == []
    out = project.cli("send", "order.created")  # no worker ever registered the tasks
    assert out.returncode == 0 and "no worker has registered tasks" in out.stderr


def test_a_wait_survives_a_restart_and_gets_an_event_sent_while_no_worker_ran(
    project, engine_factory
):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    run_id = eng.trigger("approval", {"order_id": 3})
    wait_until(lambda: status(eng, run_id) == model.WAITING, timeout=60, message="the wait")
    eng.stop()
    send("order.approved", {"order_id": 3})
    eng = engine_factory().start()
    assert eng.wait(run_id, timeout=60).output == {"order_id": 3}


def test_sleep_until_a_time_and_bad_arguments_fail_the_run_in_one_line(project, engine_factory):
    import time

    project.write_tasks(TASKS)
    eng = engine_factory().start()
    at = time.time() + 1
    run_id = eng.trigger("until", {"at": at})
    assert eng.wait(run_id, timeout=60).output == "woke"
    nap = next(s for s in eng.steps(run_id) if s.key == "nap")
    assert nap.kind == model.SLEEP and abs(nap.output["wake_at"] - at) < 1e-3
    assert nap.finished_at >= at
    for task_id, words in (("naive", "has no timezone"), ("bad-match", "match['ids'] must be")):
        result = eng.run(task_id, timeout=60)
        assert result.status == model.FAILED and words in result.error, result.error
        assert "\n" not in result.error
    with closing(project.journal()) as conn:
        assert queries.get_run(conn, run_id).status == model.COMPLETED


RELOADABLE = """
from ledger_helper import record
from sylphrun import task

VERSION = "v1"

@task(id="approve-me")
async def approve_me(payload, ctx):
    got = await ctx.step.wait_for_event("approval", "approved")
    return await ctx.step.run("after", lambda: record(LEDGER, "after-" + VERSION) or
                              [VERSION, got])
"""


def test_a_wait_survives_a_reload_and_resumes_on_the_new_code(project, dev):
    source = project.write_tasks(RELOADABLE)
    d = dev()
    d.wait_for("watching")
    run_id = project.cli("trigger", "approve-me").stdout.strip()
    with closing(project.journal()) as conn:
        wait_until(
            lambda: queries.get_run(conn, run_id).status == model.WAITING,
            timeout=60,
            message="the run to wait",
        )
        _edit(source, 'VERSION = "v1"', 'VERSION = "v2"')
        d.wait_for("reloaded", timeout=60)
        out = project.cli("send", "approved", "--data", '{"ok": true}', "--json")
        assert json.loads(out.stdout)["matched_runs"] == [run_id], out.stderr
        wait_until(
            lambda: queries.get_run(conn, run_id).finished, timeout=60, message="the run to finish"
        )
        assert queries.get_run(conn, run_id).output == ["v2", {"ok": True}]


def test_wake_on_a_run_waiting_for_an_event_prints_the_send_that_ends_the_wait(
    project, engine_factory
):
    import shlex

    from tests.test_cli import assert_one_line_error

    project.write_tasks(TASKS)
    eng = engine_factory().start()
    run_id = eng.trigger("approval", {"order_id": 42})
    wait_until(lambda: status(eng, run_id) == model.WAITING, timeout=60, message="the wait")
    out = project.cli("wake", run_id)
    assert_one_line_error(
        out,
        "waiting for event order.approved where order_id=42",
        "sylphrun send order.approved --data",
    )
    assert "child runs" not in out.stderr
    command = out.stderr.strip().split("send it: ", 1)[1]
    sent = project.cli(*shlex.split(command)[1:])  # the command as printed ends the wait
    assert sent.returncode == 0, sent.stderr
    assert eng.wait(run_id, timeout=60).output == {"order_id": 42}
