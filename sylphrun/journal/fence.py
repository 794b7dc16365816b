"""The lease fence: a write for a run checks, in its own transaction, that it still owns it.

A worker's writes for a run it executes carry the lease epoch it claimed the run with.
Claiming, cancelling, requeueing and finishing a run bump the epoch, so a worker that was
paused past its lease (SIGSTOP, a long GC, a suspended laptop) fails the check and cannot
overwrite the work of the worker that took the run over.

Every fenced write in the journal goes through `check` or `OWNED`: the fence is written
once, here.
"""

from __future__ import annotations

import sqlite3

from sylphrun import model


class LeaseLost(BaseException):
    """The run is no longer this worker's: it was cancelled, or another worker claimed it.

    A BaseException so that a user's `except Exception` around `step.run` cannot swallow
    it and carry on writing as if it still owned the run.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


# The fence as a condition inside a write, for the two writes every step makes: one
# statement instead of a SELECT and a write. Parameters: run id, lease epoch.
OWNED = "EXISTS (SELECT 1 FROM runs WHERE id = ? AND lease_epoch = ? AND status = 'running')"


def check(db: sqlite3.Connection, run_id: str, epoch: int) -> None:
    """Raise LeaseLost unless the run is running under this lease epoch."""
    row = db.execute("SELECT lease_epoch, status FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None or row[0] != epoch or row[1] != model.RUNNING:
        raise LeaseLost(run_id)
