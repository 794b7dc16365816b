"""Where a run's time went while no step ran: the bands the timeline draws."""

from __future__ import annotations

from sylphrun import model
from sylphrun.dashboard.suspensions import (
    QUEUED,
    RETRY,
    SLEEPING,
    WAITING,
    Band,
    retry_gaps,
    run_suspensions,
    step_bands,
)


def run(status: str = model.COMPLETED) -> model.Run:
    return model.Run("r", "t", status, {}, None, None, 1, None, None, 0.0, 1.0, None, None)


def step(
    key: str,
    kind: str = model.STEP,
    status: str = model.STEP_COMPLETED,
    started: float | None = 1.0,
    finished: float | None = 2.0,
    tries: list[model.StepAttempt] | None = None,
) -> model.Step:
    return model.Step(
        "r", key, key, kind, status, 0, 1, None, None, started, finished, attempt_log=tries or []
    )


def test_a_fan_in_parked_with_its_run_is_a_waiting_band_on_its_line():
    steps = [step("collect", finished=10.0)]
    changes = [
        (1, 1.0, "run.running", None),
        (2, 2.0, "step.waiting", "collect"),
        (3, 2.0, "run.waiting", None),
        (4, 9.0, "run.running", None),
    ]
    bands = run_suspensions(run(), steps, [], changes)
    assert bands == [Band(2.0, 9.0, WAITING, ("collect",))]
    assert step_bands(steps[0], bands) == bands
    assert step_bands(step("other"), bands) == []


def test_a_step_parked_now_without_events_gets_an_open_band_from_its_start():
    parked = step("collect", status=model.STEP_WAITING, started=3.0, finished=None)
    assert step_bands(parked, []) == [Band(3.0, None, WAITING, ("collect",))]


def test_a_sleep_step_parks_the_run_as_sleeping_and_an_open_band_lasts():
    steps = [step("nap", kind=model.SLEEP, status=model.STEP_WAITING, finished=None)]
    changes = [
        (1, 1.0, "run.running", None),
        (2, 3.0, "step.waiting", "nap"),
        (3, 3.0, "run.waiting", None),
    ]
    [band] = run_suspensions(run(model.WAITING), steps, [], changes)
    assert (band.reason, band.end, band.stop(50.0)) == (SLEEPING, None, 50.0)
    # A finished run leaves no open band.
    assert run_suspensions(run(model.COMPLETED), steps, [], changes) == []


def test_a_requeue_after_a_failed_attempt_is_a_retry_else_just_queued():
    changes = [
        (1, 1.0, "run.running", None),
        (2, 5.0, "run.queued", None),
        (3, 8.0, "run.running", None),
    ]
    failed = model.RunAttempt(1, model.FAILED, "e", None, 1.0, 5.0)
    assert run_suspensions(run(), [], [failed], changes) == [Band(5.0, 8.0, RETRY)]
    assert run_suspensions(run(), [], [], changes) == [Band(5.0, 8.0, QUEUED)]


def test_time_queued_before_the_first_start_is_not_a_suspension():
    changes = [(1, 0.0, "run.queued", None), (2, 4.0, "run.running", None)]
    assert run_suspensions(run(), [], [], changes) == []


def test_retry_gaps_run_from_each_failed_try_to_the_next():
    tries = [
        model.StepAttempt(1, model.STEP_FAILED, "e", None, 1.0, 2.0, 1),
        model.StepAttempt(2, model.STEP_FAILED, "e", None, 5.0, 6.0, 1),
    ]
    done = step("s", started=9.0, finished=10.0, tries=tries)
    assert retry_gaps(done) == [(2.0, 5.0), (6.0, 9.0)]
    waiting = step("s", status=model.STEP_RETRYING, started=None, finished=None, tries=tries)
    assert retry_gaps(waiting) == [(2.0, 5.0), (6.0, None)]
    assert step_bands(waiting, []) == [
        Band(2.0, 5.0, RETRY, ("s",)),
        Band(6.0, None, RETRY, ("s",)),
    ]
