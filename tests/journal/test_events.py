"""User events through the journal interface: sending, a wait taking one (no race, one
event per wait, fan-out), timeouts, `on_event` triggers and `cancel_on` cancels."""

from __future__ import annotations

import json

import pytest

from journal.helpers import LEASE, terms
from sylphrun import model
from sylphrun.errors import EventIdConflict
from sylphrun.journal import RunSpec


def send(journal, name, data=None, *, now, event_id=None):
    return journal.send_event(event_id=event_id, name=name, data=json.dumps(data or {}), now=now)


def wait(
    journal, claim, key="w", *, now, event="order.approved", match=None, timeout_at=None, seq=1
):
    return journal.take_event(
        claim.run_id,
        claim.epoch,
        key=key,
        name=key,
        seq=seq,
        run_attempt=claim.attempt,
        event=event,
        match=match,
        timeout_at=timeout_at,
        now=now,
    )


def park(journal, claim, *, now, wake_at=None):
    journal.suspend_run(claim.run_id, claim.epoch, children=[], wake_at=wake_at, now=now)


def reclaim(journal, run_id, *, now):
    claims, _ = journal.claim_runs("w2", 100, lease_seconds=LEASE, known_tasks=terms("t"), now=now)
    return next(c for c in claims if c.run_id == run_id)


def register(journal, **options_by_task):
    records = [model.TaskRecord(t, opts, "tasks.py", 1, "f") for t, opts in options_by_task.items()]
    journal.register_tasks(records, registered_by="test", project_dir=None, now=1)


def test_an_event_sent_after_the_trigger_but_before_the_wait_is_taken(journal, claimed):
    early = send(journal, "order.approved", {"order_id": 1}, now=5)  # before the run: not it
    c = claimed(now=10)
    sent = send(journal, "order.approved", {"order_id": 1, "by": "ann"}, now=11)
    assert sent.created and sent.seq > early.seq and sent.matched_runs == []
    taken = wait(journal, c, now=12, match={"order_id": 1})
    assert (taken.outcome, taken.event_id) == ("received", sent.event_id)
    assert json.loads(taken.data) == {"order_id": 1, "by": "ann"}
    [step] = journal.steps_of(c.run_id)
    assert (step.kind, step.status) == (model.WAIT, model.STEP_COMPLETED)
    assert step.output["data"] == {"order_id": 1, "by": "ann"}


def test_two_waits_take_two_events_in_send_order(journal, claimed):
    c = claimed(now=10)
    first = send(journal, "ping", {"n": 1}, now=11)
    second = send(journal, "ping", {"n": 2}, now=12)
    a = wait(journal, c, "a", event="ping", now=13)
    b = wait(journal, c, "b", event="ping", now=13, seq=2)
    third = wait(journal, c, "c", event="ping", now=13, seq=3)
    assert (a.event_id, b.event_id, third.outcome) == (first.event_id, second.event_id, "waiting")


def test_match_is_equality_on_top_level_fields_true_is_not_one(journal, claimed):
    c = claimed(now=10)
    send(journal, "ok", {"order_id": 2, "approved": True}, now=11)
    send(journal, "ok", {"order_id": 1, "approved": 1}, now=12)
    assert (
        wait(journal, c, "a", event="ok", match={"order_id": 1, "approved": True}, now=13).outcome
        == "waiting"
    )
    taken = wait(journal, c, "b", event="ok", match={"approved": True}, now=13, seq=2)
    assert json.loads(taken.data)["order_id"] == 2


def test_a_send_wakes_every_run_waiting_for_it_and_each_takes_it(journal, claimed):
    runs = [claimed(now=10, payload=f'{{"i": {i}}}') for i in range(3)]
    for c in runs:
        assert wait(journal, c, now=11, match={"order_id": 7}).outcome == "waiting"
        park(journal, c, now=11)
        assert journal.get_run(c.run_id).ready_at is None
    assert [w.event for w in journal.event_waits_of(runs[0].run_id)] == ["order.approved"]
    sent = send(journal, "order.approved", {"order_id": 7}, now=20)
    assert sorted(sent.matched_runs) == sorted(c.run_id for c in runs)
    claims, _ = journal.claim_runs("w2", 100, lease_seconds=LEASE, known_tasks=terms("t"), now=21)
    assert len(claims) == 3
    for again in claims:
        assert wait(journal, again, now=21, match={"order_id": 7}).event_id == sent.event_id
        assert journal.event_waits_of(again.run_id) == []
    [record] = journal.recent_events()
    assert sorted(record.matched_runs) == sorted(c.run_id for c in runs)


def test_an_event_sent_between_the_look_and_the_park_wakes_the_run(journal, claimed):
    c = claimed(now=10)
    assert wait(journal, c, now=11).outcome == "waiting"
    send(journal, "order.approved", now=12)  # the run is still 'running': nothing to wake yet
    park(journal, c, now=13)
    assert journal.get_run(c.run_id).ready_at == 13


def test_a_wait_times_out_once_its_time_passed_and_not_before(journal, claimed):
    c = claimed(now=10)
    assert wait(journal, c, now=10, timeout_at=100).outcome == "waiting"
    park(journal, c, now=10, wake_at=100)
    again = reclaim(journal, c.run_id, now=100)
    taken = wait(journal, again, now=100, timeout_at=100)
    assert taken.outcome == "timed_out"
    assert journal.steps_of(c.run_id)[0].status == model.STEP_COMPLETED


def test_an_event_id_makes_sending_idempotent(journal, claimed):
    c = claimed(now=10)
    one = send(journal, "paid", {"amount": 5}, event_id="pay-1", now=11)
    again = send(journal, "paid", {"amount": 5}, event_id="pay-1", now=12)
    assert (again.created, again.seq, again.event_id) == (False, one.seq, "pay-1")
    with pytest.raises(EventIdConflict):
        send(journal, "paid", {"amount": 6}, event_id="pay-1", now=13)
    wait(journal, c, "a", event="paid", now=14)
    assert wait(journal, c, "b", event="paid", now=14, seq=2).outcome == "waiting"


def test_an_on_event_task_gets_a_run_per_event_with_its_data(journal):
    register(journal, ship={"on_event": ["order.created"]}, other={})
    sent = send(journal, "order.created", {"order_id": 3}, now=10)
    [run_id] = sent.triggered_runs
    run = journal.get_run(run_id)
    assert (run.task_id, run.payload) == ("ship", {"order_id": 3})
    again = send(journal, "order.created", {"order_id": 3}, event_id=sent.event_id, now=11)
    assert again.triggered_runs == [run_id] and not again.created
    assert len(journal.list_runs(task_id="ship")) == 1
    assert journal.recent_events(name="order.created")[0].triggered_runs == [run_id]


def test_cancel_on_cancels_the_runs_whose_payload_field_equals_the_events(journal, claimed):
    register(journal, t={"cancel_on": [{"event": "order.cancelled", "match": "order_id"}]})
    keep = claimed(payload='{"order_id": 1}', now=10)
    stop = claimed(payload='{"order_id": 2}', now=10)
    [child] = journal.enqueue_children(
        stop.run_id, stop.epoch, [RunSpec("t", "{}", parent_run_id=stop.run_id)], now=11
    )
    wait(journal, stop, now=11)
    sent = send(journal, "order.cancelled", {"order_id": 2}, now=12)
    assert sent.cancelled_runs == [stop.run_id, child.run_id]
    assert journal.get_run(stop.run_id).status == model.CANCELLED
    assert journal.get_run(child.run_id).status == model.CANCELLED
    assert journal.get_run(keep.run_id).status == model.RUNNING
    assert journal.steps_of(stop.run_id)[0].status == model.STEP_CANCELLED
    assert journal.event_waits_of(stop.run_id) == []


def test_a_wait_cancelled_and_retried_waits_again_and_takes_its_event(journal, claimed):
    c = claimed(now=10)
    wait(journal, c, now=11)
    park(journal, c, now=11)
    journal.cancel_run(c.run_id, now=12)
    assert journal.steps_of(c.run_id)[0].status == model.STEP_CANCELLED
    assert journal.event_waits_of(c.run_id) == []
    journal.retry_run(c.run_id, now=13)
    again = reclaim(journal, c.run_id, now=14)
    assert wait(journal, again, now=14).outcome == "waiting"
    assert journal.steps_of(c.run_id)[0].status == model.STEP_WAITING
    park(journal, again, now=14)
    sent = send(journal, "order.approved", now=15)
    assert sent.matched_runs == [c.run_id]
    assert journal.get_run(c.run_id).ready_at == 15


def test_an_event_that_cancels_a_tasks_run_and_starts_one_spares_the_new_run(journal, claimed):
    register(
        journal,
        t={
            "on_event": ["order.updated"],
            "cancel_on": [{"event": "order.updated", "match": "order_id"}],
        },
    )
    old = claimed(payload='{"order_id": 4}', now=10)
    sent = send(journal, "order.updated", {"order_id": 4}, now=11)
    assert sent.cancelled_runs == [old.run_id]
    [new] = sent.triggered_runs
    assert journal.get_run(new).status == model.QUEUED
    assert send(journal, "order.updated", {"other": 1}, now=12).cancelled_runs == []


def test_waking_a_run_that_waits_for_an_event_says_which_and_how_to_send_it(journal, claimed):
    from sylphrun.errors import InvalidState

    c = claimed(now=10)
    wait(journal, c, now=11, match={"order_id": 42})
    park(journal, c, now=11)
    with pytest.raises(InvalidState) as err:
        journal.wake_run(c.run_id, now=12)
    message = str(err.value)
    assert "waiting for event order.approved where order_id=42" in message
    assert "child runs" not in message and "\n" not in message
    assert "sylphrun send order.approved --data '{\"order_id\":42}'" in message
    assert journal.logs_of(c.run_id) == []  # nothing written


def test_waking_a_run_whose_event_wait_has_a_timeout_times_it_out_now(journal, claimed):
    c = claimed(now=10)
    wait(journal, c, now=11, match={"order_id": 7}, timeout_at=5000)
    park(journal, c, now=11, wake_at=5000)
    what = journal.wake_run(c.run_id, now=20)
    assert what == "its wait 'w' for event order.approved times out now"
    assert journal.get_run(c.run_id).ready_at == 20
    resumed = reclaim(journal, c.run_id, now=21)
    # The resumed run reads the wait's timeout from its step: past, so it times out.
    timeout_at = journal.steps_of(c.run_id)[0].output["timeout_at"]
    assert timeout_at == 20
    taken = wait(journal, resumed, now=21, match={"order_id": 7}, timeout_at=timeout_at)
    assert taken.outcome == "timed_out"


def test_a_send_wakes_exactly_the_waits_its_data_matches_among_many(journal, claimed):
    """The sender looks its candidates up by one field of each wait's match (an index):
    every field must still match, 1 is 1.0, true is not 1, a wait with no match takes all."""
    matches = {
        "n1": {"n": 1},
        "n2": {"n": 2},
        "both": {"n": 1, "kind": "a"},
        "other-kind": {"n": 1, "kind": "b"},
        "float": {"x": 1.0},
        "bool": {"flag": True},
        "none": None,
        "null": {"gone": None},
    }
    runs = {}
    for label, match in matches.items():
        c = claimed(now=10, payload=json.dumps({"label": label}))
        assert wait(journal, c, now=11, match=match).outcome == "waiting"
        park(journal, c, now=11)
        runs[label] = c.run_id
    for i in range(50):  # waits for other orders: not candidates
        c = claimed(now=10, payload=json.dumps({"i": i}))
        wait(journal, c, now=11, match={"n": 100 + i})
    sent = send(
        journal,
        "order.approved",
        {"n": 1, "kind": "a", "x": 1, "flag": 1, "gone": None, "deep": {"n": 2}},
        now=20,
    )
    assert sorted(sent.matched_runs) == sorted(
        runs[k] for k in ("n1", "both", "float", "none", "null")
    )
