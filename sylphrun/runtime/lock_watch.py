"""The supervisor's watch on the journal's write lock: a worker frozen inside a write
transaction (SIGSTOP, a debugger) blocks every other writer, which a lease cannot fix."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from sylphrun.runtime.process_table import stopped

if TYPE_CHECKING:
    from sylphrun.runtime.supervisor import Supervisor


def watch_write_lock(sup: Supervisor, stop: threading.Event) -> None:
    """Replace a worker frozen inside a write transaction (SIGSTOP, a debugger).

    It holds the journal's write lock, so every other writer waits on it: the workers
    that would take its runs over when its lease expires, and this supervisor's own
    releases. Leases cannot help there, so a thread of its own (it never waits on the
    journal) kills it once it has held the lock for a heartbeat while stopped, or for
    a whole lease period whatever its state: no write transaction lasts that long.
    Both of its reads (`write_lock_holder`, `write_progress`) are answered without
    waiting on the journal, which may be held up by that very lock.
    """
    journal = sup.journal
    beat, lease = sup.template.heartbeat_seconds, sup.template.lease_seconds
    holder, since, progress = None, 0.0, None
    while not stop.wait(min(0.25, beat / 4)):
        pid = journal.write_lock_holder()
        now = time.monotonic()
        # Progress is a commit: one process committing back to back (a 1M-child
        # batch_trigger, chunk after chunk) holds the lock at most samples without holding
        # it long; it was killed as frozen, again and again.
        committed, progress = progress, journal.write_progress()
        if pid != holder or progress != committed:
            holder, since = pid, now
            continue
        # No lock here: poll() holds it while it writes, which is what may be stuck.
        wp = sup.table.by_pid(pid)
        held = now - since
        if wp is None or wp.killed_on_purpose or held < beat:
            continue
        if held < lease and not stopped(pid):
            continue
        sup.on_event(
            f"worker {wp.index} held the journal's write lock for {held:.1f} s "
            "without progress (stopped or frozen); replacing it"
        )
        wp.kill()
        holder = None
