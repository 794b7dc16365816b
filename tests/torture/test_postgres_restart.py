"""A PostgreSQL restart under load (issue 17, as DBOS's chaos tests do): while two
`sylphrun worker` hosts drain a queue of multi-step runs, the server is stopped (`pg_ctl
stop -m fast`, and `-m immediate`: a crash, WAL recovery at the start) and started again
after a short outage. The runs go on once it is back: every one terminal with its asked
outcome, no completed step lost or run again (`harness.check_invariants`, journal and
ledger); the workers did not die; each process that lost the server said so in one line
and said when it was back, with no traceback and none of the driver's per-attempt noise.

On a cluster of its own (`pg_cluster.CrashSafeCluster`: synchronous_commit on, so a crash
loses no commit the journal was told was done; and no other test's server goes down).
The default (one outage of each kind) takes ~12 s on a quiet machine;
SYLPHRUN_TORTURE_SCALE=N is N times as many outages and initial runs, by hand.
"""

from __future__ import annotations

import os
import re

import pg_cluster
import pytest
from conftest import wait_until
from pg_harness import PgTorture

SCALE = int(os.environ.get("SYLPHRUN_TORTURE_SCALE", "1"))
OUTAGE = 1.5  # seconds the server stays down

LOST = "lost the PostgreSQL journal at"
BACK = "is back"


@pytest.fixture(scope="module")
def crash_safe_cluster():
    cluster = pg_cluster.crash_safe_or_reason()
    if isinstance(cluster, str):
        if pg_cluster.required():
            pytest.fail(f"{cluster} (required under CI: .ci/run installs Debian's postgresql)")
        pytest.skip(f"PostgreSQL backend NOT TESTED: {cluster}")
    yield cluster
    cluster.stop()


def _said_back(log: str) -> bool:
    return log.count(LOST) == len(re.findall(rf"journal at \S+ {BACK}", log))


def test_runs_go_on_across_server_restarts(crash_safe_cluster, tmp_path):
    from sylphrun.journal import open_journal

    url = crash_safe_cluster.url(crash_safe_cluster.new_database())
    open_journal(url).close()  # migrated before the hosts start
    torture = PgTorture(tmp_path / "proj", url, hosts=2, workers=2, seed=5)
    outages = ["fast", "immediate"] * SCALE
    try:
        for host in torture.hosts:
            host.start()
        torture.wait_for_workers()
        torture.trigger(12 * SCALE)
        for mode in outages:
            torture.wait_progress(12)  # under load: steps are running
            torture.server_outage(crash_safe_cluster, mode, OUTAGE)
            before = torture.figures.triggered
            torture.trigger(8)  # new work after it is back, too
        torture.wait_progress(12)
        last = torture.finish(120)
        torture.check_undos(killed_ok=False)
        alive = [h.running and h.starts == 1 for h in torture.hosts]
        # A process says "back" at its next connection: the supervisor's comes with its
        # next sweep, after the pool's reconnection backoff, maybe after the runs ended.
        wait_until(
            lambda: all(_said_back(h.output()) for h in torture.hosts),
            timeout=60,
            message="each process that lost the server to say it is back",
        )
        logs = {h.folder.name: h.output() for h in torture.hosts}
    finally:
        torture.close()
    print(f"\nserver restarts: {torture.figures}")
    assert last["outcomes"]["completed"] > 0 and last["outcomes"]["failed (as asked)"] > 0
    assert torture.figures.triggered > before
    assert all(alive), f"a host died or was restarted: {torture.outputs()}"
    for name, log in logs.items():
        assert "Traceback" not in log, f"{name}:\n{log}"
        assert "error connecting" not in log and "discarding" not in log, f"{name}:\n{log}"
        # The `sylphrun worker` process and each of its 2 workers: lost once, back once,
        # per outage (a process that did not touch the journal meanwhile may say neither).
        lost, back = log.count(LOST), len(re.findall(rf"journal at \S+ {BACK}", log))
        assert 1 <= lost <= 3 * len(outages) and back == lost, f"{name}:\n{log}"
        lines = len(log.splitlines())
        assert lines <= 3 + 4 * 3 * len(outages), f"{name} said too much:\n{log}"


def test_a_server_down_longer_than_the_journal_waits_costs_no_host(crash_safe_cluster, tmp_path):
    """Past the pool's wait (30 s; 0.5 s here, SYLPHRUN_TEST_PG_WAIT) every journal call
    fails: the `sylphrun worker` process used to die of its sweeps' JournalError, taking
    its workers with it, and never came back. It rides the outage out now."""
    from sylphrun.journal import open_journal

    url = crash_safe_cluster.url(crash_safe_cluster.new_database())
    open_journal(url).close()
    env = {"SYLPHRUN_TEST_PG_WAIT": "0.5"}
    torture = PgTorture(tmp_path / "proj", url, hosts=2, workers=1, seed=9, env=env)
    try:
        for host in torture.hosts:
            host.start()
        torture.wait_for_workers()
        torture.trigger(12)
        torture.wait_progress(10)
        # Runs inside a 1 s step when the server stops: the step's result, the run's
        # hand-back and the worker's hand-back fail, 0.5 s each; owed when it is back.
        slow = torture.trigger_payloads([("chain", {"n": 2, "t": 1.0})] * 2)
        torture.wait_started(slow, "s0")
        torture.server_outage(crash_safe_cluster, "fast", 4.0)
        # Their journal calls failed for 3 s and more by now: a host that dies of it is gone.
        alive = [h.running and h.starts == 1 for h in torture.hosts]
        torture.trigger(6)
        assert all(alive), f"a host died of the outage: {torture.outputs()}"
        last = torture.finish(120)
        alive = [h.running and h.starts == 1 for h in torture.hosts]
        logs = {h.folder.name: h.output() for h in torture.hosts}
        owed = {m for log in logs.values() for m in re.findall(r"run (\S+): could not hand", log)}
        crashes = _crash_counts(url, owed)
        # Stopped while the server is down (idle: nothing to hand back): it still exits
        # cleanly, saying what it could not write, without a traceback.
        pg_cluster.stop_server(crash_safe_cluster, "fast")
        try:
            code = torture.hosts[0].stop()
        finally:
            pg_cluster.start_server(crash_safe_cluster)
        stopped_log = torture.hosts[0].output()
    finally:
        torture.close()
    print(f"\nlong outage: {torture.figures}; hand-backs owed: {crashes}")
    assert all(alive), f"a host died: {logs}"
    # A hand-back the journal refused was made once it answered, not left to the lease to
    # expire; and as a release: a server out of reach is not the run's doing, so no crash
    # is counted (three restarts must not fail a run as InternalError).
    assert owed, logs
    handed = {
        m
        for log in logs.values()
        for m in re.findall(r"run (\S+): handed back now that the journal answers", log)
    }
    assert owed <= handed, (owed, logs)
    assert crashes == dict.fromkeys(owed, 0), crashes
    assert code == 0, stopped_log
    assert "Traceback" not in stopped_log, stopped_log
    assert last["outcomes"]["completed"] > 0
    for name, log in logs.items():
        assert "Traceback" not in log, f"{name}:\n{log}"


def _crash_counts(url: str, run_ids: set[str]) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as db:
        rows = db.execute("SELECT id, crash_count FROM runs WHERE id = ANY(%s)", (list(run_ids),))
        return dict(rows.fetchall())
