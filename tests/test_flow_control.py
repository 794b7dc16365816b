"""Flow control with real worker processes: a key's concurrency limit holds across two
workers (measured from a ledger of step starts and ends), a rate limit spreads the starts,
debounce collapses quick triggers, and the CLI's `--priority` and `show`'s `held_by`."""

from __future__ import annotations

import json
from collections import Counter

from conftest import wait_until

from sylphrun import model

TASKS = """
import asyncio, os, time
from ledger_helper import record
from sylphrun import Concurrency, Debounce, RateLimit, task

@task(id="per-user", concurrency=Concurrency(limit=2, key="user_id"))
async def per_user(payload, ctx):
    async def hold():
        record(LEDGER, f"start {payload['user_id']} {ctx.run_id}")
        await asyncio.sleep(payload.get("hold", 0.15))
        record(LEDGER, f"end {payload['user_id']} {ctx.run_id}")
    await ctx.step.run("hold", hold)

@task(id="fan-out")
async def fan_out(payload, ctx):
    handles = await per_user.batch_trigger(
        [{"user_id": u, "i": i} for i in range(4) for u in ("a", "b")], priority=2)
    async def collect():
        return [r.ok for r in await asyncio.gather(*(h.wait_for_completion() for h in handles))]
    return await ctx.step.run("collect", collect)

@task(id="gated", concurrency=Concurrency(limit=1, key=lambda p: p["account"]))
async def gated(payload, ctx):
    async def wait_for_gate():
        while not os.path.exists(payload["gate"]):
            await asyncio.sleep(0.02)
    await ctx.step.run("gate", wait_for_gate)

@task(id="rated", rate_limit=RateLimit(limit=2, period=1.0))
async def rated(payload, ctx):
    return payload["i"]

@task(id="debounced", debounce=Debounce(period=2.0))
async def debounced(payload, ctx):
    record(LEDGER, "debounced " + str(payload["n"]))
    return payload["n"]

# A window no CLI start can outlast on a loaded machine: the CLI test needs no worker.
@task(id="debounced-long", debounce=Debounce(period=600.0))
async def debounced_long(payload, ctx):
    return payload["n"]
"""


def max_overlap_per_key(lines: list[str]) -> dict[str, int]:
    now: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    for line in lines:
        what, key, _ = line.split()
        now[key] += 1 if what == "start" else -1
        peak[key] = max(peak[key], now[key])
    return dict(peak)


def test_a_keys_limit_holds_across_two_worker_processes(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    assert len(eng.worker_pids()) == 2
    ids = [eng.trigger("per-user", {"user_id": u, "i": i}) for i in range(6) for u in (1, 2, 3)]
    assert all(eng.wait(r, timeout=60).ok for r in ids)
    lines = project.ledger_lines()
    assert len(lines) == 2 * len(ids), lines
    peaks = max_overlap_per_key(lines)
    assert set(peaks) == {"1", "2", "3"} and max(peaks.values()) <= 2, (peaks, lines)


def test_children_triggered_in_a_run_get_their_keys_and_priority(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    result = eng.run("fan-out", timeout=60)
    assert result.ok and result.output == [True] * 8, result
    children = eng.steps(result.run_id)[0].child_run_ids
    assert {eng.run_record(c).priority for c in children} == {2}
    peaks = max_overlap_per_key(project.ledger_lines())
    assert set(peaks) == {"a", "b"} and max(peaks.values()) <= 2, peaks


def test_a_rate_limit_spreads_the_starts_and_drops_none(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    ids = [eng.trigger("rated", {"i": i}) for i in range(6)]
    assert [eng.wait(r, timeout=60).output for r in ids] == list(range(6))
    starts = sorted(eng.run_record(r).started_at for r in ids)
    # At most 2 starts in any 1 s: the third start of any three is a period after the first.
    assert all(b - a >= 1.0 for a, b in zip(starts, starts[2:], strict=False)), starts


def test_debounce_collapses_quick_triggers_into_one_run_with_the_last_payload(
    project, engine_factory
):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    ids = [eng.trigger("debounced", {"n": n}) for n in range(5)]
    assert len(set(ids)) == 1
    result = eng.wait(ids[0], timeout=60)
    assert result.ok and result.output == 4
    assert project.ledger_lines() == ["debounced 4"]


def test_cli_priority_held_by_and_a_missing_key(project, engine_factory, tmp_path):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    gate = tmp_path / "gate"
    first, second = (
        project.cli(
            "trigger",
            "gated",
            "--payload",
            json.dumps({"account": 7, "gate": str(gate)}),
            "--priority",
            "3",
        ).stdout.strip()
        for _ in range(2)
    )
    wait_until(lambda: eng.run_record(first).status == model.RUNNING, 30, message="first runs")
    shown = json.loads(project.cli("show", second, "--json").stdout)
    assert shown["status"] == "queued" and shown["priority"] == 3
    assert shown["held_by"] == "concurrency key=7 (1/1)"
    assert "held: concurrency key=7 (1/1)" in project.cli("show", second).stdout
    assert json.loads(project.cli("show", first, "--json").stdout)["held_by"] is None
    gate.touch()
    assert eng.wait(second, timeout=60).ok
    # A run that cannot have a key is refused, and nothing is written.
    bad = project.cli("trigger", "per-user", "--payload", "{}")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "per-user" in bad.stderr and "'user_id'" in bad.stderr
    assert "--priority" in project.cli("trigger", "--help").stdout
    listed = {t["id"]: t for t in json.loads(project.cli("tasks", "--json").stdout)}
    assert listed["per-user"]["flow"] == {"concurrency_per_key": {"limit": 2, "key": "user_id"}}
    assert listed["rated"]["flow"]["rate_limit"] == {"limit": 2, "period": 1.0, "key": None}
    assert "2 per user_id" in project.cli("tasks").stdout
    bad = project.cli("trigger", "rated", "--priority", "high")
    assert bad.returncode == 2


def test_cli_trigger_of_a_debounced_task_hands_back_the_pending_run(project):
    project.write_tasks(TASKS)
    first = project.cli("trigger", "debounced-long", "--payload", '{"n": 1}')
    assert first.returncode == 0, first.stderr
    again = project.cli("trigger", "debounced-long", "--payload", '{"n": 2}')
    run_id = first.stdout.strip()
    assert again.stdout.strip() == run_id and "debounced" in again.stderr
    shown = json.loads(project.cli("show", run_id, "--json").stdout)
    assert shown["payload"] == {"n": 2}
    assert shown["held_by"].startswith("debouncing, starts in ")
