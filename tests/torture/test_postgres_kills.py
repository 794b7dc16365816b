"""The kill/stop torture on a PostgreSQL journal (issue 17): `sylphrun worker` processes on
several "hosts" (each its own process group and working folder, `--journal
postgresql://...`) drain one queue of multi-step runs (chains, fan-out, sagas with
compensation, retries, sleeps) while workers, whole hosts and supervisors are killed -9
and hosts are stopped with SIGTERM and started again. After every fault and at the end,
`harness.check_invariants` holds on the journal and the ledger: every run terminal with
the outcome its payload asks for, no completed step lost or run again, each compensation
once, after its step.

The default takes ~15 s on a quiet machine. SYLPHRUN_TORTURE_SCALE=N (say 10) is the
by-hand version: N times the faults and runs, on three hosts; SYLPHRUN_TORTURE_SEED picks
the dice.
"""

from __future__ import annotations

import os

from pg_harness import PgTorture

SCALE = int(os.environ.get("SYLPHRUN_TORTURE_SCALE", "1"))
SEED = int(os.environ.get("SYLPHRUN_TORTURE_SEED", "11"))


def test_hosts_share_one_queue_through_kills_and_stops(postgres_url, tmp_path):
    hosts = 2 if SCALE == 1 else 3
    torture = PgTorture(tmp_path / "proj", postgres_url, hosts=hosts, workers=2, seed=SEED)
    try:
        figures = torture.run(6 * SCALE, initial_runs=12 * SCALE, runs_per_fault=2)
        by_host = torture.steps_by_host()
        undone = torture.check_undos(killed_ok=True)
    finally:
        torture.close()
    print(f"\npostgres kill torture: {figures}\nsteps by host: {dict(by_host)}")
    assert set(figures.faults) == {"worker", "host", "supervisor", "stop"}, figures.faults
    assert figures.checks == 6 * SCALE + 1
    last = figures.last
    assert last["runs"] >= figures.triggered  # children too
    assert last["outcomes"]["completed"] > 0 and last["outcomes"]["failed (as asked)"] > 0
    assert last["compensations"] > 0 and undone > 0
    # Every host drained the one queue (steps whose worker was never sampled aside).
    assert all(by_host[h.folder.name] > 0 for h in torture.hosts), by_host
