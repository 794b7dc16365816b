"""Opening the journal: file permissions, pragmas, migrations, and the fair write lock.

Why a lock file in front of SQLite's own lock: SQLite's busy handler sleeps with a growing
backoff, so with a few processes writing back to back one of them can wait seconds while
the others take the lock again and again (measured on this machine kind: one commit in
3 s). `flock` instead blocks in the kernel and wakes a waiter the moment the lock is free,
so a writer waits for the transactions ahead of it, not for a sleep to end. Every write
transaction is short, so the wait is short. `busy_timeout` stays set for other programs
that open the file (the sqlite3 shell, a backup).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sylphrun.errors import JournalError, NotAJournal
from sylphrun.journal.foreign import foreign_tables
from sylphrun.journal.schema import MIGRATIONS, SCHEMA_VERSION

DURABILITY = {
    # WAL + NORMAL: a commit survives a crash of any process; on power loss the last
    # commits since the last checkpoint-sync may be lost, never corrupted.
    "normal": "NORMAL",
    # WAL + FULL: every commit is fsynced to the WAL before it returns: survives power loss.
    "full": "FULL",
}

BUSY_TIMEOUT_MS = 10_000


def _busy_timeout_ms() -> int:
    """How long a write waits for a lock another program holds (the sqlite3 shell, a
    backup) before it gives up with a one-line error: $SYLPHRUN_BUSY_TIMEOUT seconds, else
    10 s. Our own processes queue on the flock instead and never reach it."""
    try:
        return max(0, int(float(os.environ["SYLPHRUN_BUSY_TIMEOUT"]) * 1000))
    except (KeyError, ValueError):
        return BUSY_TIMEOUT_MS


def _prepare_files(path: Path) -> None:
    """Create the journal's folder 0700 and file 0600 before SQLite does (it would use umask).

    SQLite creates `-wal` and `-shm` with the database file's mode, so they follow.
    """
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
    elif folder.name == ".sylphrun" and (folder.stat().st_mode & 0o777) != 0o700:
        # Ours (the default place): private on every open, not only on the first. Any other
        # folder the config names may be shared on purpose; we created it 0700 if we did.
        with suppress(PermissionError):
            os.chmod(folder, 0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)


def _make_private(path: Path) -> None:
    """The journal's files 0600 on every open, once the file is known to be a journal:
    another program's database named by mistake keeps its mode."""
    for suffix in ("", "-wal", "-shm", ".lock"):
        p = Path(str(path) + suffix)
        if p.exists() and (p.stat().st_mode & 0o777) != 0o600:
            with suppress(PermissionError):
                os.chmod(p, 0o600)


class Connection:
    """One SQLite connection plus the cross-process write lock.

    A `Connection` may be used from several threads of one process (a worker's loop and its
    step threads log through it); `_mutex` serializes them. Processes share nothing but the
    file.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, durability: str = "normal", create: bool = True
    ) -> None:
        self.path = Path(path)
        if durability not in DURABILITY:
            raise JournalError(
                f"durability must be one of {', '.join(DURABILITY)}, not {durability!r}"
            )
        self.durability = durability
        if not create and not self.path.exists():
            raise JournalError(
                f"no journal at {self.path}: start `sylphrun dev` or `sylphrun worker`, "
                "or trigger a run, to create it"
            )
        self._lock_fd = None
        lock_existed = os.path.exists(str(self.path) + ".lock")
        try:
            _prepare_files(self.path)
            self._lock_fd = os.open(str(self.path) + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            # A journal path through a file, a read-only folder, a full disk: the user's
            # to fix, so one line naming the path, not a traceback.
            raise JournalError(
                f"cannot create the journal at {self.path}: {exc.strerror}; "
                "check `journal` in the config and the folder's permissions"
            ) from None
        self._mutex = threading.RLock()
        self._identity = _identity(self.path)
        self.busy_timeout_ms = _busy_timeout_ms()
        try:
            self.db = sqlite3.connect(
                str(self.path),
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
            self._set_up()
        except NotAJournal:
            self.close()
            if not lock_existed:
                with suppress(OSError):
                    os.unlink(str(self.path) + ".lock")
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            raise _journal_error(self.path, exc) from None
        except BaseException:
            # A refused journal (newer schema, not WAL) must not leak the SQLite handle
            # and the lock fd: the CLI and the dashboard may retry in one long process.
            self.close()
            raise
        _make_private(self.path)

    def _set_up(self) -> None:
        """Pragmas and migrations; a brand-new journal's under the write lock.

        Several processes opening a new journal at once (`sylphrun dev` and a first
        `trigger`, a worker and the dashboard) race to switch it to WAL and create the
        tables: the losers got "database is locked" at once, busy handler or not (37 of
        100 trials of 4 processes). The first one to take the lock sets the file up; the
        others find it done. A journal in use has a non-empty file: no lock to open it.
        """
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:  # deleted between the connect and now (by hand, a test)
            raise JournalError(
                f"{self.path} was deleted while it was being opened; start again to use a "
                "new journal"
            ) from None
        if size > 0:
            _refuse_foreign_database(self.db, self.path)  # before WAL, tables, mode
            self._configure()
            self._migrate()
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._configure()
            self._migrate(locked=True)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _configure(self) -> None:
        db = self.db
        db.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise JournalError(f"could not put {self.path} in WAL mode (got {mode})")
        db.execute(f"PRAGMA synchronous = {DURABILITY[self.durability]}")
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("PRAGMA temp_store = MEMORY")

    def _migrate(self, *, locked: bool = False) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"{self.path} was written by a newer sylphrun (schema {version}, this one "
                f"knows {SCHEMA_VERSION}); upgrade sylphrun or use another journal"
            )
        if version == SCHEMA_VERSION:
            return
        if not locked:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            # Re-read under the lock: another process may have migrated meanwhile.
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, SCHEMA_VERSION):
                # executescript() commits first on Python < 3.12, so the script carries
                # its own transaction and the version bump goes inside it.
                self.db.executescript(
                    f"BEGIN IMMEDIATE;\n{MIGRATIONS[number]}\n"
                    f"PRAGMA user_version = {number + 1};\nCOMMIT;"
                )
        finally:
            if not locked:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextmanager
    def write(self, *, sync: bool = True) -> Iterator[sqlite3.Connection]:
        """A short write transaction under the fair lock: BEGIN IMMEDIATE ... COMMIT.

        IMMEDIATE takes SQLite's write lock at BEGIN, so a transaction never fails halfway
        with "database is locked" when it tries to upgrade a read lock. `sync=False` skips
        the fsync of durability "full" for this one commit: for a record whose loss on
        power cut is harmless because the next synced commit makes it durable too.
        """
        relax = not sync and self.durability == "full"
        with self._mutex:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # contended: the only path that pays for the notice
                self._wait_for_lock()
            try:
                if relax:
                    self.db.execute("PRAGMA synchronous = NORMAL")
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                    self.db.execute("COMMIT")
                finally:
                    # After a failed body or COMMIT. SQLite may have rolled back already
                    # (an I/O error, a corrupt page): ask, or ROLLBACK itself would raise
                    # and hide the real error.
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
            except sqlite3.DatabaseError as exc:
                # DatabaseError, not only OperationalError: a page corrupted after the
                # header passes the checks at open and shows up here as "malformed".
                raise _journal_error(self.path, exc) from None
            finally:
                if relax:
                    self.db.execute(f"PRAGMA synchronous = {DURABILITY[self.durability]}")
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def write_one(self, sql: str, params: tuple, *, sync: bool = True) -> int:
        """One statement as its own transaction, under the fair lock; returns its rowcount.

        For the hot writes (a step's start and result, a coalesced step event): a single
        statement is atomic on its own, so SQLite's autocommit spares the BEGIN and COMMIT
        round trips through Python, a sixth of a trivial step's cost. Its lock envelope
        repeats `write`'s on purpose: a shared context manager costs ~1 us per step.
        """
        relax = not sync and self.durability == "full"
        with self._mutex:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # contended: the only path that pays for the notice
                self._wait_for_lock()
            try:
                if relax:
                    self.db.execute("PRAGMA synchronous = NORMAL")
                return self.db.execute(sql, params).rowcount
            except sqlite3.DatabaseError as exc:
                raise _journal_error(self.path, exc) from None
            finally:
                if relax:
                    self.db.execute(f"PRAGMA synchronous = {DURABILITY[self.durability]}")
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _wait_for_lock(self) -> None:
        """Block on the write lock; after `lock_holder.NOTE_AFTER` seconds a thread says
        on stderr who holds it (a stopped script or CLI freezes every writer)."""
        from sylphrun.journal.lock_holder import waiters

        entry = waiters.add(self.path)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        finally:
            waiters.remove(entry)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several SELECTs (WAL readers never block writers)."""
        with self._mutex:
            try:
                self.db.execute("BEGIN")
                try:
                    yield self.db
                finally:
                    if self.db.in_transaction:
                        self.db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise _journal_error(self.path, exc) from None

    def data_version(self) -> int:
        """Changes when another connection commits: a cheap "anything new?" check."""
        with self._mutex:
            return self.db.execute("PRAGMA data_version").fetchone()[0]

    def file_replaced(self) -> bool:
        """Does the journal's path no longer name the file this connection has open (deleted,
        or replaced by another)? Writes then go to a file nobody else reads. A stat: cheap
        enough for a heartbeat, not for every step."""
        try:
            now = _identity(self.path)
        except OSError:  # unreadable for a moment (permissions): not evidence of a new file
            return False
        return now is None or now != self._identity

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
            self.db = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None  # type: ignore[assignment]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def write_lock_holder(path: str | os.PathLike[str]) -> int | None:
    """The pid of the process holding the journal's write lock now, or None (also where the
    kernel does not say: /proc/locks is Linux's). The supervisor uses it to find a worker
    frozen (SIGSTOP, a debugger) inside a write transaction: every other writer, including
    the ones that would release its runs, waits on it."""
    try:
        inode = os.stat(str(path) + ".lock").st_ino
        with open("/proc/locks") as f:
            table = f.read()
    except OSError:
        return None
    for line in table.splitlines():
        # "3: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; a waiter has "->" after "3:".
        parts = line.split()
        if (
            len(parts) >= 6
            and parts[1] == "FLOCK"
            and parts[3] == "WRITE"
            and parts[5].rsplit(":", 1)[-1] == str(inode)
        ):
            return int(parts[4])
    return None


def _refuse_foreign_database(db: sqlite3.Connection, path: Path) -> None:
    """Refuse an existing database that is not a journal, before anything changes it (its
    mode, WAL, tables): a read of its schema, on the connection about to be used."""
    tables = foreign_tables(db)
    if tables is not None:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise NotAJournal(
            f"{path} is an SQLite database of another program (tables: {shown}), not a "
            "sylphrun journal; left untouched: set `journal` in the config to another path"
        )


def _journal_error(path: Path, exc: sqlite3.Error) -> JournalError:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return JournalError(
            f"{path} is not a valid sylphrun journal ({text}); move it aside to start a new one"
        )
    if "locked" in text or "busy" in text:
        return JournalError(
            f"{path} is locked by another program for more than {_busy_timeout_ms() / 1000:g} s; "
            "close it (a sqlite3 shell, a backup) and try again"
        )
    if "readonly" in text or "unable to open" in text:
        return JournalError(f"cannot write {path} ({text}); check the file's permissions")
    return JournalError(f"journal error on {path}: {text}")
