"""A worker's heartbeat: a thread of its own renews the leases of the runs the worker
executes, and reports runs lost meanwhile (cancelled, taken over), a replaced journal
file, and a dead supervisor, to the worker's event loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sylphrun.errors import JournalError
from sylphrun.runtime.waiting_open import open_journal_waiting

if TYPE_CHECKING:
    from sylphrun.runtime.worker import Worker

log = logging.getLogger("sylphrun.worker")


def renew_leases(worker: Worker, stop: threading.Event) -> None:
    """Renews leases from a thread of its own, so a user's step that blocks the event
    loop does not make this worker's runs look abandoned."""
    s = worker.settings
    journal = open_journal_waiting(s.config.journal, durability=s.config.durability)
    failing = False
    try:
        while not stop.wait(s.heartbeat_seconds):
            held = {rid: ex.epoch for rid, (ex, _) in dict(worker.active).items()}
            try:
                lost = journal.heartbeat(
                    worker.id, held, lease_seconds=s.lease_seconds, now=time.time()
                )
                if failing:
                    log.warning("heartbeat: the journal is writable again")
                failing = False
            except JournalError as exc:  # a full or failing disk: once, not every beat
                if not failing:
                    log.error(
                        "heartbeat failed (retrying every %g s): %s", s.heartbeat_seconds, exc
                    )
                failing, lost = True, []
            except Exception:
                log.exception("heartbeat failed")
                lost = []
            if lost:
                worker.loop.call_soon_threadsafe(
                    worker._drop_lost, [(rid, held[rid]) for rid in lost]
                )
            if journal.replaced():
                worker.loop.call_soon_threadsafe(worker._journal_gone)
                return
            if s.supervisor_pid and os.getppid() != s.supervisor_pid:
                # Our supervisor died (kill -9): stop, handing our runs back.
                worker.loop.call_soon_threadsafe(worker.stop)
    finally:
        journal.close()


@contextmanager
def journal_errors_logged(what: str) -> Iterator[None]:
    """A worker's last writes (leaving): a journal that fails (a server down past the
    wait) is one line, not a traceback out of the worker process. What they would have
    written, the supervisor's sweeps and the leases do instead."""
    try:
        yield
    except JournalError as exc:
        log.error("%s failed: %s", what, exc)
