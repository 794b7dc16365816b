"""The journal's run state machine through its functions: claim under a lease, quotas,
fencing, expiry and takeover, retry, park and wake, cancel, children, idempotency."""

from __future__ import annotations

import pytest
from conftest import LEASE, T0, claim, enqueue

from sylphrun import model
from sylphrun.errors import InvalidState, UnknownRun
from sylphrun.journal import RunSpec, queries, store


def test_a_claim_leases_the_run_and_bumps_its_epoch(conn):
    store.register_worker(
        conn, "w1", pid=4242, host="h", supervisor_pid=None, wake_addr=None, now=T0
    )
    run_id = enqueue(conn)
    [c] = claim(conn, now=T0 + 1)
    assert (c.run_id, c.attempt, c.crash_count) == (run_id, 1, 0)
    run = queries.get_run(conn, run_id)
    assert run.status == model.RUNNING
    assert queries.lease_holder(conn, run_id) == ("w1", 4242, c.epoch)
    assert queries.lease_states(conn, [run_id]) == {run_id: (c.epoch, model.RUNNING)}
    assert claim(conn, "w2", now=T0 + 2) == []  # a live lease is not claimable


def test_a_run_is_not_claimed_before_it_is_ready_and_in_ready_order(conn):
    late = enqueue(conn, now=T0 + 5)
    early = enqueue(conn, now=T0 + 1)
    assert claim(conn, now=T0) == []
    assert [c.run_id for c in claim(conn, now=T0 + 10)] == [early, late]


def test_the_limit_bounds_one_claim(conn):
    for _ in range(5):
        enqueue(conn)
    assert len(claim(conn, limit=2)) == 2
    assert len(claim(conn, limit=0)) == 0
    assert len(claim(conn, limit=10)) == 3


def test_a_concurrency_quota_counts_live_leases_only(conn):
    for _ in range(3):
        enqueue(conn)
    assert len(claim(conn, concurrency=2)) == 2
    assert claim(conn, "w2", concurrency=2, now=T0 + 1) == []
    # Both leases run out: their slots are free again, and the runs are claimable.
    taken = claim(conn, "w2", concurrency=2, now=T0 + LEASE + 1)
    assert len(taken) == 2


def test_an_expired_lease_is_taken_over_and_fences_the_old_holder(conn):
    run_id = enqueue(conn)
    [old] = claim(conn, "w1")
    [new] = claim(conn, "w2", now=T0 + LEASE + 1)
    assert new.run_id == run_id and new.epoch > old.epoch
    with pytest.raises(store.LeaseLost):
        store.finish_run(
            conn,
            run_id,
            old.epoch,
            status=model.COMPLETED,
            output="1",
            error=None,
            traceback=None,
            now=T0 + LEASE + 2,
        )
    store.finish_run(
        conn,
        run_id,
        new.epoch,
        status=model.COMPLETED,
        output="2",
        error=None,
        traceback=None,
        now=T0 + LEASE + 2,
    )
    assert queries.get_run(conn, run_id).status == model.COMPLETED


def test_heartbeat_renews_held_leases_and_reports_the_lost(conn):
    a, b = enqueue(conn), enqueue(conn)
    ca, cb = claim(conn)
    store.cancel_run(conn, b, now=T0 + 1)
    lost = store.heartbeat(
        conn, "w1", {a: ca.epoch, b: cb.epoch}, lease_seconds=LEASE, now=T0 + LEASE - 1
    )
    assert lost == [b]
    # Renewed: still held past the first lease's end.
    assert claim(conn, "w2", now=T0 + LEASE + 1) == []


def test_an_unknown_task_waits_out_the_grace_then_fails(conn):
    run_id = enqueue(conn, task_id="gone")
    known = {"t": store.TaskTerms()}
    assert store.claim_runs(conn, "w1", 5, lease_seconds=LEASE, known_tasks=known, now=T0 + 1) == (
        [],
        [],
    )
    claims, unknown = store.claim_runs(
        conn, "w1", 5, lease_seconds=LEASE, known_tasks=known, now=T0 + store.UNKNOWN_TASK_GRACE + 1
    )
    assert (claims, unknown) == ([], [run_id])
    run = queries.get_run(conn, run_id)
    assert run.status == model.FAILED and "UnknownTask" in run.error


def test_a_timeout_sets_the_deadline_at_the_claim(conn):
    run_id = enqueue(conn)
    claim(conn, timeout=5.0, now=T0 + 1)
    assert queries.overdue_runs(conn, ["w1"], now=T0 + 5) == []
    assert [r[0] for r in queries.overdue_runs(conn, ["w1"], now=T0 + 7)] == [run_id]


def test_schedule_retry_records_the_attempt_and_requeues_later(conn):
    run_id = enqueue(conn)
    [c] = claim(conn)
    store.schedule_retry(
        conn, run_id, c.epoch, error="ValueError: x", traceback="tb", retry_at=T0 + 30, now=T0 + 1
    )
    run = queries.get_run(conn, run_id)
    assert (run.status, run.attempt) == (model.QUEUED, 2)
    [attempt] = queries.run_attempts(conn, run_id)
    assert (attempt.attempt, attempt.status, attempt.error) == (1, model.FAILED, "ValueError: x")
    assert claim(conn, now=T0 + 29) == []
    [again] = claim(conn, now=T0 + 30)
    assert again.attempt == 2 and again.epoch > c.epoch
    with pytest.raises(store.LeaseLost):  # the failed attempt's epoch is fenced out
        store.schedule_retry(
            conn, run_id, c.epoch, error="e", traceback=None, retry_at=T0, now=T0 + 31
        )


def test_release_hands_back_without_a_crash_and_ignores_a_lost_lease(conn):
    run_id = enqueue(conn)
    [c] = claim(conn)
    store.release_run(conn, run_id, c.epoch, now=T0 + 1)
    store.release_run(conn, run_id, c.epoch, now=T0 + 2)  # stale epoch: a no-op
    [again] = claim(conn, now=T0 + 1)
    assert again.crash_count == 0 and again.attempt == 1


def test_internal_errors_back_off_then_fail_at_max_crashes(conn):
    run_id = enqueue(conn)
    now = T0
    for crash in range(1, store.MAX_CRASHES):
        [c] = claim(conn, now=now)
        assert store.requeue_after_error(conn, run_id, c.epoch, error="boom", now=now) is False
        assert claim(conn, now=now) == []  # a pause before the next try
        now += 0.1 * crash
    [c] = claim(conn, now=now)
    assert c.crash_count == store.MAX_CRASHES - 1
    assert store.requeue_after_error(conn, run_id, c.epoch, error="boom", now=now) is True
    run = queries.get_run(conn, run_id)
    assert run.status == model.FAILED and "InternalError" in run.error


def kids_of(parent: str, *keys: str) -> list[RunSpec]:
    """Specs of children as a step of `parent` creates them (keyed `run:step:i`)."""
    return [
        RunSpec(
            "t",
            "{}",
            f"{parent}:s:{k}",
            parent_run_id=parent,
            parent_step_key="s",
            derived_key=True,
        )
        for k in keys
    ]


def test_a_parked_parent_wakes_when_its_last_child_finishes(conn):
    parent = enqueue(conn)
    [p] = claim(conn)
    kids = store.enqueue_children(conn, parent, p.epoch, kids_of(parent, "0", "1"), T0)
    kid_ids = [k for k, _ in kids]
    store.suspend_run(conn, parent, p.epoch, children=kid_ids, wake_at=None, now=T0 + 1)
    assert queries.get_run(conn, parent).status == model.WAITING
    claims = {c.run_id: c for c in claim(conn, "w2", now=T0 + 2)}
    assert set(claims) == set(kid_ids)  # the parked parent is not claimable
    for n, kid in enumerate(kid_ids):
        store.finish_run(
            conn,
            kid,
            claims[kid].epoch,
            status=model.COMPLETED,
            output="1",
            error=None,
            traceback=None,
            now=T0 + 3 + n,
        )
        ready = [c.run_id for c in claim(conn, "w3", now=T0 + 10)]
        assert ready == ([] if n == 0 else [parent])
    run = queries.get_run(conn, parent)
    assert (run.children_done, run.children_failed) == (2, 0)


def test_suspending_on_finished_children_makes_the_run_ready_now(conn):
    parent = enqueue(conn)
    [p] = claim(conn)
    [(kid, _)] = store.enqueue_children(conn, parent, p.epoch, kids_of(parent, "0"), T0)
    [k] = claim(conn, "w2")
    store.finish_run(
        conn, kid, k.epoch, status=model.FAILED, output=None, error="e", traceback=None, now=T0 + 1
    )
    store.suspend_run(conn, parent, p.epoch, children=[kid], wake_at=T0 + 999, now=T0 + 2)
    assert [c.run_id for c in claim(conn, now=T0 + 2)] == [parent]
    assert queries.get_run(conn, parent).children_failed == 1


def test_a_sleep_parks_until_its_wake_time_and_wake_moves_it(conn):
    run_id = enqueue(conn)
    [c] = claim(conn)
    store.suspend_run(conn, run_id, c.epoch, children=[], wake_at=T0 + 3600, now=T0 + 1)
    assert claim(conn, now=T0 + 60) == []
    what = store.wake_run(conn, run_id, now=T0 + 60)
    assert what == "it resumes now"
    assert [x.run_id for x in claim(conn, now=T0 + 60)] == [run_id]
    with pytest.raises(InvalidState, match="only a sleeping run"):
        store.wake_run(conn, run_id, now=T0 + 61)


def test_cancel_cascades_to_unfinished_children_and_retry_revives_them(conn):
    parent = enqueue(conn)
    [p] = claim(conn)
    kids = [
        k for k, _ in store.enqueue_children(conn, parent, p.epoch, kids_of(parent, "0", "1"), T0)
    ]
    [first] = claim(conn, "w2", limit=1, now=T0 + 1)
    store.finish_run(
        conn,
        first.run_id,
        first.epoch,
        status=model.COMPLETED,
        output="1",
        error=None,
        traceback=None,
        now=T0 + 2,
    )
    cancelled = store.cancel_run(conn, parent, now=T0 + 3)
    other = next(k for k in kids if k != first.run_id)
    assert set(cancelled) == {parent, other}
    with pytest.raises(store.LeaseLost):  # the parent's worker is fenced out
        store.suspend_run(conn, parent, p.epoch, children=kids, wake_at=None, now=T0 + 4)
    with pytest.raises(InvalidState, match="already cancelled"):
        store.cancel_run(conn, parent, now=T0 + 4)
    assert queries.get_run(conn, parent).children_cancelled == 1
    store.retry_run(conn, parent, now=T0 + 5)
    assert {r.id: r.status for r in queries.children_of(conn, parent)} == {
        first.run_id: model.COMPLETED,
        other: model.QUEUED,
    }
    run = queries.get_run(conn, parent)
    assert (run.status, run.attempt, run.children_cancelled) == (model.QUEUED, 2, 0)


def test_retry_refuses_a_run_that_did_not_fail(conn):
    run_id = enqueue(conn)
    with pytest.raises(InvalidState, match="only a failed or cancelled run"):
        store.retry_run(conn, run_id, now=T0)
    with pytest.raises(UnknownRun):
        store.cancel_run(conn, "nope", now=T0)


def test_an_idempotency_key_returns_the_first_run(conn):
    first = store.enqueue_runs(conn, [RunSpec("t", '{"a": 1}', "key")], T0)
    again = store.enqueue_runs(conn, [RunSpec("t", '{ "a" : 1 }', "key")], T0 + 1)
    assert again == [(first[0][0], False)]
    other_task = store.enqueue_runs(conn, [RunSpec("u", '{"a": 1}', "key")], T0)
    assert other_task[0][1] is True


def test_an_idempotency_key_with_another_payload_is_refused(conn):
    store.enqueue_runs(conn, [RunSpec("t", '{"a": 1}', "key")], T0)
    with pytest.raises(Exception, match="key"):
        store.enqueue_runs(conn, [RunSpec("t", '{"a": 2}', "key")], T0)


def test_a_child_finishing_wakes_a_parent_parked_with_a_later_wake_time(conn):
    parent = enqueue(conn)
    [p] = claim(conn)
    [(kid, _)] = store.enqueue_children(conn, parent, p.epoch, kids_of(parent, "0"), T0)
    store.suspend_run(conn, parent, p.epoch, children=[kid], wake_at=T0 + 999, now=T0 + 1)
    [k] = claim(conn, "w2", now=T0 + 2)
    assert k.run_id == kid
    store.finish_run(
        conn,
        kid,
        k.epoch,
        status=model.COMPLETED,
        output="1",
        error=None,
        traceback=None,
        now=T0 + 3,
    )
    assert [c.run_id for c in claim(conn, now=T0 + 3)] == [parent]
