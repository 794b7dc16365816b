"""Workers and the runs they hold: registration, liveness, a dead worker's runs released
(requeued, doomed, failed), and the registry of the tasks they can run."""

from __future__ import annotations

from journal.helpers import LEASE, start_step, terms
from sylphrun import model
from sylphrun.journal.types import MAX_CRASHES


def register(journal, worker_id, *, now, pid=100):
    journal.register_worker(worker_id, pid=pid, host="h", supervisor_pid=1, wake_addr="/s", now=now)


def test_live_workers_are_the_registered_ones_with_a_recent_heartbeat(journal):
    register(journal, "w1", now=10, pid=11)
    register(journal, "w2", now=10, pid=12)
    journal.heartbeat("w1", {}, lease_seconds=LEASE, now=50)
    live = journal.live_workers(now=55, stale_after=10)
    assert [(w.id, w.pid, w.wake_addr, w.heartbeat_at) for w in live] == [("w1", 11, "/s", 50)]
    journal.unregister_worker("w1", now=56)
    assert journal.live_workers(now=56, stale_after=10) == []


def test_a_crashed_workers_runs_are_requeued_counting_a_crash(journal, claimed):
    c = claimed(now=10, worker="w1")
    start_step(journal, c, "a", seq=1, now=11)
    requeued, failed = journal.release_worker_runs("w1", reason="SIGKILL", crashed=True, now=12)
    assert (requeued, failed) == ([c.run_id], [])
    run = journal.get_run(c.run_id)
    assert (run.status, run.ready_at) == (model.QUEUED, 12)
    assert journal.steps_of(c.run_id)[0].status == model.STEP_INTERRUPTED
    [again], _ = journal.claim_runs("w2", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=13)
    assert again.crash_count == 1 and again.epoch > c.epoch
    # A worker stopped on purpose hands its runs back without counting a crash.
    requeued, _ = journal.release_worker_runs("w2", reason="stopped", crashed=False, now=14)
    [third], _ = journal.claim_runs("w3", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=15)
    assert requeued == [c.run_id] and third.crash_count == 1


def test_a_run_that_keeps_crashing_its_workers_is_doomed_then_failed(journal, claimed):
    c = claimed(now=10, worker="w0")
    for n in range(1, MAX_CRASHES):
        journal.release_worker_runs(f"w{n - 1}", reason="segfault", crashed=True, now=10 * n)
        [c], _ = journal.claim_runs(
            f"w{n}", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=10 * n + 1
        )
        assert c.doom is None
    last = f"w{MAX_CRASHES - 1}"
    requeued, failed = journal.release_worker_runs(last, reason="segfault", crashed=True, now=100)
    assert (requeued, failed) == ([], [c.run_id])
    # Doomed, not failed yet: its next execution replays, then fails where it crashed.
    [doomed], _ = journal.claim_runs("wx", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=101)
    assert "WorkerCrashed" in doomed.doom and journal.get_run(c.run_id).status == model.RUNNING
    requeued, failed = journal.release_worker_runs("wx", reason="segfault", crashed=True, now=102)
    assert (requeued, failed) == ([], [c.run_id])
    run = journal.get_run(c.run_id)
    assert run.status == model.FAILED and "WorkerCrashed" in run.error


def test_tasks_are_registered_as_a_set(journal):
    a = model.TaskRecord("a", {"concurrency": 2}, "flows.py", 3, "f1")
    b = model.TaskRecord("b", {}, "flows.py", 9, "f2")
    assert journal.registered_tasks() == {}
    assert journal.register_tasks([a, b], registered_by="w1", project_dir="/p", now=1) is True
    assert journal.register_tasks([b, a], registered_by="w2", project_dir="/p", now=2) is False
    tasks = journal.registered_tasks()
    assert sorted(tasks) == ["a", "b"]
    assert (tasks["a"].options, tasks["a"].source_line, tasks["a"].registered_by) == (
        {"concurrency": 2},
        3,
        "w1",
    )
    assert journal.register_tasks([b], registered_by="w3", project_dir="/p", now=3) is True
    assert list(journal.registered_tasks()) == ["b"]
