"""A run's steps and log as its worker writes them: start, result, failure and retry-at,
interruption, waiting and one-shot steps, trigger steps, divergence, log lines."""

from __future__ import annotations

import json

import pytest

from journal.helpers import complete_step, start_step
from sylphrun import model
from sylphrun.journal import RunSpec


def test_a_step_starts_then_completes_with_its_output_and_call(journal, claimed):
    c = claimed(now=10)
    journal.record_step_start(
        c.run_id,
        c.epoch,
        key="charge",
        name="charge",
        kind=model.STEP,
        seq=1,
        run_attempt=1,
        now=11,
        fn="m:charge",
        args_hash="h1",
    )
    [step] = journal.steps_of(c.run_id)
    assert (step.status, step.attempts, step.started_at, step.finished_at) == (
        model.STEP_RUNNING,
        1,
        11,
        None,
    )
    journal.record_step_result(
        c.run_id, c.epoch, key="charge", output='{"id": 7}', now=12, compensate="m:refund"
    )
    [step] = journal.steps_of(c.run_id)
    assert (step.status, step.output, step.finished_at, step.fn, step.args_hash) == (
        model.STEP_COMPLETED,
        {"id": 7},
        12,
        "m:charge",
        "h1",
    )
    state = journal.replay_state(c.run_id)["charge"]
    assert (state.status, state.output, state.compensate, state.seq) == (
        model.STEP_COMPLETED,
        '{"id": 7}',
        "m:refund",
        1,
    )


def test_a_result_without_a_start_is_a_bug_not_a_lost_lease(journal, claimed):
    c = claimed(now=10)
    with pytest.raises(RuntimeError, match="no start record"):
        journal.record_step_result(c.run_id, c.epoch, key="never", output="1", now=11)


def test_a_failed_step_retries_at_its_time_and_counts_its_tries(journal, claimed):
    c = claimed(now=10)
    start_step(journal, c, "flaky", seq=1, now=11)
    journal.record_step_failure(
        c.run_id, c.epoch, key="flaky", error="IOError: 1", traceback="tb1", retry_at=20, now=12
    )
    [step] = journal.steps_of(c.run_id)
    assert (step.status, step.retry_at, step.error) == (model.STEP_RETRYING, 20, "IOError: 1")
    assert [(a.attempt, a.status, a.traceback) for a in step.attempt_log] == [(1, "failed", "tb1")]
    assert journal.step_tries_in_attempt(c.run_id, "flaky", 1) == 1
    start_step(journal, c, "flaky", seq=1, now=20)
    journal.record_step_failure(
        c.run_id,
        c.epoch,
        key="flaky",
        error="IOError: 2",
        traceback=None,
        retry_at=None,
        fatal=True,
        now=21,
    )
    [step] = journal.steps_of(c.run_id)
    assert (step.status, step.attempts, step.retry_at) == (model.STEP_FAILED, 2, None)
    assert journal.replay_state(c.run_id)["flaky"].fatal is True
    assert journal.step_tries_in_attempt(c.run_id, "flaky", 1) == 2
    assert journal.step_tries_in_attempt(c.run_id, "flaky", 2) == 0
    # Started again after failing: one more attempt, error and retry time cleared.
    start_step(journal, c, "flaky", seq=1, now=30)
    journal.record_step_result(c.run_id, c.epoch, key="flaky", output="3", now=31)
    [step] = journal.steps_of(c.run_id)
    assert (step.status, step.attempts, step.error, step.output) == (
        model.STEP_COMPLETED,
        3,
        None,
        3,
    )


def test_a_step_cut_off_while_its_run_goes_on_is_interrupted(journal, claimed):
    c = claimed(now=10)
    start_step(journal, c, "a", seq=1, now=11)
    journal.record_step_interrupted(
        c.run_id, c.epoch, key="a", reason="cancelled by the code", now=12
    )
    [step] = journal.steps_of(c.run_id)
    assert step.status == model.STEP_INTERRUPTED
    assert [a.error for a in step.attempt_log] == ["interrupted: cancelled by the code"]


def test_waiting_and_one_shot_steps(journal, claimed):
    c = claimed(now=10)
    journal.record_step_waiting(
        c.run_id,
        c.epoch,
        key="nap",
        name="nap",
        kind=model.SLEEP,
        seq=1,
        run_attempt=1,
        output='{"wake_at": 100}',
        now=11,
    )
    # Begun once: a second "begin" leaves the first wake time.
    journal.record_step_waiting(
        c.run_id,
        c.epoch,
        key="nap",
        name="nap",
        kind=model.SLEEP,
        seq=1,
        run_attempt=1,
        output='{"wake_at": 999}',
        now=12,
    )
    journal.record_completed_step(
        c.run_id,
        c.epoch,
        key="w",
        name="w",
        kind=model.WAIT,
        seq=2,
        run_attempt=1,
        output='"answer"',
        started_at=5,
        now=13,
    )
    nap, w = journal.steps_of(c.run_id)
    assert (nap.status, nap.output) == (model.STEP_WAITING, {"wake_at": 100})
    assert (w.status, w.output, w.started_at, w.finished_at) == (
        model.STEP_COMPLETED,
        "answer",
        5,
        13,
    )


def test_a_trigger_step_and_its_children_are_written_together(journal, claimed):
    c = claimed(now=10)
    specs = [
        RunSpec("child", f'{{"i": {i}}}', f"{c.run_id}:fan:{i}", c.run_id, "fan", derived_key=True)
        for i in range(3)
    ]
    ids, output = journal.record_trigger_step(
        c.run_id,
        c.epoch,
        key="fan",
        name="fan",
        seq=1,
        run_attempt=1,
        specs=specs,
        output_of=lambda child_ids: json.dumps({"run_ids": child_ids}),
        now=11,
    )
    assert len(ids) == 3 and json.loads(output) == {"run_ids": ids}
    [step] = journal.steps_of(c.run_id)
    assert (step.kind, step.status, step.child_run_ids) == (
        model.TRIGGER,
        model.STEP_COMPLETED,
        ids,
    )
    assert journal.get_run(c.run_id).children_total == 3
    # Children created in one commit share their creation time: no order among them.
    assert sorted(r.id for r in journal.children_of(c.run_id)) == sorted(ids)
    assert all(r.parent_run_id == c.run_id for r in journal.children_of(c.run_id))
    # A resumed parent asking again (same derived keys) gets the same children, not more.
    again, _ = journal.record_trigger_step(
        c.run_id,
        c.epoch,
        key="fan",
        name="fan",
        seq=1,
        run_attempt=1,
        specs=specs,
        output_of=lambda child_ids: "[]",
        now=12,
        list_children=False,
    )
    assert again == ids and journal.get_run(c.run_id).children_total == 3
    assert journal.keyed_batch_children(c.run_id, "fan") == ids


def test_a_divergence_marks_the_step_and_fails_the_run(journal, claimed):
    c = claimed(now=10)
    complete_step(journal, c, "a", seq=1, now=11)
    journal.mark_step_diverged(c.run_id, c.epoch, key="a", error="diverged once")
    assert journal.steps_of(c.run_id)[0].error == "diverged once"
    journal.mark_step_diverged(c.run_id, c.epoch, key="a", error=None)
    assert journal.steps_of(c.run_id)[0].error is None
    start_step(journal, c, "b", seq=2, now=12)
    journal.record_divergence(c.run_id, c.epoch, key="a", error="Diverged: a", now=13)
    run = journal.get_run(c.run_id)
    assert (run.status, run.error) == (model.FAILED, "Diverged: a")
    a, b = journal.steps_of(c.run_id)
    assert a.error == "Diverged: a" and a.output == 1
    assert b.status == model.STEP_INTERRUPTED
    assert journal.run_attempts(c.run_id)[0].status == model.FAILED


def test_log_lines_in_order_with_cursors(journal, claimed):
    c = claimed(now=10)
    journal.append_log(c.run_id, level="INFO", message="body", step_key=None, now=11, epoch=c.epoch)
    journal.append_log(
        c.run_id, level="WARNING", message="in a", step_key="a", now=12, epoch=c.epoch
    )
    journal.append_log(c.run_id, level="INFO", message="from a user", step_key=None, now=13)
    lines = journal.logs_of(c.run_id)
    assert [(x.level, x.message, x.step_key, x.at) for x in lines] == [
        ("INFO", "body", None, 11),
        ("WARNING", "in a", "a", 12),
        ("INFO", "from a user", None, 13),
    ]
    after = journal.log_lines_after(c.run_id)
    assert [line.message for _, line in after] == ["body", "in a", "from a user"]
    first_id = after[0][0]
    assert [line.message for line in journal.logs_of(c.run_id, after_id=first_id)] == [
        "in a",
        "from a user",
    ]
    assert [line.message for _, line in journal.log_lines_after(c.run_id, first_id, 1)] == ["in a"]
    assert journal.body_lines_of_attempt(c.run_id, 1) == [("INFO", "body"), ("INFO", "from a user")]
