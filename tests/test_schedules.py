"""Schedules with real processes: `sylphrun worker` supervisors serving one journal fire
each slot once, a restart after downtime catches up by the policy, the CLI pauses and
resumes. Runs are counted per slot from the journal."""

from __future__ import annotations

import time

from conftest import slot_counts, slot_seconds, wait_until

TASKS = """
from sylphrun import task

@task(id="tick", schedule=1)
async def tick(payload, ctx):
    return payload["scheduled_at"]

@task(id="tick-all", schedule=1, catchup="all")
async def tick_all(payload, ctx):
    return payload["scheduled_at"]
"""


def fired(project, task_id: str, at_least: int, after: int | None = None) -> bool:
    slots = slot_seconds(slot_counts(project, task_id))
    return len([s for s in slots if after is None or s > after]) >= at_least


def test_two_workers_fire_each_slot_once(project, background):
    project.write_tasks(TASKS)
    background("worker", "--workers", "1")
    background("worker", "--workers", "1")
    wait_until(
        lambda: fired(project, "tick", 6) and fired(project, "tick-all", 6),
        timeout=60,
        message="six slots of each scheduled task",
    )
    for task_id in ("tick", "tick-all"):
        counts = slot_counts(project, task_id)
        assert set(counts.values()) == {1}, f"{task_id}: a slot ran twice: {counts}"
    # catchup="all": not one slot lost between the first and the last, whoever fired them.
    slots = slot_seconds(slot_counts(project, "tick-all"))
    assert slots == list(range(slots[0], slots[-1] + 1))
    runs = project.cli("runs", "--task", "tick", "--json")
    assert '"scheduled_at"' in runs.stdout


def test_dev_and_a_worker_on_one_journal_fire_each_slot_once(project, background):
    project.write_tasks(TASKS)
    background("dev", "--no-tui", "--workers", "1")
    background("worker", "--workers", "1")
    wait_until(lambda: fired(project, "tick", 5), timeout=60, message="five slots")
    assert set(slot_counts(project, "tick").values()) == {1}


def test_a_restart_after_downtime_catches_up_by_the_policy(project, background):
    project.write_tasks(TASKS)
    first = background("worker", "--workers", "1")
    wait_until(
        lambda: fired(project, "tick", 2) and fired(project, "tick-all", 2),
        timeout=60,
        message="the first slots",
    )
    first.kill()  # kill -9 of the whole group: supervisor and worker
    last = {t: slot_seconds(slot_counts(project, t))[-1] for t in ("tick", "tick-all")}
    wait_until(lambda: time.time() > max(last.values()) + 5, timeout=30, message="downtime")
    restarted_at = int(time.time())
    background("worker", "--workers", "1")
    wait_until(
        lambda: (
            fired(project, "tick", 2, after=restarted_at)
            and fired(project, "tick-all", 2, after=restarted_at)
        ),
        timeout=60,
        message="slots after the restart",
    )
    for task_id in ("tick", "tick-all"):
        assert set(slot_counts(project, task_id).values()) == {1}
    # "latest": one run for the latest missed slot, none for the ones before it.
    after = [s for s in slot_seconds(slot_counts(project, "tick")) if s > last["tick"]]
    assert after[0] >= restarted_at - 1, f"missed slots ran one by one: {after[:6]}"
    # "all": every missed slot ran.
    slots = slot_seconds(slot_counts(project, "tick-all"))
    assert slots == list(range(slots[0], slots[-1] + 1))
    assert slots[-1] > restarted_at


def test_pause_and_resume_from_the_cli_survive_a_restart(project, background):
    project.write_tasks(TASKS)
    worker = background("worker", "--workers", "1")
    wait_until(lambda: fired(project, "tick", 1), timeout=60, message="a first tick")
    paused = project.cli("schedules", "pause", "tick")
    assert paused.returncode == 0, paused.stderr
    assert "paused the schedule of tick" in paused.stdout
    held = sum(slot_counts(project, "tick").values())
    now = int(time.time())
    wait_until(
        lambda: fired(project, "tick-all", 3, after=now),
        timeout=60,
        message="the other schedule going on",
    )
    assert sum(slot_counts(project, "tick").values()) == held
    listing = project.cli("schedules", "--json")
    [row] = [r for r in __import__("json").loads(listing.stdout) if r["task"] == "tick"]
    assert row["paused"] is True and row["next_fire_at"] is None
    assert row["last_run_id"] and row["last_scheduled_at"]
    # Kept in the journal: a restarted worker does not fire it either.
    worker.kill()
    background("worker", "--workers", "1")
    now = int(time.time())
    wait_until(
        lambda: fired(project, "tick-all", 2, after=now),
        timeout=60,
        message="the restarted worker firing the other schedule",
    )
    assert sum(slot_counts(project, "tick").values()) == held
    text = project.cli("schedules")  # no subcommand: the listing
    assert text.returncode == 0 and "paused" in text.stdout and "every 1s" in text.stdout
    resumed = project.cli("schedules", "resume", "tick")
    assert resumed.returncode == 0 and "resumed the schedule of tick" in resumed.stdout
    wait_until(
        lambda: sum(slot_counts(project, "tick").values()) > held,
        timeout=60,
        message="the resumed schedule firing",
    )
    assert set(slot_counts(project, "tick").values()) == {1}


def test_bad_schedule_commands_and_options_are_one_line_errors(project):
    project.write_tasks(
        TASKS
        + """
@task(id="plain")
async def plain(payload, ctx):
    return None
"""
    )
    unknown = project.cli("schedules", "pause", "nope")
    assert unknown.returncode == 2 and unknown.stderr.strip().splitlines()[-1].startswith(
        "error: unknown task 'nope'"
    )
    unscheduled = project.cli("schedules", "resume", "plain")
    assert unscheduled.returncode == 2 and "task 'plain' has no schedule" in unscheduled.stderr
    assert not project.config().journal.exists()  # bad input writes nothing
    project.write_tasks("""
from sylphrun import task

@task(id="bad", schedule="0 3 * * *", tz="Mars/Olympus")
async def bad(payload, ctx):
    return None
""")
    for command in (
        ("tasks",),
        ("schedules",),
        ("worker", "--workers", "1"),
        ("dev", "--no-tui", "--workers", "1"),
    ):
        result = project.cli(*command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        [line] = result.stderr.strip().splitlines()  # one line: no frames, even from dev
        assert line.startswith("error: cannot import task module tasks.main (")
        assert "unknown time zone 'Mars/Olympus'" in line
