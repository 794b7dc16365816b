"""Opening a PostgreSQL journal: connect, refuse what is not ours, migrate forward, pool."""

from __future__ import annotations

from typing import Any

from sylphrun.errors import JournalError, NotAJournal
from sylphrun.journal.postgres import schema
from sylphrun.journal.postgres.connection import PgConnection, journal_error
from sylphrun.journal.postgres.journal import PostgresJournal


def open_postgres(url: str, *, create: bool = True) -> PostgresJournal:
    """The journal in the database at `url`, migrated forward (created when empty, unless
    `create=False`). Unreachable, refused, newer or foreign: a one-line `JournalError`."""
    pg = PgConnection(url)
    _migrate(pg, create=create)
    pg.open_pool()
    return PostgresJournal(pg)


def _migrate(pg: PgConnection, *, create: bool) -> None:
    with pg.connect_once() as db:
        try:
            with db.transaction(), db.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (schema.MIGRATION_LOCK,))
                version = schema.current_version(cur)
                if version is None:
                    _refuse_unless_empty(cur, pg.location, create=create)
                    cur.execute(schema.VERSION_TABLE)
                    cur.execute("INSERT INTO sylphrun_schema VALUES (0)")
                    version = 0
                if version > schema.SCHEMA_VERSION:
                    raise JournalError(
                        f"{pg.location} was written by a newer sylphrun (schema {version}, this "
                        f"one knows {schema.SCHEMA_VERSION}); upgrade sylphrun or use another "
                        "journal"
                    )
                for number in range(version, schema.SCHEMA_VERSION):
                    cur.execute(schema.MIGRATIONS[number])
                    cur.execute("UPDATE sylphrun_schema SET version = %s", (number + 1,))
        except JournalError:
            raise
        except Exception as exc:
            raise journal_error(pg.location, exc) from None


def _refuse_unless_empty(cur: Any, location: str, *, create: bool) -> None:
    tables = _foreign_tables(cur)
    if tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise NotAJournal(
            f"{location} holds tables of another program ({shown}), not a sylphrun journal; "
            "left untouched: point `journal` at an empty database"
        )
    if not create:
        raise JournalError(
            f"no journal at {location}: start `sylphrun dev` or `sylphrun "
            "worker`, or trigger a run, to create it"
        )


def _foreign_tables(cur: Any) -> list[str]:
    """The tables of the connection's current schema, when it holds no journal."""
    cur.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
    )
    return [r[0] for r in cur.fetchall()]
