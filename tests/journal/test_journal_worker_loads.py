"""`worker_loads`: the live workers, the host each runs on and the runs it holds (what
`sylphrun workers` and the dashboard's Workers view show), the same on every backend."""

from __future__ import annotations

from journal.helpers import LEASE, finish
from sylphrun.journal.types import WorkerLoad


def register(journal, worker_id, *, host, now, pid=100):
    journal.register_worker(
        worker_id, pid=pid, host=host, supervisor_pid=1, wake_addr=None, now=now
    )


def test_each_live_worker_comes_with_its_host_and_the_runs_it_holds(journal, claimed):
    register(journal, "w1", host="alpha", now=10, pid=11)
    register(journal, "w2", host="beta", now=11, pid=12)
    register(journal, "w3", host="alpha", now=12, pid=13)
    one, two = claimed(now=12, worker="w1"), claimed(now=12, worker="w1")
    done = claimed(now=12, worker="w3")
    finish(journal, done, now=13)  # a finished run is held by nobody
    loads = journal.worker_loads(now=14, stale_after=10)
    assert loads == [
        WorkerLoad("w1", "alpha", 11, 10, 10, tuple(sorted([one.run_id, two.run_id]))),
        WorkerLoad("w3", "alpha", 13, 12, 12, ()),
        WorkerLoad("w2", "beta", 12, 11, 11, ()),
    ]


def test_stopped_and_silent_workers_are_not_listed(journal):
    register(journal, "w1", host="alpha", now=10)
    register(journal, "w2", host="beta", now=10)
    register(journal, "w3", host="gamma", now=10)
    journal.heartbeat("w1", {}, lease_seconds=LEASE, now=50)
    journal.heartbeat("w3", {}, lease_seconds=LEASE, now=50)
    journal.unregister_worker("w3", now=51)
    assert [w.worker_id for w in journal.worker_loads(now=55, stale_after=10)] == ["w1"]
