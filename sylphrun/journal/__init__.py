"""The journal: one SQLite file, the only channel between processes, and all of its SQL.

`connection` opens it, `schema` migrates it, `store` writes (the one name for the write
modules `lifecycle`, `steps`, `user_actions` and `workers`), `queries` reads. Nothing
outside this package writes SQL, so a PostgreSQL journal can be added beside it later.

`interface.Journal` is what callers may ask of a journal, in domain terms (its reads alone:
`JournalReader`), and
`open_journal(target)` opens one (`sqlite_journal.SqliteJournal` today).
"""

from sylphrun.journal.connection import DURABILITY, Connection
from sylphrun.journal.interface import Journal, JournalReader
from sylphrun.journal.sqlite_journal import SqliteJournal, as_journal, open_journal
from sylphrun.journal.store import LeaseLost, RunSpec
from sylphrun.journal.urls import redact as redact_url

__all__ = [
    "DURABILITY",
    "Connection",
    "Journal",
    "JournalReader",
    "LeaseLost",
    "RunSpec",
    "SqliteJournal",
    "as_journal",
    "open_journal",
    "redact_url",
]
