"""A throwaway PostgreSQL cluster for the tests: initdb in a temp folder, a free local port,
one empty database per test, stopped at the end of the session.

The server is Debian's `postgresql` package (`.ci/run` installs it when missing): a real,
supported server build of the major version a team runs in production, not one bundled in
a wheel. initdb refuses to run as root, so under root (CI, this machine) the cluster is
owned and run by the unprivileged `postgres` user the package creates.

Where no server can be had (no binaries, no psycopg) the Postgres-parametrized tests are
skipped with the reason; under CI (`CI` or `SYLPHRUN_REQUIRE_POSTGRES=1`) they fail.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The real process spawner, taken when the test session imports this module: the fast
# layer's guard (tests/conftest.py) refuses processes inside a test, and the cluster is
# started by the first test that needs it. It is the session's server, not the test's.
_SPAWN = subprocess.Popen._execute_child

# Durability off: a test cluster is thrown away; autovacuum off so nothing but the tests
# writes (the change token counts every commit in the cluster).
SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "autovacuum": "off",
    "max_connections": "200",
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "64MB",
    # The race tests make deadlocks on purpose: found in 50 ms, not the default second.
    "deadlock_timeout": "'50ms'",
}
SUPERUSER = "sylphrun"
# A role that must give its password (the bad-password test); everyone else is trusted.
PASSWORD_ROLE, PASSWORD = "sylphrun_pw", "right-password"


EMPTY_JOURNAL = """
DO $$ DECLARE t text; BEGIN
    FOR t IN SELECT tablename FROM pg_tables
             WHERE schemaname = current_schema() AND tablename <> 'sylphrun_schema' LOOP
        EXECUTE format('DELETE FROM %I', t);
    END LOOP;
END $$;
SELECT setval('event_ids', 1, false), setval('log_ids', 1, false);
"""


def required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("SYLPHRUN_REQUIRE_POSTGRES") == "1"


def server_bin() -> Path | None:
    """The folder of `initdb`/`pg_ctl`: Debian's newest major, else the PATH's."""
    majors = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name)
    )
    if majors:
        return Path(majors[-1]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One running cluster; `new_database()` hands out empty databases by URL."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        # `settings`: postgresql.conf values over `SETTINGS` (a low max_connections...).
        self.settings = {**SETTINGS, **(settings or {})}
        self.bin = server_bin()
        if self.bin is None:
            raise RuntimeError(
                "PostgreSQL server binaries not found (initdb): "
                "`apt-get install postgresql` provides them"
            )
        self.root = Path(tempfile.mkdtemp(prefix="sylphrun-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._user = "postgres" if os.geteuid() == 0 else None
        self._names = itertools.count(1)
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        self._configure()
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -k {self.root}",
            "start",
        )
        # Stopped by the session fixture; also at exit, should the session end another way
        # (an internal error, a KeyboardInterrupt before the fixture's teardown).
        atexit.register(self.stop)
        self.admin_url = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
        self._admin(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self._user:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        with _real_processes():
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr.strip() or done.stdout.strip()}")

    def _configure(self) -> None:
        with open(self.data / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in self.settings.items())
        (self.data / "pg_hba.conf").write_text(
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
        )

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as db:
            db.execute(sql)

    def url(self, database: str, *, user: str = SUPERUSER, password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """An empty database (created from template0 by copying files: ~10 ms)."""
        name = f"t{next(self._names)}"
        self._admin(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY file_copy")
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    # A journal database per test costs ~0.5 s on a loaded 2-core machine (CREATE DATABASE
    # checkpoints, then the migrations' DDL); emptying the last test's costs ~10 ms. So a
    # test gets the previous test's journal back, emptied (or, if it rebuilt the schema, the
    # schema dropped and migrated again: still no CREATE DATABASE).

    def journal_database(self, open_journal) -> str:
        """An empty journal database at the current schema (`open_journal(url)` makes one)."""
        name, self._spare = getattr(self, "_spare", None), None
        if name is None:
            name = self.new_database()
            open_journal(self.url(name)).close()
        elif getattr(self, "_spare_unmigrated", False):
            open_journal(self.url(name)).close()
        self._spare_unmigrated = False
        return name

    def give_back(self, name: str, *, rebuilt: bool) -> None:
        """Done with a journal database: emptied for the next test (its schema dropped if
        the test rebuilt it)."""
        import psycopg

        with psycopg.connect(self.url(name), autocommit=True) as db:
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            db.execute(
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public" if rebuilt else EMPTY_JOURNAL
            )
        self._spare, self._spare_unmigrated = name, rebuilt

    def restart(self) -> None:
        """Stop (fast: connections dropped) and start again on the same port."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "-m",
            "fast",
            "-o",
            f"-p {self.port} -k {self.root}",
            "restart",
        )

    def stop(self) -> None:
        if not self.data.exists():
            return  # stopped already
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def _real_processes() -> Iterator[None]:
    guarded = subprocess.Popen._execute_child
    subprocess.Popen._execute_child = _SPAWN
    try:
        yield
    finally:
        subprocess.Popen._execute_child = guarded


def start_or_reason(settings: dict[str, str] | None = None) -> Cluster | str:
    """A running cluster (with these `settings` over `SETTINGS`), or why there is none (a
    skip reason)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]' brings it)"
    try:
        return Cluster(settings)
    except (RuntimeError, OSError, subprocess.SubprocessError, KeyError) as exc:
        return f"no PostgreSQL server for the tests: {exc}"


# -- a server outage: stop now, start later (the PostgreSQL-restart torture) -------------


def stop_server(cluster: Cluster, mode: str = "fast") -> None:
    """Stop the server, keeping its data, until `start_server`: `fast` (connections
    dropped, a clean shutdown) or `immediate` (a crash: recovery replays the WAL at the
    next start)."""
    if mode not in ("fast", "immediate"):
        raise ValueError(f"pg_ctl stop mode {mode!r}: fast or immediate")
    cluster._run("pg_ctl", "-D", str(cluster.data), "-m", mode, "-w", "-t", "60", "stop")


def start_server(cluster: Cluster) -> None:
    """Start a server `stop_server` stopped, on the same port."""
    cluster._run(
        "pg_ctl",
        "-D",
        str(cluster.data),
        "-l",
        str(cluster.root / "log"),
        "-w",
        "-t",
        "60",
        "-o",
        f"-p {cluster.port} -k {cluster.root}",
        "start",
    )


class CrashSafeCluster(Cluster):
    """A cluster whose acknowledged commits survive a server crash (`stop_server(...,
    "immediate")`): `synchronous_commit` on. The session's cluster has it off (speed),
    which loses the last ~200 ms of commits in a crash: a journal that lost writes it
    was told were done, the server's doing, not the journal's. (`fsync` stays off: a
    server crash is not a machine crash; the OS keeps what was written.)"""

    def _configure(self) -> None:
        super()._configure()
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("synchronous_commit = on\n")


def crash_safe_or_reason() -> Cluster | str:
    """A running `CrashSafeCluster` of its own, or why there is none (a skip reason)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]' brings it)"
    try:
        return CrashSafeCluster()
    except (RuntimeError, OSError, subprocess.SubprocessError, KeyError) as exc:
        return f"no PostgreSQL server for the tests: {exc}"
