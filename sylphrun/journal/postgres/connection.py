"""A pool of connections to one PostgreSQL journal, and its transactions.

`write(fn)` runs `fn(cursor)` in one transaction and retries it when PostgreSQL aborts it
for a deadlock or a serialization failure (two writers locking runs in opposite orders: a
cancel walking a tree down while a child finishes up into its parent): `fn` must be safe
to run again, which every operation is (it only talks to the database). At the commit
the schema's deferred triggers number the transaction's feed rows: event and log ids
become visible in commit order, as the interface requires (see `schema`).

Every driver error becomes a one-line `JournalError`; no psycopg type leaves this package.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from sylphrun.errors import JournalError
from sylphrun.journal.postgres import outage
from sylphrun.journal.urls import redact

T = TypeVar("T")

# How many times a transaction aborted by a deadlock or a serialization failure is run again.
RETRIES = 8
CONNECT_TIMEOUT = 10
POOL_SIZE = 8
# How long a journal call waits for a connection (the server down: a restart) before it
# fails with a JournalError. The tests of an outage longer than that shorten it.
POOL_WAIT = float(os.environ.get("SYLPHRUN_TEST_PG_WAIT", "30"))


def journal_error(location: str, exc: BaseException) -> JournalError:
    """One line for a driver error: what went wrong, and what to check."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "password" in text or "authentication" in text:
        return JournalError(
            f"the PostgreSQL journal at {location} refused the login ({text}); "
            "check the user and password in the journal URL"
        )
    if "does not exist" in text and "database" in text:
        return JournalError(
            f"the database of the PostgreSQL journal at {location} does not "
            f"exist ({text}); create it (`createdb`) or fix the journal URL"
        )
    if isinstance(exc, psycopg.OperationalError):
        return JournalError(
            f"cannot reach the PostgreSQL journal at {location} ({text}); "
            "check the journal URL and that the server is up"
        )
    return JournalError(f"journal error on {location}: {text}")


class PgConnection:
    """A pool of connections to the journal at `url`; thread-safe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = redact(url)
        self._closed = threading.Event()
        outage.install()
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            # Named, and each connection seen: `outage` says a lost server in one line.
            name=outage.pool_name(self.location),
            configure=outage.configure(self.location),
            timeout=POOL_WAIT,
            # Autocommit: a single statement (the hot step writes, most reads) is one round
            # trip; `transaction()` wraps the rest in BEGIN ... COMMIT.
            kwargs={
                "connect_timeout": CONNECT_TIMEOUT,
                "application_name": "sylphrun",
                "autocommit": True,
            },
        )

    def connect_once(self) -> psycopg.Connection:
        """A connection outside the pool (opening, migrations): errors as `JournalError`."""
        try:
            return psycopg.connect(
                self.url, connect_timeout=CONNECT_TIMEOUT, application_name="sylphrun"
            )
        except psycopg.Error as exc:
            raise journal_error(self.location, exc) from None

    def open_pool(self) -> None:
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT + 5)
        except Exception as exc:  # PoolTimeout carries no server message: say what to check
            raise journal_error(self.location, exc) from None

    def write(self, fn: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """`fn(cursor)` in one transaction, retried on deadlock, and on a connection the
        server dropped before the COMMIT was sent (a restart, a terminated backend): that
        transaction was not committed, so it runs again on a fresh connection (the pool
        waits for the server). A connection lost during the COMMIT is not retried: it may
        have committed."""
        for attempt in range(RETRIES):
            last = attempt == RETRIES - 1
            conn, committing = None, False
            try:
                with self.pool.connection() as conn, ExitStack() as stack:
                    if not _began(conn, stack, last=last):
                        self._drop_dead_connections()
                        continue  # a connection the server dropped (a restart): another
                    result = fn(stack.enter_context(conn.cursor()))
                    committing = True
                return result
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if last:
                    raise JournalError(
                        f"journal error on {self.location}: a write kept "
                        "deadlocking with others; try again"
                    ) from None
            except psycopg.OperationalError as exc:
                if last or committing or conn is None or not conn.broken:
                    raise journal_error(self.location, exc) from None
                self._drop_dead_connections()
            except psycopg.Error as exc:
                raise journal_error(self.location, exc) from None
        raise AssertionError("unreachable")

    def _drop_dead_connections(self) -> None:
        """After one dropped connection, the pool's idle ones are likely dead too (a
        restart drops them all): checked now, so the retry gets a live or new one rather
        than failing on each in turn."""
        try:
            self.pool.check()
        except psycopg.Error:
            pass  # the retry's own connection attempt says what is wrong

    def write_one(self, sql: str, params: tuple) -> int:
        """One statement, atomic on its own, with no feed row: its rowcount. The two writes
        every step makes, in one round trip instead of three (BEGIN, it, COMMIT).

        On a connection the server had dropped (a restart), sent again once on another:
        the dropped connection's backend is gone, so the statement did not run there. (A
        step's result written twice is the same result; a start counts one more try.)"""
        for attempt in range(2):
            try:
                with self.pool.connection() as conn, conn.cursor() as cur:
                    try:
                        cur.execute(sql, params)
                    except psycopg.OperationalError:
                        if conn.broken and attempt == 0:
                            self._drop_dead_connections()
                            continue
                        raise
                    return cur.rowcount
            except psycopg.Error as exc:
                raise journal_error(self.location, exc) from None
        raise AssertionError("unreachable")

    def read(self, fn: Callable[[psycopg.Cursor[Any]], T], *, snapshot: bool = False) -> T:
        """`fn(cursor)` in one transaction; `snapshot`: one snapshot for all its SELECTs
        (REPEATABLE READ; a round trip more, so only for reads of several statements).
        Read again on another connection if the server had dropped this one."""
        for attempt in range(RETRIES):
            try:
                with self.pool.connection() as conn:
                    try:
                        return _read(conn, fn, snapshot)
                    except psycopg.OperationalError:
                        if conn.broken and attempt < RETRIES - 1:
                            self._drop_dead_connections()
                            continue
                        raise
            except psycopg.Error as exc:
                raise journal_error(self.location, exc) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.pool.close()


def _began(conn: psycopg.Connection, stack: ExitStack, *, last: bool) -> bool:
    """BEGIN on a pooled connection; False if the server had dropped it (nothing was done
    on it: the caller takes another)."""
    try:
        stack.enter_context(conn.transaction())
    except psycopg.OperationalError:
        if conn.broken and not last:
            return False
        raise
    return True


def _read(conn: psycopg.Connection, fn: Callable[[psycopg.Cursor[Any]], T], snapshot: bool) -> T:
    if not snapshot:
        with conn.cursor() as cur:
            return fn(cur)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return fn(cur)
