"""Wake-ups on PostgreSQL: `LISTEN sylphrun_work`, for workers on any host.

The journal NOTIFYs in the transaction that makes a run claimable (`schema`'s
`runs_work_ready`), so a wake-up arrives only once the run can be seen, and reaches every
listening worker whatever machine it is on: no socket addresses to exchange, as SQLite's
workers do with datagrams (`runtime.wake`). Best effort all the same: a lost connection
loses notifications, so workers keep a slow timed poll as the fallback.

`fileno()` lets a worker's loop wait on it beside other descriptors; `wait(timeout)`
blocks. One dedicated connection each (a pooled one would be handed to other work).
"""

from __future__ import annotations

import psycopg

from sylphrun.journal.postgres.connection import CONNECT_TIMEOUT, journal_error
from sylphrun.journal.urls import redact

CHANNEL = "sylphrun_work"


class WorkListener:
    """A connection listening for "a run became claimable" on one journal."""

    def __init__(self, url: str) -> None:
        self.location = redact(url)
        try:
            self.conn = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
                application_name="sylphrun-listen",
            )
            self.conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            raise journal_error(self.location, exc) from None

    def fileno(self) -> int:
        return self.conn.fileno()

    def wait(self, timeout: float) -> bool:
        """Whether work was announced within `timeout` seconds (all pending notices are
        consumed: one wake-up however many arrived)."""
        try:
            got = any(True for _ in self.conn.notifies(timeout=timeout, stop_after=1))
            if got:
                for _ in self.conn.notifies(timeout=0):
                    pass
            return got
        except psycopg.Error as exc:
            raise journal_error(self.location, exc) from None

    def close(self) -> None:
        self.conn.close()
