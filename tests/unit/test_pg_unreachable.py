"""Which PostgreSQL driver errors mean "the server is out of reach" (a release, no crash
counted) and which come from a working server (counted, so a run whose own data the server
refuses cannot loop through the workers for ever)."""

from __future__ import annotations

import pytest

psycopg = pytest.importorskip("psycopg")

from psycopg import errors as pg_errors  # noqa: E402

from sylphrun.errors import JournalUnreachable  # noqa: E402
from sylphrun.journal.postgres.connection import journal_error, unreachable  # noqa: E402


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("connection refused"),  # the client's own: no SQLSTATE
        pg_errors.AdminShutdown("terminating connection due to administrator command"),
        pg_errors.CrashShutdown("terminating connection because of crash of another process"),
        pg_errors.CannotConnectNow("the database system is starting up"),
        pg_errors.ConnectionFailure("connection failure"),
    ],
)
def test_a_server_out_of_reach_is_unreachable(exc: Exception) -> None:
    assert unreachable(exc)
    assert isinstance(journal_error("pg://x", exc), JournalUnreachable)


@pytest.mark.parametrize(
    "exc",
    [
        pg_errors.QueryCanceled("canceling statement due to statement timeout"),
        pg_errors.LockNotAvailable("could not obtain lock"),
        pg_errors.UntranslatableCharacter("unsupported Unicode escape sequence"),
        ValueError("not a driver error"),
    ],
)
def test_a_working_server_refusing_something_is_not(exc: Exception) -> None:
    assert not unreachable(exc)
    assert not isinstance(journal_error("pg://x", exc), JournalUnreachable)
