"""The supervisor's periodic sweeps of the journal's workers: release the runs of workers
that vanished, renew the leases of workers too busy to heartbeat, and replace a worker
whose run overran its timeout in a thread.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Callable

from sylphrun.errors import JournalError, timeout_error
from sylphrun.journal.interface import Journal
from sylphrun.runtime.process_table import WorkerProcess, pid_alive, stopped
from sylphrun.runtime.worker_settings import WorkerSettings

log = logging.getLogger("sylphrun.supervisor")

# A run past its deadline by this much is stuck in a thread: replace its worker.
TIMEOUT_GRACE = 2.0


def release_vanished(
    journal: Journal,
    ours: set[str],
    on_event: Callable[[str], None],
    *,
    quiet_for: float = 0.0,
) -> None:
    """Runs held by workers of this host that died with their supervisor (kill -9 of
    everything, a reboot) are released now instead of when their leases expire.

    At start, every registered worker, however fresh its heartbeat: on this host a pid
    that no longer exists is conclusive. A pid that exists is left alone (a worker of
    another supervisor, or a reused pid): the lease covers that case. `poll` sweeps
    again every heartbeat (`quiet_for`: only workers silent that long, so a worker
    that just died is left to its own supervisor, which knows whether it meant it):
    a worker still dying at start, or orphaned by a killed supervisor and killed
    later, is released within a few heartbeats, not a lease.
    """
    host = socket.gethostname()
    now = time.time()
    for w in journal.live_workers(now=now, stale_after=math.inf):
        if w.id in ours or now - w.heartbeat_at < quiet_for:
            continue
        if w.host == host and not pid_alive(w.pid):
            requeued, failed = journal.release_worker_runs(
                w.id, reason="its worker vanished", crashed=True, now=time.time()
            )
            journal.unregister_worker(w.id, time.time())
            if requeued or failed:
                on_event(f"recovered {len(requeued)} run(s) from vanished worker {w.id}")


def renew_for_busy(journal: Journal, procs: list[WorkerProcess], template: WorkerSettings) -> None:
    """Renew the leases of a worker of ours whose heartbeat went quiet while its
    process runs: a step holding the GIL starves its heartbeat thread, not the worker.
    Alive and not stopped is what we can see from here; a worker that is gone, or
    stopped (SIGSTOP, a debugger), is fenced out when its leases run out, as before."""
    beat = template.heartbeat_seconds
    now = time.time()
    quiet = {
        w.id
        for w in journal.live_workers(now=now, stale_after=math.inf)
        if now - w.heartbeat_at > 1.5 * beat
    }
    for wp in procs:
        if (
            wp.worker_id not in quiet
            or wp.killed_on_purpose
            or wp.process.exitcode is not None
            or not pid_alive(wp.process.pid)
            or stopped(wp.process.pid)
        ):
            continue
        try:
            journal.renew_leases_for(wp.worker_id, lease_seconds=template.lease_seconds, now=now)
        except JournalError as exc:
            # A full or failing disk starves the worker's heartbeat the same way: it
            # logs that itself; we must not die of it (a supervisor that exits
            # takes its workers with it).
            log.warning("renewing worker %s's leases failed: %s", wp.index, exc)


def enforce_timeouts(
    journal: Journal, procs: list[WorkerProcess], on_event: Callable[[str], None]
) -> None:
    """A run past its timeout (by `TIMEOUT_GRACE`) is stuck in a thread Python cannot
    interrupt: doom it and replace its worker's process."""
    by_id = {p.worker_id: p for p in procs}
    overdue = journal.overdue_runs(list(by_id), now=time.time() - TIMEOUT_GRACE)
    for run_id, task_id, worker_id in overdue:
        wp = by_id.get(worker_id)
        if wp is None or wp.killed_on_purpose:
            continue
        if not journal.doom_run(
            run_id,
            worker_id=worker_id,
            error=(
                f"{timeout_error(task_id)}; its worker was replaced to stop code that "
                "did not return"
            ),
            now=time.time(),
        ):
            continue  # it finished (or moved on) since we looked
        on_event(
            f"run {run_id} overran its timeout in a blocking step; replacing worker {wp.index}"
        )
        wp.kill()
