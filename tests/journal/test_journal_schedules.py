"""Schedules' state through the interface: a slot fires once, pauses hold, time injected."""

from __future__ import annotations

from sylphrun import model
from sylphrun.journal import RunSpec
from sylphrun.journal.types import ScheduleTick


def tick(slot: float, task: str = "nightly") -> ScheduleTick:
    key = f"schedule:{task}:{slot:g}"
    return ScheduleTick(
        slot, RunSpec(task, f'{{"scheduled_at": "{slot:g}"}}', key, derived_key=True)
    )


def test_a_new_schedule_starts_settled_and_only_once(journal):
    assert journal.schedule_states() == {}
    assert journal.start_schedule("nightly", settled_through=100, now=100.5)
    assert not journal.start_schedule("nightly", settled_through=200, now=200)
    [state] = journal.schedule_states().values()
    assert (
        state.task_id,
        state.settled_through,
        state.last_slot,
        state.last_run_id,
        state.paused,
    ) == ("nightly", 100, None, None, False)


def test_a_slot_fires_once_whoever_fires_it(journal, backend):
    other = backend.open()  # a second supervisor's handle
    try:
        journal.start_schedule("nightly", settled_through=100, now=100)
        [created] = journal.fire_schedule("nightly", [tick(110)], settled_through=110, now=110.1)
        assert created.created
        # The second supervisor checked before the first fired: its tick is settled now.
        assert other.fire_schedule("nightly", [tick(110)], settled_through=110, now=110.2) == []
        state = other.schedule_states()["nightly"]
        assert (state.settled_through, state.last_slot) == (110, 110)
        assert state.last_run_id == created.run_id
        assert state.last_run_status == model.QUEUED
        assert [r.id for r in journal.list_runs(task_id="nightly")] == [created.run_id]
    finally:
        other.close()


def test_the_idempotency_key_hands_back_a_slot_settled_elsewhere(journal):
    # Even a write that got past the settled check (a state dropped by hand) finds the run.
    [first] = journal.fire_schedule("nightly", [tick(110)], settled_through=110, now=110)
    journal.set_schedule_paused("other", True, now=1)  # unrelated state is left alone
    [again] = journal.fire_schedule("nightly", [tick(110), tick(120)], settled_through=120, now=120)
    assert again.created and again.run_id != first.run_id  # 110 is settled: only 120 fired
    assert journal.schedule_states()["nightly"].last_slot == 120


def test_settled_time_never_moves_backwards(journal):
    journal.start_schedule("nightly", settled_through=100, now=100)
    journal.fire_schedule("nightly", [tick(130)], settled_through=130, now=130)
    # A supervisor with a stale view decides about an older slot.
    assert journal.fire_schedule("nightly", [tick(120)], settled_through=120, now=131) == []
    state = journal.schedule_states()["nightly"]
    assert (state.settled_through, state.last_slot) == (130, 130)


def test_catch_up_of_all_slots_in_one_transaction(journal):
    journal.start_schedule("nightly", settled_through=100, now=100)
    created = journal.fire_schedule(
        "nightly", [tick(130), tick(110), tick(120)], settled_through=130, now=135
    )
    assert len(created) == 3 and all(c.created for c in created)
    state = journal.schedule_states()["nightly"]
    assert state.last_slot == 130 and state.last_run_id == created[-1].run_id


def test_a_skip_settles_without_firing(journal):
    journal.start_schedule("nightly", settled_through=100, now=100)
    assert journal.fire_schedule("nightly", [], settled_through=150, now=200) == []
    state = journal.schedule_states()["nightly"]
    assert (state.settled_through, state.last_slot) == (150, None)


def test_paused_fires_nothing_and_resume_skips_the_pause(journal):
    journal.start_schedule("nightly", settled_through=100, now=100)
    assert journal.set_schedule_paused("nightly", True, now=105)
    assert not journal.set_schedule_paused("nightly", True, now=106)
    assert journal.fire_schedule("nightly", [tick(110)], settled_through=110, now=110) == []
    state = journal.schedule_states()["nightly"]
    assert state.paused and state.settled_through == 100
    assert journal.set_schedule_paused("nightly", False, now=125)
    state = journal.schedule_states()["nightly"]
    assert not state.paused and state.settled_through == 125
    assert journal.fire_schedule("nightly", [tick(120)], settled_through=120, now=126) == []
    [created] = journal.fire_schedule("nightly", [tick(130)], settled_through=130, now=130)
    assert created.created


def test_pausing_a_schedule_never_seen_keeps_the_pause(journal, backend):
    assert journal.set_schedule_paused("nightly", True, now=50)
    journal.close()
    reopened = backend.open()
    try:
        state = reopened.schedule_states()["nightly"]
        assert state.paused and state.settled_through == 50
        assert not reopened.start_schedule("nightly", settled_through=60, now=60)
    finally:
        reopened.close()
