"""Shared setup for the PostgreSQL benchmarks (issue 17): one throwaway cluster with a
benchmark's settings, journal databases on it, and bench projects whose journal is a file
or a `postgresql://` URL, measured through the `Journal` interface (so the same timing code
serves both backends).

The cluster is `tests/pg_cluster.py`'s (initdb in a temp folder, a free local port, run by
the `postgres` user under root) with the durability the tests turn off turned back on:
`fsync = on`, `full_page_writes = on`, autovacuum on. Commit durability is set per
database (`ALTER DATABASE ... SET synchronous_commit`), so one server holds both settings:

- `off`: a commit returns before its WAL is flushed (the WAL writer flushes it within
  3 x wal_writer_delay, 0.6 s): a server crash may lose the last commits, never corrupts.
  The like-for-like setting for sylphrun's SQLite `normal` (WAL, synchronous=NORMAL: no
  fsync per commit).
- `on` (PostgreSQL's default): a commit waits for its WAL fsync, like SQLite `full`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import BenchProject

from sylphrun.journal import Journal, open_journal

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import pg_cluster  # noqa: E402

SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "200",
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "128MB",
    # Statement counts per database (`statement_stats`): a few % of overhead, on every row.
    "shared_preload_libraries": "'pg_stat_statements'",
}
PG_DURABILITY = {
    "off": "synchronous_commit=off (WAL flushed in the background)",
    "on": "synchronous_commit=on (PostgreSQL default: fsync per commit)",
}


class BenchCluster(pg_cluster.Cluster):
    """The tests' throwaway cluster with durable settings (see the module docstring)."""

    def _configure(self) -> None:
        with open(self.data / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in SETTINGS.items())
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        )

    def server_version(self) -> str:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as db:
            return db.execute("SHOW server_version").fetchone()[0]

    def statement_stats(self, database: str) -> tuple[int, float]:
        """(statements the clients sent, ms of server execution) in `database` so far,
        BEGIN and COMMIT included: each is a round trip unless pipelined. Left out: the
        feed numbering the schema's deferred trigger runs at COMMIT (pg_stat_statements
        sees it as a statement of its own; it is no round trip) and the harness's
        `status_counts` polling."""
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            calls, ms = db.execute(
                "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0)"
                " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                " WHERE d.datname = %s AND s.query NOT LIKE %s AND s.query NOT LIKE %s",
                (database, "%sylphrun_number_feed%", "SELECT status, COUNT(*) FROM runs%"),
            ).fetchone()
        return int(calls), float(ms)

    def database(self, name: str, synchronous_commit: str) -> str:
        """A new empty database `name` with its commit durability; its URL."""
        self._admin(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY file_copy")
        self._admin(f"ALTER DATABASE {name} SET synchronous_commit = {synchronous_commit}")
        return self.url(name)

    def journal(self, name: str, synchronous_commit: str) -> str:
        """A new database migrated to sylphrun's current schema; its URL."""
        url = self.database(name, synchronous_commit)
        open_journal(url).close()
        return url


def start_cluster() -> BenchCluster:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise SystemExit("psycopg is missing: pip install -e '.[dev]'") from None
    try:
        return BenchCluster()
    except (RuntimeError, OSError) as exc:
        raise SystemExit(f"no PostgreSQL server: {exc}") from None


class JournalProject(BenchProject):
    """A bench project whose journal is its default file, or the PostgreSQL URL given."""

    def __init__(
        self,
        name: str,
        durability: str,
        tasks_source: str,
        *,
        url: str | None = None,
        workers: int = 2,
    ) -> None:
        extra = f'journal = "{url}"\n' if url else ""
        super().__init__(name, durability, tasks_source, workers=workers, extra_config=extra)

    def connection(self) -> Journal:  # the engine's handle: a Journal, either backend
        return open_journal(self.config.journal, durability=self.durability)


def raw_pg_commits(url: str, n: int = 200, warm: int = 20) -> list[float]:
    """Per-commit seconds of one `INSERT` in autocommit (one round trip, one commit) over
    psycopg on TCP: the floor under a journal write, as `steps100.raw_commits` is SQLite's."""
    import time

    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE IF NOT EXISTS raw (id bigserial PRIMARY KEY, run_id text, v text)")
        out = []
        for i in range(warm + n):
            t0 = time.perf_counter()
            db.execute("INSERT INTO raw (run_id, v) VALUES (%s, %s)", ("r", '{"i": 1}'))
            if i >= warm:
                out.append(time.perf_counter() - t0)
        return out


def xact_commits(url: str) -> int:
    """Transactions committed in this URL's database so far (pg_stat_database; the
    counters lag up to a second behind)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        return db.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()[0]


def journal_step_writes(target: str, n: int = 200, warm: int = 20) -> list[float]:
    """Per-step seconds of the two writes a step makes (`record_step_start`, then
    `record_step_result`, without event rows as in a burst of steps), called on the
    `Journal` of `target` (a file or a URL) for a claimed run, no worker: the journal
    layer's share of a step, on either backend."""
    import time

    from steps100 import no_limits

    from sylphrun.journal import RunSpec

    journal = open_journal(target)
    try:
        journal.enqueue_runs([RunSpec("chain", "{}")], time.time())
        claims, _ = journal.claim_runs(
            "bench", 1, lease_seconds=600, known_tasks={"chain": no_limits()}, now=time.time()
        )
        run_id, epoch = claims[0].run_id, claims[0].epoch
        out = []
        for i in range(n + warm):
            t0 = time.perf_counter()
            journal.record_step_start(
                run_id,
                epoch,
                key=f"k{i}",
                name=f"k{i}",
                kind="step",
                seq=i + 1,
                run_attempt=1,
                now=time.time(),
                notify=False,
            )
            journal.record_step_result(
                run_id, epoch, key=f"k{i}", output=str(i), now=time.time(), notify=False
            )
            if i >= warm:
                out.append(time.perf_counter() - t0)
        return out
    finally:
        journal.close()
