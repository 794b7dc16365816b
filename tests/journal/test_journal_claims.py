"""Claims and leases: order, quotas, unknown tasks, expiry and take-over, and the fence
that keeps a worker whose lease was taken over from writing."""

from __future__ import annotations

import pytest

from journal.helpers import LEASE, complete_step, finish, start_step, terms
from sylphrun import model
from sylphrun.journal import RunSpec
from sylphrun.journal.types import MAX_CRASHES, UNKNOWN_TASK_GRACE, LeaseLost, TaskTerms


def claim(journal, worker="w1", limit=100, *, now, known=None, lease=LEASE):
    return journal.claim_runs(
        worker, limit, lease_seconds=lease, known_tasks=known or terms("t"), now=now
    )


def test_runs_are_claimed_oldest_ready_first_up_to_the_limit(journal):
    ids = [
        journal.enqueue_runs([RunSpec("t", f'{{"n": {i}}}')], now=float(i))[0].run_id
        for i in (3, 1, 2)
    ]
    claims, unknown = claim(journal, limit=2, now=10)
    assert [c.run_id for c in claims] == [ids[1], ids[2]] and unknown == []
    first = claims[0]
    assert (first.task_id, first.payload, first.attempt, first.epoch) == ("t", '{"n": 1}', 1, 1)
    assert first.parent_run_id is None and first.crash_count == 0 and first.doom is None
    assert journal.get_run(ids[1]).status == model.RUNNING
    assert journal.get_run(ids[1]).started_at == 10
    # The rest stays for the next claim; nothing is claimed twice.
    assert [c.run_id for c in claim(journal, "w2", now=11)[0]] == [ids[0]]
    assert claim(journal, "w3", now=12) == ([], [])


def test_a_run_is_not_claimed_before_it_is_ready(journal):
    [(run_id, _)] = journal.enqueue_runs([RunSpec("t", "{}")], now=50)
    assert not journal.has_ready_work(now=49)
    assert claim(journal, now=49) == ([], [])
    assert journal.next_ready_at() == 50
    assert journal.has_ready_work(now=50)
    assert [c.run_id for c in claim(journal, now=50)[0]] == [run_id]
    assert journal.next_ready_at() is None


def test_a_concurrency_limit_caps_live_leases_of_a_task(journal):
    journal.enqueue_runs(
        [RunSpec("one", "{}"), RunSpec("one", "{}"), RunSpec("free", "{}"), RunSpec("free", "{}")],
        now=1,
    )
    known = terms("free", one=TaskTerms(concurrency=1))
    claims, _ = claim(journal, now=10, known=known)
    assert sorted(c.task_id for c in claims) == ["free", "free", "one"]
    assert claim(journal, "w2", now=11, known=known)[0] == []
    # Once the holder's lease has expired it no longer holds the slot: one run of the task
    # is claimed again (the other waits for that slot), and the expired free runs too.
    later, _ = claim(journal, "w2", now=10 + LEASE + 1, known=known)
    assert sorted(c.task_id for c in later) == ["free", "free", "one"]


def test_a_run_of_an_unknown_task_waits_a_grace_then_fails(journal):
    [(run_id, _)] = journal.enqueue_runs([RunSpec("gone", "{}")], now=100)
    assert claim(journal, now=100 + UNKNOWN_TASK_GRACE - 1) == ([], [])
    assert journal.get_run(run_id).status == model.QUEUED
    claims, unknown = claim(journal, now=100 + UNKNOWN_TASK_GRACE + 1)
    assert claims == [] and unknown == [run_id]
    run = journal.get_run(run_id)
    assert run.status == model.FAILED and run.error.startswith("UnknownTask")


def test_an_expired_lease_is_taken_over_and_fences_out_the_old_holder(journal, claimed):
    old = claimed(now=10, worker="w1")
    start_step(journal, old, "a", seq=1, now=11)
    assert claim(journal, "w2", now=10 + LEASE - 1) == ([], [])
    [new], _ = claim(journal, "w2", now=10 + LEASE + 1)
    assert new.run_id == old.run_id and new.epoch == old.epoch + 1
    # The step the old holder had in flight is in doubt: interrupted at the take-over.
    [step] = journal.steps_of(old.run_id)
    assert step.status == model.STEP_INTERRUPTED
    assert [a.status for a in step.attempt_log] == ["interrupted"]
    # Every write of the stale epoch is refused, and changes nothing.
    with pytest.raises(LeaseLost):
        journal.record_step_start(
            old.run_id, old.epoch, key="b", name="b", kind=model.STEP, seq=2, run_attempt=1, now=50
        )
    with pytest.raises(LeaseLost):
        journal.record_step_result(old.run_id, old.epoch, key="a", output="1", now=50)
    with pytest.raises(LeaseLost):
        journal.append_log(
            old.run_id, level="INFO", message="late", step_key=None, now=50, epoch=old.epoch
        )
    with pytest.raises(LeaseLost):
        finish(journal, old, now=50)
    with pytest.raises(LeaseLost):
        journal.suspend_run(old.run_id, old.epoch, children=[], wake_at=99, now=50)
    assert journal.heartbeat("w1", {old.run_id: old.epoch}, lease_seconds=LEASE, now=50) == [
        old.run_id
    ]
    journal.release_run(old.run_id, old.epoch, now=50)  # a stale release: silently nothing
    assert journal.requeue_after_error(old.run_id, old.epoch, error="x", now=50) is False
    assert [s.key for s in journal.steps_of(old.run_id)] == ["a"]
    assert journal.logs_of(old.run_id) == []
    assert journal.get_run(old.run_id).status == model.RUNNING
    assert journal.lease_states([old.run_id]) == {old.run_id: (new.epoch, model.RUNNING)}
    # The new holder writes as usual.
    complete_step(journal, new, "a", seq=1, now=52)
    finish(journal, new, now=53)
    assert journal.get_run(old.run_id).status == model.COMPLETED


def test_a_heartbeat_renews_only_the_leases_it_names(journal, claimed):
    kept = claimed(now=10, worker="w1")
    dropped = claimed(now=10, worker="w1")
    journal.register_worker("w1", pid=1, host="h", supervisor_pid=None, wake_addr=None, now=10)
    assert (
        journal.heartbeat("w1", {kept.run_id: kept.epoch}, lease_seconds=LEASE, now=10 + LEASE - 1)
        == []
    )
    [taken], _ = claim(journal, "w2", now=10 + LEASE + 1)
    assert taken.run_id == dropped.run_id
    assert journal.lease_holder(kept.run_id) == ("w1", 1, kept.epoch)


def test_the_supervisor_renews_a_starved_workers_leases(journal, claimed):
    c = claimed(now=10, worker="w1")
    assert journal.renew_leases_for("w1", lease_seconds=LEASE, now=10 + LEASE - 1) == 1
    assert claim(journal, "w2", now=10 + LEASE + 1) == ([], [])
    assert journal.lease_states([c.run_id])[c.run_id] == (c.epoch, model.RUNNING)


def test_a_released_run_is_queued_again_without_a_crash(journal, claimed):
    c = claimed(now=10)
    journal.release_run(c.run_id, c.epoch, now=12)
    run = journal.get_run(c.run_id)
    assert (run.status, run.attempt, run.ready_at) == (model.QUEUED, 1, 12)
    [again], _ = claim(journal, "w2", now=13)
    assert again.epoch == c.epoch + 2 and again.crash_count == 0 and again.attempt == 1


def test_internal_errors_requeue_with_a_pause_then_fail_the_run(journal, claimed):
    c = claimed(now=10)
    for n in range(1, MAX_CRASHES):
        assert journal.requeue_after_error(c.run_id, c.epoch, error="boom", now=20) is False
        run = journal.get_run(c.run_id)
        assert run.status == model.QUEUED and run.ready_at > 20
        [c], _ = claim(journal, now=30 * n + 30)
        assert c.crash_count == n
    assert journal.requeue_after_error(c.run_id, c.epoch, error="boom", now=200) is True
    run = journal.get_run(c.run_id)
    assert run.status == model.FAILED and "InternalError" in run.error and "boom" in run.error


def test_a_scheduled_retry_is_a_new_attempt_ready_at_its_time(journal, claimed):
    c = claimed(now=10)
    complete_step(journal, c, "a", '"kept"', seq=1, now=11)
    journal.schedule_retry(
        c.run_id, c.epoch, error="ValueError: x", traceback="tb", retry_at=100, now=12
    )
    run = journal.get_run(c.run_id)
    assert (run.status, run.attempt, run.ready_at, run.error) == (
        model.QUEUED,
        2,
        100,
        "ValueError: x",
    )
    [attempt] = journal.run_attempts(c.run_id)
    assert (attempt.attempt, attempt.status, attempt.traceback) == (1, model.FAILED, "tb")
    assert claim(journal, now=99) == ([], [])
    [again], _ = claim(journal, now=100)
    assert again.attempt == 2 and again.epoch > c.epoch
    assert journal.replay_state(c.run_id)["a"].output == '"kept"'


def test_a_claim_hands_over_the_previous_code_fingerprint(journal):
    [(run_id, _)] = journal.enqueue_runs([RunSpec("t", "{}")], now=1)
    [first], _ = claim(journal, now=2, known={"t": TaskTerms(fingerprint="v1")})
    assert first.previous_fingerprint is None
    journal.release_run(run_id, first.epoch, now=3)
    [second], _ = claim(journal, now=4, known={"t": TaskTerms(fingerprint="v2")})
    assert second.previous_fingerprint == "v1"


def test_a_task_timeout_makes_its_run_overdue(journal):
    journal.register_worker("w1", pid=7, host="h", supervisor_pid=None, wake_addr=None, now=1)
    [(run_id, _)] = journal.enqueue_runs([RunSpec("t", "{}")], now=1)
    claim(journal, "w1", now=10, known={"t": TaskTerms(timeout=5)})
    assert journal.overdue_runs(["w1"], now=14) == []
    assert journal.overdue_runs(["w1"], now=16) == [(run_id, "t", "w1")]
    assert journal.overdue_runs(["w1"], now=16)[0].worker_id == "w1"
    assert journal.overdue_runs([], now=16) == []
    assert journal.doom_run(run_id, error="TaskTimeout: stuck", now=16, worker_id="w9") is False
    assert journal.doom_run(run_id, error="TaskTimeout: stuck", now=16, worker_id="w1") is True
