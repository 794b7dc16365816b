"""The journal suite: every backend runs the same tests, in process, through `Journal` only.

`BACKENDS` is the one place a backend is added: a harness class that opens a fresh journal
of its kind, opens a second handle on the same journal (another process's view), and
builds a journal at an older schema for the migration tests. Time is always injected
(`now=`): no test sleeps or reads the clock.

The PostgreSQL backend runs on a throwaway cluster the session starts on first use
(`tests/pg_cluster.py`), one empty database per test. Where no server can be had, its
tests are skipped with the reason (repeated at the end of the run); under CI they fail.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pg_cluster
import pytest

from journal.helpers import LEASE, terms
from sylphrun.journal import Journal, RunSpec, open_journal
from sylphrun.journal.types import Claim


class SqliteBackend:
    """A journal file in a temp folder."""

    name = "sqlite"

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "journal.db"

    @property
    def latest_version(self) -> int:
        from sylphrun.journal.schema import SCHEMA_VERSION

        return SCHEMA_VERSION

    def open(self) -> Journal:
        return open_journal(self.path)

    def build_at_version(
        self, version: int, *, run_id: str, task_id: str, payload: str, step_output: str
    ) -> None:
        """A journal written by an older (or newer) sylphrun: the schema at `version`, one
        queued run with one completed step, as that version would have stored them."""
        from sylphrun.journal.schema import MIGRATIONS

        raw = sqlite3.connect(self.path, isolation_level=None)
        raw.execute("PRAGMA journal_mode = WAL")
        scripts = "\n".join(MIGRATIONS[: min(version, len(MIGRATIONS))])
        raw.executescript(f"BEGIN;\n{scripts}\nPRAGMA user_version = {version};\nCOMMIT;")
        raw.execute(
            "INSERT INTO runs (id, task_id, status, payload, created_at, updated_at,"
            " ready_at) VALUES (?, ?, 'queued', ?, 1, 1, 1)",
            (run_id, task_id, payload),
        )
        raw.execute(
            "INSERT INTO steps (run_id, key, name, kind, status, seq, run_attempt, output)"
            " VALUES (?, 'a', 'a', 'step', 'completed', 1, 1, ?)",
            (run_id, step_output),
        )
        raw.close()

    @classmethod
    def create(cls, request: pytest.FixtureRequest, tmp_path: Path) -> SqliteBackend:
        return cls(tmp_path)

    def cleanup(self) -> None:
        pass


class PostgresBackend:
    """An empty database of the session's cluster."""

    name = "postgres"

    def __init__(self, cluster: pg_cluster.Cluster) -> None:
        self.cluster = cluster
        self.database = cluster.journal_database(open_journal)
        self.url = cluster.url(self.database)
        self.rebuilt = False

    @classmethod
    def create(cls, request: pytest.FixtureRequest, tmp_path: Path) -> PostgresBackend:
        return cls(request.getfixturevalue("postgres_cluster"))

    def cleanup(self) -> None:
        self.cluster.give_back(self.database, rebuilt=self.rebuilt)

    @property
    def latest_version(self) -> int:
        from sylphrun.journal.postgres.schema import SCHEMA_VERSION

        return SCHEMA_VERSION

    def open(self) -> Journal:
        return open_journal(self.url)

    def build_at_version(
        self, version: int, *, run_id: str, task_id: str, payload: str, step_output: str
    ) -> None:
        """As `SqliteBackend.build_at_version`, in PostgreSQL's schema at `version`."""
        import psycopg

        from sylphrun.journal.postgres.schema import MIGRATIONS, VERSION_TABLE

        self.rebuilt = True
        with psycopg.connect(self.url) as db, db.transaction():
            db.execute("DROP SCHEMA public CASCADE")
            db.execute("CREATE SCHEMA public")
            for script in MIGRATIONS[: min(version, len(MIGRATIONS))]:
                db.execute(script)
            db.execute(VERSION_TABLE)
            db.execute("INSERT INTO sylphrun_schema VALUES (%s)", (version,))
            db.execute(
                "INSERT INTO runs (id, task_id, status, payload, created_at, updated_at,"
                " ready_at) VALUES (%s, %s, 'queued', %s, 1, 1, 1)",
                (run_id, task_id, payload),
            )
            db.execute(
                "INSERT INTO steps (run_id, key, name, kind, status, seq, run_attempt,"
                " output) VALUES (%s, 'a', 'a', 'step', 'completed', 1, 1, %s)",
                (run_id, step_output),
            )


BACKENDS = {"sqlite": SqliteBackend, "postgres": PostgresBackend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path):
    made = BACKENDS[request.param].create(request, tmp_path)
    yield made
    made.cleanup()


@pytest.fixture
def journal(backend) -> Iterator[Journal]:
    j = backend.open()
    yield j
    j.close()


@pytest.fixture
def claimed(journal: Journal):
    """A function: enqueue one run at `now` and claim it for `worker`; returns its Claim."""

    def make(
        task_id: str = "t",
        payload: str = "{}",
        *,
        now: float = 10.0,
        worker: str = "w1",
        key: str | None = None,
    ) -> Claim:
        [(run_id, _)] = journal.enqueue_runs([RunSpec(task_id, payload, key)], now)
        claims, _ = journal.claim_runs(
            worker, 100, lease_seconds=LEASE, known_tasks=terms(task_id), now=now
        )
        [claim] = [c for c in claims if c.run_id == run_id]
        return claim

    return make
