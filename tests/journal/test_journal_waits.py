"""Parking and waking: a parent parked on its children wakes when the last one finishes,
a sleep wakes at its time (or when a user wakes it), and the children are counted."""

from __future__ import annotations

import pytest

from journal.helpers import LEASE, finish, terms
from sylphrun import model
from sylphrun.errors import InvalidState
from sylphrun.journal import RunSpec


def children(journal, parent, n, *, now):
    specs = [RunSpec("child", f'{{"i": {i}}}', parent_run_id=parent.run_id) for i in range(n)]
    return [r.run_id for r in journal.enqueue_children(parent.run_id, parent.epoch, specs, now)]


def claim_all(journal, *, now, worker="w9"):
    """Every claimable run, by id."""
    claims, _ = journal.claim_runs(
        worker, 100, lease_seconds=LEASE, known_tasks=terms("t", "child"), now=now
    )
    return {c.run_id: c for c in claims}


def claim_run(journal, run_id, *, now, worker="w9"):
    return claim_all(journal, now=now, worker=worker)[run_id]


def test_a_parent_parked_on_children_wakes_when_the_last_finishes(journal, claimed):
    parent = claimed(now=10)
    kids = children(journal, parent, 2, now=11)
    assert journal.get_run(parent.run_id).children_total == 2
    journal.record_step_start(
        parent.run_id,
        parent.epoch,
        key="gather",
        name="gather",
        kind=model.STEP,
        seq=1,
        run_attempt=1,
        now=12,
    )
    journal.suspend_run(parent.run_id, parent.epoch, children=kids, wake_at=None, now=12)
    run = journal.get_run(parent.run_id)
    assert (run.status, run.ready_at) == (model.WAITING, None)
    assert journal.steps_of(parent.run_id)[0].status == model.STEP_WAITING
    running = claim_all(journal, now=13)
    assert set(running) == set(kids)
    finish(journal, running[kids[0]], now=14)
    assert journal.get_run(parent.run_id).status == model.WAITING
    assert not journal.has_ready_work(now=15)
    finish(journal, running[kids[1]], model.FAILED, output=None, error="boom", now=16)
    run = journal.get_run(parent.run_id)
    assert (run.status, run.ready_at, run.children_done, run.children_failed) == (
        model.WAITING,
        16,
        2,
        1,
    )
    results = journal.children_results(parent.run_id)
    assert results[kids[0]].ok and results[kids[1]].error == "boom"
    assert journal.run_results(kids) == results
    # Claimed again, the parked step resumes: not a new attempt.
    again = claim_run(journal, parent.run_id, now=17, worker="w1")
    assert again.epoch > parent.epoch
    journal.record_step_start(
        again.run_id,
        again.epoch,
        key="gather",
        name="gather",
        kind=model.STEP,
        seq=1,
        run_attempt=1,
        now=17,
    )
    assert journal.steps_of(parent.run_id)[0].attempts == 1


def test_parking_on_children_already_finished_is_ready_at_once(journal, claimed):
    parent = claimed(now=10)
    [kid] = children(journal, parent, 1, now=11)
    finish(journal, claim_run(journal, kid, now=12), now=13)
    journal.suspend_run(parent.run_id, parent.epoch, children=[kid], wake_at=None, now=14)
    run = journal.get_run(parent.run_id)
    assert (run.status, run.ready_at) == (model.WAITING, 14)
    assert journal.has_ready_work(now=14)


def test_a_sleep_wakes_at_its_time(journal, claimed):
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
    journal.suspend_run(c.run_id, c.epoch, children=[], wake_at=100, now=11)
    assert journal.next_ready_at() == 100
    assert not journal.has_ready_work(now=99)
    assert journal.claim_runs("w2", 10, lease_seconds=LEASE, known_tasks=terms("t"), now=99) == (
        [],
        [],
    )
    [woken], _ = journal.claim_runs("w2", 10, lease_seconds=LEASE, known_tasks=terms("t"), now=100)
    assert woken.run_id == c.run_id and woken.epoch == c.epoch + 1


def test_a_user_wakes_a_sleeping_run_now(journal, claimed):
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
    journal.suspend_run(c.run_id, c.epoch, children=[], wake_at=100, now=11)
    what = journal.wake_run(c.run_id, now=50)
    assert "nap" in what
    assert journal.get_run(c.run_id).ready_at == 50
    assert journal.steps_of(c.run_id)[0].output == {"wake_at": 50}
    assert journal.logs_of(c.run_id)[-1].message == f"woken by user: {what}"
    # Due now: nothing left to wake.
    with pytest.raises(InvalidState, match="nothing to wake"):
        journal.wake_run(c.run_id, now=60)


def test_a_user_wakes_a_step_waiting_for_its_retry(journal, claimed):
    c = claimed(now=10)
    journal.record_step_start(
        c.run_id, c.epoch, key="s", name="s", kind=model.STEP, seq=1, run_attempt=1, now=11
    )
    journal.record_step_failure(
        c.run_id, c.epoch, key="s", error="E", traceback=None, retry_at=500, now=12
    )
    journal.suspend_run(c.run_id, c.epoch, children=[], wake_at=500, now=12)
    assert "'s' is retried now" in journal.wake_run(c.run_id, now=20)
    assert journal.steps_of(c.run_id)[0].retry_at == 20


def test_a_parent_waiting_on_children_cannot_be_woken(journal, claimed):
    parent = claimed(now=10)
    kids = children(journal, parent, 1, now=11)
    journal.suspend_run(parent.run_id, parent.epoch, children=kids, wake_at=None, now=12)
    with pytest.raises(InvalidState, match="waiting for its child runs"):
        journal.wake_run(parent.run_id, now=13)


def test_children_are_counted_by_how_they_ended(journal, claimed):
    parent = claimed(now=10)
    ok, bad, gone, busy = children(journal, parent, 4, now=11)
    running = claim_all(journal, now=12)
    finish(journal, running[ok], now=13)
    finish(journal, running[bad], model.FAILED, output=None, error="x", now=13)
    journal.cancel_run(gone, now=14)
    run = journal.get_run(parent.run_id)
    assert (
        run.children_total,
        run.children_done,
        run.children_failed,
        run.children_cancelled,
        run.children_completed,
    ) == (4, 3, 1, 1, 1)
    assert journal.children_results(parent.run_id)[busy] is None
    summary = {s.id: s for s in journal.run_summaries()}[parent.run_id]
    assert (summary.children_done, summary.children_cancelled) == (3, 1)
    # A retried child no longer counts as failed until it ends again.
    journal.retry_run(bad, now=15)
    run = journal.get_run(parent.run_id)
    assert (run.children_done, run.children_failed) == (2, 0)
    assert run.children_completed == 1
