"""Is an existing SQLite file a sylphrun journal at all? Asked before anything in it or
about the file changes: a path naming another program's database (a typo in `journal`)
is refused, never taken over."""

from __future__ import annotations

import sqlite3

CORE_TABLES = frozenset({"runs", "steps"})


def foreign_tables(db: sqlite3.Connection) -> list[str] | None:
    """The tables of a database that is not a sylphrun journal, or None if it is one (or
    is empty, ours to set up). Read-only: a path naming another program's database (a
    typo in `journal`) was taken over: 8 tables added, WAL mode on, mode 0600."""
    # One read transaction: another process may be creating the journal this instant, and
    # a version read before its V1 commit beside tables read after it looked foreign.
    db.execute("BEGIN")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = sorted(
            name
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        )
    finally:
        if db.in_transaction:  # an I/O error rolls it back already: keep that error
            db.execute("COMMIT")
    if not tables and version == 0:
        return None
    if version > 0 and CORE_TABLES.issubset(tables):
        return None
    return tables
