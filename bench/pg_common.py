"""Shared setup for the PostgreSQL benchmarks (issue 17): one throwaway cluster with a
benchmark's settings, journal databases on it, and bench projects whose journal is a file
or a `postgresql://` URL, measured through the `Journal` interface (so the same timing code
serves both backends).

The cluster is `tests/pg_cluster.py`'s (initdb in a temp folder, a free local port, run by
the `postgres` user under root) with the durability the tests turn off turned back on:
`fsync = on`, `full_page_writes = on`, autovacuum on. Commit durability is set per
database (`ALTER DATABASE ... SET synchronous_commit`), so one server holds both settings:

- `off`: a commit returns before its WAL is flushed (the WAL writer flushes it within
  ~200 ms): a server crash may lose the last commits, never corrupts. The like-for-like
  setting for sylphrun's SQLite `normal` (WAL, synchronous=NORMAL: no fsync per commit).
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
