"""A PostgreSQL journal whose connection the server drops in the middle of a write (a
restart's `pg_ctl stop -m fast`, `pg_terminate_backend`, a failover): the transaction was
not committed, so it is run again on a fresh connection instead of failing the caller
(a worker handed its run back as a crash, and the step in flight ran again)."""

from __future__ import annotations

import threading
import time

import pg_cluster
import pytest

from journal.helpers import LEASE, terms
from sylphrun.journal import RunSpec

psycopg = __import__("psycopg") if pg_cluster.required() else pytest.importorskip("psycopg")


@pytest.fixture
def pg(postgres_cluster):
    from journal.conftest import PostgresBackend

    made = PostgresBackend(postgres_cluster)
    yield made
    made.cleanup()


def _blocked_backend(url: str, deadline: float) -> int:
    """The pid of the journal's backend waiting on a row lock."""
    with psycopg.connect(url, autocommit=True) as db:
        while time.monotonic() < deadline:
            row = db.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'sylphrun'"
                " AND wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.02)
    raise AssertionError("the journal's write never waited on the lock")


def test_a_write_whose_connection_is_dropped_midway_is_run_again(pg):
    journal = pg.open()
    try:
        [(run_id, _)] = journal.enqueue_runs([RunSpec("t", "{}")], now=1)
        [c], _ = journal.claim_runs("w", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=2)
        outcome: list[object] = []
        with psycopg.connect(pg.url) as blocker:  # holds the run's row: the write waits
            blocker.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (run_id,))

            def finish() -> None:
                try:
                    journal.finish_run(
                        run_id,
                        c.epoch,
                        status="completed",
                        output="1",
                        error=None,
                        traceback=None,
                        now=3,
                    )
                    outcome.append("done")
                except Exception as exc:  # noqa: BLE001 - what the caller would see
                    outcome.append(exc)

            writer = threading.Thread(target=finish)
            writer.start()
            victim = _blocked_backend(pg.url, time.monotonic() + 30)
            blocker.execute("SELECT pg_terminate_backend(%s)", (victim,))
        writer.join(60)
        assert outcome == ["done"], outcome
        run = journal.get_run(run_id)
        assert (run.status, run.output) == ("completed", 1)
    finally:
        journal.close()
