"""Which worker is on which host (issue 17): `sylphrun workers [--json]`, and the
dashboard's Workers view (`W`), the run heading's "held by" and the status line's hosts.
Other hosts are pretended: a worker registered through the journal interface with another
host name, as a `sylphrun worker` on that machine would register itself."""

from __future__ import annotations

import json
import time

import pytest

from sylphrun.journal import RunSpec, open_journal
from sylphrun.journal.types import TaskTerms

LEASE = 60.0


def pretend_workers(location, now: float) -> str:
    """Three workers on two hosts; w-alpha-1 holds one running run (its id returned)."""
    journal = open_journal(location)
    try:
        for worker_id, host, pid in (
            ("w-alpha-1", "alpha", 101),
            ("w-alpha-2", "alpha", 102),
            ("w-beta-1", "beta", 201),
        ):
            journal.register_worker(
                worker_id, pid=pid, host=host, supervisor_pid=1, wake_addr=None, now=now
            )
        [(run_id, _)] = journal.enqueue_runs([RunSpec("hello", "{}", None)], now)
        journal.claim_runs(
            "w-alpha-1", 1, lease_seconds=LEASE, known_tasks={"hello": TaskTerms()}, now=now
        )
        return run_id
    finally:
        journal.close()


@pytest.fixture(params=["sqlite", "postgres"])
def journal_location(request, project):
    if request.param == "sqlite":
        return str(project.config().journal)
    return request.getfixturevalue("postgres_url")


def test_workers_json_lists_each_worker_with_its_host_and_runs(project, journal_location):
    run_id = pretend_workers(journal_location, time.time())
    done = project.cli("workers", "--json", "--journal", journal_location)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [(w["worker_id"], w["host"], w["pid"], w["runs"]) for w in doc] == [
        ("w-alpha-1", "alpha", 101, [run_id]),
        ("w-alpha-2", "alpha", 102, []),
        ("w-beta-1", "beta", 201, []),
    ]
    assert set(doc[0]) == {"worker_id", "host", "pid", "started_at", "heartbeat_at", "runs"}
    assert doc[0]["started_at"].endswith("Z") and doc[0]["heartbeat_at"].endswith("Z")


def test_workers_prints_a_table_and_says_when_there_are_none(project):
    none = project.cli("workers")
    assert none.returncode == 0 and "no workers: start `sylphrun worker`" in none.stdout
    assert project.cli("workers", "--json").stdout.strip() == "[]"
    run_id = pretend_workers(project.config().journal, time.time())
    table = project.cli("workers").stdout
    assert "HOST" in table and "beta" in table
    assert f"1  {run_id}" in table
