"""Schedules as pure logic: slots, the catch-up policy, zones, and bad options at decoration.
(Named apart from tests/test_schedules.py: tests/ has no packages, basenames must differ.)"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sylphrun import task
from sylphrun.define import clear_registry
from sylphrun.errors import ScheduleError
from sylphrun.schedules import (
    MAX_CATCHUP_BATCH,
    ON_TIME_WINDOW,
    Schedule,
    due_slots,
    parse_schedule,
    slot_iso,
    slot_key,
)


def at(text: str) -> float:
    """An ISO time (UTC unless it says otherwise) as seconds since the epoch."""
    dt = datetime.fromisoformat(text)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def test_cron_slots_in_utc():
    every5 = parse_schedule("t", "*/5 * * * *")
    assert every5.next_slot(at("2026-11-29T16:20:00")) == at("2026-11-29T16:25:00")
    assert every5.next_slot(at("2026-11-29T16:21:30")) == at("2026-11-29T16:25:00")
    assert every5.latest_slot(at("2026-11-29T16:20:00")) == at("2026-11-29T16:20:00")
    assert every5.latest_slot(at("2026-11-29T16:24:59.9")) == at("2026-11-29T16:20:00")


def test_cron_in_a_zone_follows_its_clock_changes():
    paris = parse_schedule("t", "0 3 * * *", tz="Europe/Paris")
    # Winter: 03:00 in Paris is 02:00 UTC; summer (from 29 March 2026): 01:00 UTC.
    assert paris.next_slot(at("2026-01-10T12:00:00")) == at("2026-01-11T02:00:00")
    assert paris.next_slot(at("2026-03-28T12:00:00")) == at("2026-03-29T01:00:00")
    assert slot_iso(paris.next_slot(at("2026-03-28T12:00:00"))) == "2026-03-29T01:00:00Z"


def test_interval_slots_are_aligned_to_the_epoch_so_every_process_agrees():
    ten = parse_schedule("t", 10)
    assert ten.next_slot(1003.2) == 1010 and ten.next_slot(1010) == 1020
    assert ten.latest_slot(1019.99) == 1010
    assert ten.slots_between(1000, 1035, limit=10) == [1010, 1020, 1030]
    assert ten.describe() == "every 10s"


def test_a_tick_is_keyed_by_its_slot():
    assert slot_key("nightly", at("2026-11-29T03:00:00")) == "schedule:nightly:2026-11-29T03:00:00Z"
    assert slot_iso(1.5) == "1970-01-01T00:00:01.500Z"


def test_on_time_the_current_slot_fires_once():
    ten = Schedule(10)
    assert due_slots(ten, settled_through=1000, now=1009.9).slots == []
    due = due_slots(ten, settled_through=1000, now=1010.05)
    assert (due.slots, due.through) == ([1010], 1010)
    assert due_slots(ten, settled_through=1010, now=1012).slots == []


def test_after_downtime_one_run_for_the_latest_missed_slot():
    due = due_slots(Schedule(10), settled_through=1000, now=1095)
    assert (due.slots, due.through) == ([1090], 1090)


def test_catchup_all_fires_every_missed_slot_a_batch_at_a_time():
    due = due_slots(Schedule(10, catchup="all"), settled_through=1000, now=1035)
    assert (due.slots, due.through) == ([1010, 1020, 1030], 1030)
    big = due_slots(Schedule(1, catchup="all"), settled_through=0, now=10_000)
    assert len(big.slots) == MAX_CATCHUP_BATCH and big.through == MAX_CATCHUP_BATCH


def test_catchup_none_skips_missed_slots_but_fires_a_current_one():
    hourly = Schedule("0 * * * *", catchup="none")
    late = due_slots(
        hourly, settled_through=at("2026-11-29T10:00:00"), now=at("2026-11-29T13:20:00")
    )
    assert (late.slots, late.through) == ([], at("2026-11-29T13:00:00"))
    on_time = due_slots(
        hourly,
        settled_through=at("2026-11-29T10:00:00"),
        now=at("2026-11-29T13:00:00") + ON_TIME_WINDOW / 2,
    )
    assert on_time.slots == [at("2026-11-29T13:00:00")]
    # A fast schedule's latest slot is always current: after downtime it goes on at once.
    assert due_slots(Schedule(1, catchup="none"), settled_through=1000, now=1500.5).slots == [1500]


def test_registry_json_round_trip():
    s = parse_schedule("t", "0 3 * * *", tz="Europe/Paris", catchup="all")
    assert Schedule.from_json(s.to_json()) == s
    assert Schedule.from_json(None) is None
    assert Schedule.from_json({"expression": "nonsense"}) is None


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"schedule": "*/5 * * *"}, "not a 5-field cron expression"),
        ({"schedule": "0 0 * * * *"}, "not a 5-field cron expression"),
        ({"schedule": "61 * * * *"}, "not a valid cron expression (Bad minute)"),
        ({"schedule": "0 3 * * *", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"schedule": 0}, "at least 1 second"),
        ({"schedule": True}, "5-field cron expression"),
        ({"schedule": 10, "tz": "Europe/Paris"}, "tz= applies to a cron schedule"),
        ({"schedule": 10, "catchup": "some"}, "catchup must be one of 'latest', 'all', 'none'"),
        ({"tz": "UTC"}, "need a schedule="),
    ],
)
def test_a_bad_schedule_fails_at_decoration_with_one_line(options, says):
    clear_registry()
    with pytest.raises(ScheduleError) as info:

        @task(id="nightly", **options)
        async def nightly(payload, ctx):
            return None

    message = str(info.value)
    assert says in message and "\n" not in message and message.startswith("task 'nightly'")


def test_a_scheduled_task_keeps_its_schedule():
    clear_registry()

    @task(id="report", schedule="0 3 * * *", tz="Europe/Paris", catchup="none")
    async def report(payload, ctx):
        return payload["scheduled_at"]

    assert report.schedule == Schedule("0 3 * * *", "Europe/Paris", "none")
    clear_registry()


def test_the_listing_rows_say_next_fire_last_run_and_paused():
    from sylphrun import model
    from sylphrun.journal.types import ScheduleState
    from sylphrun.schedule_view import schedule_rows

    def record(task_id, options):
        return model.TaskRecord(task_id, options, "tasks/a.py", 1, "f")

    tasks = {
        "plain": record("plain", {}),
        "ten": record("ten", {"schedule": Schedule(10).to_json()}),
        "held": record("held", {"schedule": Schedule(60, catchup="none").to_json()}),
    }
    states = {
        "ten": ScheduleState("ten", 1000, 1000, "run_1", "completed", False, 1000),
        "held": ScheduleState("held", 960, None, None, None, True, 990),
    }
    rows = schedule_rows(tasks, states, now=1003)
    assert [r["task"] for r in rows] == ["held", "ten"]
    held, ten = rows
    assert (held["paused"], held["next_fire_at"], held["last_run_id"]) == (True, None, None)
    assert held["catchup"] == "none" and held["expression"] == 60
    assert ten["next_fire_at"] == "1970-01-01T00:16:50.000Z"
    assert (ten["last_scheduled_at"], ten["last_run_id"], ten["last_run_status"]) == (
        "1970-01-01T00:16:40.000Z",
        "run_1",
        "completed",
    )
