"""What a user does to runs (cancel, retry, replay) and what a caller may create twice
(idempotency keys), through the interface."""

from __future__ import annotations

import pytest

from journal.helpers import LEASE, complete_step, finish, start_step, terms
from sylphrun import model
from sylphrun.errors import (
    IdempotencyConflict,
    InvalidState,
    ReplayFromCompensation,
    UnknownRun,
)
from sylphrun.journal import RunSpec
from sylphrun.journal.types import LeaseLost


def test_cancel_ends_the_run_its_children_and_their_open_steps(journal, claimed):
    parent = claimed(now=10)
    start_step(journal, parent, "busy", seq=1, now=11)
    specs = [RunSpec("t", "{}", parent_run_id=parent.run_id) for _ in range(2)]
    kids = [r.run_id for r in journal.enqueue_children(parent.run_id, parent.epoch, specs, 12)]
    claims, _ = journal.claim_runs("w2", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=13)
    [running_kid] = claims
    journal.record_step_waiting(
        running_kid.run_id,
        running_kid.epoch,
        key="nap",
        name="nap",
        kind=model.SLEEP,
        seq=1,
        run_attempt=1,
        output='{"wake_at": 99}',
        now=14,
    )
    cancelled = journal.cancel_run(parent.run_id, now=20)
    assert sorted(cancelled) == sorted([parent.run_id, *kids])
    for rid in cancelled:
        run = journal.get_run(rid)
        assert (run.status, run.finished_at, run.ready_at) == (model.CANCELLED, 20, None)
    [busy] = journal.steps_of(parent.run_id)
    assert busy.status == model.STEP_CANCELLED
    assert "cancelled while the step ran" in busy.attempt_log[-1].error
    assert journal.steps_of(running_kid.run_id)[0].status == model.STEP_CANCELLED
    # Their workers are fenced out at their next write.
    with pytest.raises(LeaseLost):
        journal.record_step_result(parent.run_id, parent.epoch, key="busy", output="1", now=21)
    assert journal.heartbeat(
        "w2", {running_kid.run_id: running_kid.epoch}, lease_seconds=LEASE, now=21
    ) == [running_kid.run_id]
    assert not journal.has_ready_work(now=1000)
    with pytest.raises(InvalidState, match="already cancelled"):
        journal.cancel_run(parent.run_id, now=22)
    with pytest.raises(UnknownRun):
        journal.cancel_run("run_nope", now=22)


def test_cancel_leaves_finished_children_alone(journal, claimed):
    parent = claimed(now=10)
    [done] = [
        r.run_id
        for r in journal.enqueue_children(
            parent.run_id, parent.epoch, [RunSpec("t", "{}", parent_run_id=parent.run_id)], 11
        )
    ]
    [kid], _ = journal.claim_runs("w2", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=12)
    finish(journal, kid, now=13)
    assert journal.cancel_run(parent.run_id, now=14) == [parent.run_id]
    assert journal.get_run(done).status == model.COMPLETED


def test_retry_resumes_a_failed_run_keeping_its_steps(journal, claimed):
    c = claimed(now=10)
    complete_step(journal, c, "a", '"done"', seq=1, now=11)
    with pytest.raises(InvalidState, match="only a failed or cancelled run"):
        journal.retry_run(c.run_id, now=12)
    finish(journal, c, model.FAILED, output=None, error="E", now=12)
    journal.retry_run(c.run_id, now=13)
    run = journal.get_run(c.run_id)
    assert (run.status, run.attempt, run.ready_at, run.error) == (model.QUEUED, 2, 13, None)
    [again], _ = journal.claim_runs("w1", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=14)
    assert again.attempt == 2 and journal.replay_state(c.run_id)["a"].output == '"done"'
    finish(journal, again, now=15)
    with pytest.raises(InvalidState, match="sylphrun replay"):
        journal.retry_run(c.run_id, now=16)


def test_retrying_a_cancelled_parent_revives_its_cancelled_children(journal, claimed):
    parent = claimed(now=10)
    kids = [
        r.run_id
        for r in journal.enqueue_children(
            parent.run_id, parent.epoch, [RunSpec("t", "{}", parent_run_id=parent.run_id)] * 2, 11
        )
    ]
    journal.cancel_run(parent.run_id, now=12)
    assert journal.get_run(parent.run_id).children_cancelled == 2
    journal.retry_run(parent.run_id, now=13)
    assert {journal.get_run(k).status for k in kids} == {model.QUEUED}
    run = journal.get_run(parent.run_id)
    assert (run.status, run.children_done, run.children_cancelled) == (model.QUEUED, 0, 0)


def test_a_run_that_ran_compensations_is_not_retried(journal, claimed):
    c = claimed(now=10)
    complete_step(journal, c, "charge", seq=1, now=11)
    complete_step(journal, c, "compensate:charge", seq=2, now=12, kind=model.COMPENSATION)
    finish(journal, c, model.FAILED, output=None, error="E", now=13)
    with pytest.raises(InvalidState, match="ran compensations"):
        journal.retry_run(c.run_id, now=14)


def test_replay_starts_a_new_run_copying_the_steps_before_the_one_named(journal, claimed):
    c = claimed("t", '{"order": 1}', now=10)
    for seq, key in enumerate(["a", "b", "c"], 1):
        complete_step(journal, c, key, f'"{key}"', seq=seq, now=10 + seq)
    finish(journal, c, now=20)
    new_id = journal.replay_run(c.run_id, from_step="c", now=21)
    new = journal.get_run(new_id)
    assert (new.status, new.task_id, new.payload, new.replay_of, new.attempt) == (
        model.QUEUED,
        "t",
        {"order": 1},
        c.run_id,
        1,
    )
    steps = journal.steps_of(new_id)
    assert [(s.key, s.output, s.copied) for s in steps] == [("a", "a", True), ("b", "b", True)]
    fresh = journal.replay_run(c.run_id, from_step=None, now=22)
    assert journal.steps_of(fresh) == [] and journal.get_run(fresh).replay_of == c.run_id
    with pytest.raises(InvalidState, match="has no step 'zz'"):
        journal.replay_run(c.run_id, from_step="zz", now=23)


def test_replay_does_not_copy_an_undone_step_and_says_so(journal, claimed):
    c = claimed(now=10)
    complete_step(journal, c, "charge", seq=1, now=11)
    complete_step(journal, c, "ship", seq=2, now=12)
    complete_step(journal, c, "compensate:charge", seq=3, now=13, kind=model.COMPENSATION)
    finish(journal, c, model.FAILED, output=None, error="E", now=14)
    with pytest.raises(ReplayFromCompensation):
        journal.replay_run(c.run_id, from_step="compensate:charge", now=15)
    new_id = journal.replay_run(c.run_id, from_step="ship", now=15)
    assert journal.steps_of(new_id) == []
    [warning] = journal.logs_of(new_id)
    assert warning.level == "WARNING" and "'charge' (undone by 'compensate:charge')" in (
        warning.message
    )


def test_user_actions_on_an_unknown_run(journal):
    for action in (journal.retry_run, journal.wake_run):
        with pytest.raises(UnknownRun):
            action("run_nope", 1.0)
    with pytest.raises(UnknownRun):
        journal.replay_run("run_nope", from_step=None, now=1)


def test_the_same_key_and_payload_returns_the_run_created_first(journal):
    [first] = journal.enqueue_runs([RunSpec("t", '{"a": 1, "b": 2}', "k")], now=1)
    assert first.created
    [again] = journal.enqueue_runs([RunSpec("t", '{"b": 2, "a": 1}', "k")], now=2)
    assert again == (first.run_id, False)
    # Keys are per task.
    [other] = journal.enqueue_runs([RunSpec("u", '{"a": 1, "b": 2}', "k")], now=3)
    assert other.created and other.run_id != first.run_id
    assert journal.status_counts() == {model.QUEUED: 2}


def test_the_same_key_with_another_payload_conflicts_and_writes_nothing(journal):
    [first] = journal.enqueue_runs([RunSpec("t", '{"a": 1}', "k")], now=1)
    with pytest.raises(IdempotencyConflict) as err:
        journal.enqueue_runs([RunSpec("t", "{}", "fresh"), RunSpec("t", '{"a": 1.0}', "k")], now=2)
    assert err.value.args and first.run_id in str(err.value)
    # The whole batch was refused: the first spec of it was not created either.
    assert [r.id for r in journal.list_runs()] == [first.run_id]


def test_a_derived_key_hands_back_its_child_whatever_the_payload(journal, claimed):
    parent = claimed(now=10)
    spec = RunSpec("t", '{"v": 1}', "p:s:0", parent.run_id, "s", derived_key=True)
    [made] = journal.enqueue_children(parent.run_id, parent.epoch, [spec], 11)
    changed = RunSpec("t", '{"v": 2}', "p:s:0", parent.run_id, "s", derived_key=True)
    [again] = journal.enqueue_children(parent.run_id, parent.epoch, [changed], 12)
    assert again == (made.run_id, False)
    assert journal.get_run(parent.run_id).children_total == 1
