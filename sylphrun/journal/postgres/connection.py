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
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool

from sylphrun.errors import JournalBusy, JournalError, JournalUnreachable
from sylphrun.journal.postgres import outage
from sylphrun.journal.urls import redact

T = TypeVar("T")

# How many times a transaction aborted by a deadlock or a serialization failure is run again.
RETRIES = 8
CONNECT_TIMEOUT = 10
# Connections per journal handle: the pool opens 1 and grows with concurrent use (a
# worker's step threads writing at once) up to `pool_max`, closing the extra ones after
# 10 idle minutes. A worker process has two handles (its runs, its heartbeat) and a
# LISTEN connection: 3 connections idle, `pool_max + 2` busy. So a machine running N
# workers holds about 3N idle and N x (pool_max + 2) at most, plus its supervisor's
# pool. The server's default `max_connections` is 100: 16 busy workers at the default
# of 4, 25 at `pool_max=2`, 10 at the 8 it was. A thread beyond the pool's connections
# waits its turn instead of failing. Measured (one worker, load ~11, medians of 3): runs
# of sequential steps do not care (50 runs x 20 steps: 9.2 s at 2, 10.4 s at 4, 12.6 s at
# 8, all noise); a burst of parallel sync steps does (10 runs x 100 gathered steps: 4.0 s
# at 4, 2.3 s at 8): a project made of those sets `?pool_max=8`. `?pool_max=N` in the
# journal URL sets it (as Prisma's `?connection_limit=`), taken out of the URL before
# libpq sees it (libpq refuses parameters it does not know).
POOL_MAX = 4
POOL_MAX_PARAM = "pool_max"
POOL_MAX_LIMIT = 100
TOO_MANY_CLIENTS = "53300"  # SQLSTATE too_many_connections


def split_pool_max(url: str) -> tuple[str, int]:
    """The URL without `pool_max`, and the pool's size it asks for (default `POOL_MAX`);
    a bad value is a one-line `JournalError`."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    asked = [v for k, v in query if k == POOL_MAX_PARAM]
    if not asked:
        return url, POOL_MAX
    value = asked[-1]
    if not value.isdigit() or not 1 <= int(value) <= POOL_MAX_LIMIT:
        raise JournalError(
            f"{POOL_MAX_PARAM}={value!r} in the journal URL is not a number of connections; "
            f"give a whole number from 1 to {POOL_MAX_LIMIT} (default {POOL_MAX})"
        )
    rest = urlencode([(k, v) for k, v in query if k != POOL_MAX_PARAM])
    return urlunsplit(parts._replace(query=rest)), int(value)


def too_many_clients(exc: BaseException) -> bool:
    """Did the server refuse the connection because its `max_connections` is reached?"""
    if getattr(exc, "sqlstate", None) == TOO_MANY_CLIENTS:
        return True
    text = str(exc)
    return "too many clients" in text or "remaining connection slots are reserved" in text


# How long a journal call waits for a connection (the server down: a restart) before it
# fails with a JournalError. The tests of an outage longer than that shorten it.
POOL_WAIT = float(os.environ.get("SYLPHRUN_TEST_PG_WAIT", "30"))


# SQLSTATEs of a connection the server ended or cannot give yet: class 08 (connection
# exception), 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now). A driver
# error with no SQLSTATE is the client's own (refused, reset, the pool's wait ran out).
# Other OperationalErrors (a statement timeout, a cancel) come from a working server.
_UNREACHABLE_STATES = ("57P01", "57P02", "57P03")


def unreachable(exc: BaseException) -> bool:
    """Is `exc` the server being out of reach, as opposed to it refusing something?"""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith("08") or state in _UNREACHABLE_STATES


def journal_error(location: str, exc: BaseException) -> JournalError:
    """One line for a driver error: what went wrong, and what to check."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if too_many_clients(exc):
        return JournalBusy(
            f"the PostgreSQL server of the journal at {location} refused a connection: too "
            "many clients (its max_connections is reached); stop some workers or other "
            f"clients, lower `{POOL_MAX_PARAM}` in the journal URL (each sylphrun process "
            f"holds up to {POOL_MAX_PARAM} + 2 connections, default {POOL_MAX}), or raise "
            "max_connections on the server"
        )
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
    if unreachable(exc):
        return JournalUnreachable(
            f"cannot reach the PostgreSQL journal at {location} ({text}); "
            "check the journal URL and that the server is up"
        )
    return JournalError(f"journal error on {location}: {text}")


class PgConnection:
    """A pool of connections to the journal at `url`; thread-safe."""

    def __init__(self, url: str) -> None:
        self.location = redact(url)
        self.url, self.pool_max = split_pool_max(url)  # `url` as libpq takes it
        self._closed = threading.Event()
        outage.install()
        self.pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=self.pool_max,
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
        except Exception as exc:  # PoolTimeout carries no server message: ask the server
            self.pool.close()
            self.connect_once().close()  # its refusal says why (too many clients...)
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
