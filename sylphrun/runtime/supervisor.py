"""The supervisor: starts N worker processes, restarts dead ones, enforces timeouts.

It watches each worker's process sentinel, so a worker killed by a signal is noticed at
once and its runs are handed back right away (not after a lease expires). A run whose
step overruns the task's timeout in a thread cannot be interrupted from Python; the
supervisor replaces that worker's process.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import wait as wait_sentinels
from typing import TypeVar

from sylphrun.config import Config
from sylphrun.errors import JournalError
from sylphrun.journal import open_journal
from sylphrun.journal.types import MAX_CRASHES
from sylphrun.runtime import wake
from sylphrun.runtime.lock_watch import watch_write_lock
from sylphrun.runtime.process_table import (
    ProcessTable,
    WorkerProcess,
    WorkerState,
    describe_exit,
)
from sylphrun.runtime.scheduler import ScheduleTicker
from sylphrun.runtime.worker import (
    IMPORT_FAILED,
    JOURNAL_GONE,
    REPLACE_ME,
    WorkerSettings,
    journal_gone_message,
)
from sylphrun.runtime.worker_sweeps import enforce_timeouts, release_vanished, renew_for_busy

log = logging.getLogger("sylphrun.supervisor")
T = TypeVar("T")

# A worker that exited cleanly without our asking is restarted this much later, unless
# the supervisor is stopping by then.
DEFERRED_RESTART = 1.0
ASKED_TO_STOP = (0, -signal.SIGTERM, -signal.SIGHUP)
# In a crash loop (more than 4 deaths per worker slot within 10 s), a dead worker is
# started again this much later.
CRASH_LOOP_PAUSE = 1.0
# A worker in one of these states that exits is not started again.
NOT_RESTARTED = (WorkerState.RETIRING, WorkerState.PROBATION, WorkerState.DISCARDED)


class Supervisor:
    def __init__(
        self,
        config: Config,
        *,
        workers: int | None = None,
        lease_seconds: float = 10.0,
        heartbeat_seconds: float = 2.0,
        on_event: Callable[[str], None] | None = None,
        output_path: str | None = None,
    ) -> None:
        self.config = config
        self.count = workers or config.worker_count
        self.template = WorkerSettings(
            config=config,
            worker_id="",
            supervisor_pid=os.getpid(),
            lease_seconds=lease_seconds,
            heartbeat_seconds=heartbeat_seconds,
            grace_seconds=config.shutdown_grace,
            output_path=output_path,
        )
        self.on_event = on_event or (lambda msg: log.info(msg))
        # The one owner of the worker processes (serving and standby sets, their states).
        self.table = ProcessTable(self.template, self.count)
        self.stopping = False
        # Set (to the line to print) when the journal file was deleted or replaced under
        # us: `serve` returns, and the caller stops with that line.
        self.journal_gone: str | None = None
        self.journal = open_journal(config.journal, durability=config.durability)
        self._recent_deaths: list[float] = []
        # Restarts that wait: (restart at, index, line to say then or None). See
        # `_handle_exit`.
        self._deferred: list[tuple[float, int, str | None]] = []
        self._swept_at = time.monotonic()
        self._journal_failing = False
        # Fires scheduled tasks' ticks from this loop (see `runtime/scheduler.py`).
        self.schedules = ScheduleTicker(self.journal)
        # poll() runs in the supervising thread; the reload's calls come from the
        # reloader's thread: the table's lock orders them.
        self._lock = self.table.lock

    @property
    def procs(self) -> list[WorkerProcess]:
        return self.table.procs

    @property
    def standby(self) -> list[WorkerProcess]:
        return self.table.standby

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.recover_vanished_workers()
        for i in range(self.count):
            self.table.add(i)
        self._watch_stop = threading.Event()
        threading.Thread(
            target=watch_write_lock,
            args=(self, self._watch_stop),
            daemon=True,
            name="sylphrun-lock-watch",
        ).start()

    def prepare_standby(self) -> None:
        """Spawn the next reload's workers now, waiting at their gate (see
        `ProcessTable.prepare_standby`). Called by the reloader once the serving set is
        settled."""
        with self._lock:  # `stop` drops the standby set under it: none may start after
            self.table.prepare_standby(stopping=self.stopping)

    def recover_vanished_workers(self, *, quiet_for: float = 0.0) -> None:
        """Release the runs of workers of this host that died with their supervisor (see
        `runtime.worker_sweeps.release_vanished`)."""
        ours = {p.worker_id for p in self.procs}
        release_vanished(self.journal, ours, self.on_event, quiet_for=quiet_for)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until every worker has registered in the journal (for tests and benches)."""
        deadline = time.monotonic() + timeout
        ids = {p.worker_id for p in self.procs}
        while time.monotonic() < deadline:
            live = {w.id for w in self.journal.live_workers(now=time.time(), stale_after=60)}
            if ids <= live:
                return True
            self.poll(0.02)
        return False

    def poll(self, timeout: float = 0.2) -> None:
        """Wait up to `timeout` for a worker to die, then handle deaths and timeouts."""
        sentinels = self.table.sentinels()
        timeout = self.schedules.wait_bound(timeout)  # wake at a schedule's slot, not after
        if sentinels:
            wait_sentinels(sentinels, timeout)
        else:
            time.sleep(timeout)
        with self._lock:
            for wp in self.table.exited_workers():
                self._handle_exit(wp)
            if not self.stopping:
                self._restart_deferred()
                if not self._journal_ok(self._sweep):
                    return
        if not self.stopping and self.journal_gone is None:
            self.schedules.tick(time.time())  # outside the lock: the reloader waits on it

    def _sweep(self) -> bool:
        """The journal sweeps of a poll; False once the journal file is gone."""
        enforce_timeouts(self.journal, self.procs, self.on_event)
        beat = self.template.heartbeat_seconds
        if time.monotonic() - self._swept_at > beat:
            self._swept_at = time.monotonic()
            if self.journal.replaced():
                self._journal_gone()
                return False
            self.recover_vanished_workers(quiet_for=1.5 * beat)
            renew_for_busy(self.journal, self.procs, self.template)
        return True

    def _journal_ok(self, fn: Callable[[], T], fallback: T = True) -> T:
        """`fn()`, surviving a journal that fails (a PostgreSQL server down longer than
        the journal waits for it): a supervisor that died of it took its workers with it
        and never came back. Said once per failing spell; sweeps run again next poll."""
        try:
            result = fn()
        except JournalError as exc:
            if not self._journal_failing:
                self._journal_failing = True
                log.warning("supervisor: journal error (retrying at the next poll): %s", exc)
            return fallback
        self._journal_failing = False
        return result

    def start_replacement(self, config: Config | None = None) -> list[str]:
        """Start a full new set of workers (on new code) beside the serving ones; returns
        their ids. They are on probation: `retire_all_but` or `abandon` ends it, once the
        reloader knows whether they came up."""
        with self._lock:
            if self.stopping:
                return []
            if config is not None:
                self.config = config
                self.template = replace(
                    self.template, config=config, grace_seconds=config.shutdown_grace
                )
                self.table.template = self.template
            return self.table.start_replacement()

    def retire_all_but(self, keep: set[str]) -> None:
        """The new workers are serving: the others stop claiming, hand in-flight runs back
        at a step boundary, and exit."""
        self.table.retire_all_but(keep)

    def abandon(self, ids: set[str]) -> None:
        """New workers that did not come up: stop them; the serving ones stay."""
        self.table.abandon(ids)

    def serving(self) -> bool:
        """Has every worker of the serving set registered (none of them still starting)?"""
        ids = self.table.serving_set()
        return bool(ids) and ids <= self.live_worker_ids()

    def wait_registered(self, ids: set[str], timeout: float) -> bool:
        """Block until the workers `ids` have registered (True), or one exited first, or
        `timeout` passed (False)."""
        return self.table.wait_registered(ids, timeout)

    def wait_serving_registered(self, timeout: float, stop: threading.Event) -> None:
        """Block until every running worker of the serving set has registered (workers
        that die meanwhile are left out, their replacements waited for), or `stop` is
        set, or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # A slice at a time: `stop` is a threading.Event, which a wait cannot include.
            if self.table.wait_registered(
                self.table.serving_set(running_only=True), min(remaining, 0.25)
            ):
                return

    def live_worker_ids(self) -> set[str]:
        return {w.id for w in self.journal.live_workers(now=time.time(), stale_after=60)}

    def _handle_exit(self, wp: WorkerProcess) -> None:
        self.table.remove(wp)
        wp.process.join(0)
        how = describe_exit(wp.process.exitcode)
        on_purpose = self.stopping or wp.state not in (WorkerState.SERVING, WorkerState.PROBATION)
        crashed = not on_purpose and wp.process.exitcode not in (0, REPLACE_ME, JOURNAL_GONE)
        requeued, failed = self._journal_ok(
            lambda: self._release_exited(wp, how, crashed=crashed), ([], [])
        )
        if requeued or failed:
            self._journal_ok(self._wake_workers, None)
        if wp.process.exitcode == JOURNAL_GONE:
            self._journal_gone()
        if self.stopping or self.journal_gone or wp.state in NOT_RESTARTED:
            return
        if wp.process.exitcode == IMPORT_FAILED:
            # The code on disk does not import (saved broken while this worker restarted):
            # restarting would only fail again. The next good save reloads a full set.
            self.on_event(
                f"worker {wp.index} cannot import the task modules; fix the error "
                "and save: the reload starts it again"
            )
            return
        if wp.process.exitcode == REPLACE_ME:
            # It said why on its own output (a cancelled run's thread would not return).
            self.table.add(wp.index)
            return
        if wp.process.exitcode in ASKED_TO_STOP and wp.state is WorkerState.SERVING:
            # A stop we did not ask for: SIGTERM to the whole process group (`timeout`,
            # systemd, a terminal closing) reaches the workers a moment before our own
            # handler runs (a worker still starting dies of it). Restart only if no
            # shutdown follows.
            self._deferred.append(
                (
                    time.monotonic() + DEFERRED_RESTART,
                    wp.index,
                    f"worker {wp.index} was stopped by a signal that did not "
                    "come from this supervisor; restarting it",
                )
            )
            return
        detail = f"; released {len(requeued)} run(s)" if requeued else ""
        if failed:
            detail += f"; failing {len(failed)} run(s) that killed it {MAX_CRASHES} times"
        self.on_event(f"worker {wp.index} {how}{detail}; restarting it")
        now = time.monotonic()
        self._recent_deaths = [t for t in self._recent_deaths if now - t < 10] + [now]
        if len(self._recent_deaths) > 4 * self.count:
            # A crash loop: do not spin at full speed. Deferred, not slept: a sleep here
            # held the table's lock, and the reloader's thread waited on it.
            self._deferred.append((now + CRASH_LOOP_PAUSE, wp.index, None))
        else:
            self.table.add(wp.index)

    def _release_exited(self, wp: WorkerProcess, how: str, *, crashed: bool):
        """Its runs back to the queue, itself out of the journal. If the journal fails, the
        worker is restarted all the same: its runs are released by `release_vanished`
        (its pid is gone) once the journal answers again."""
        released = self.journal.release_worker_runs(
            wp.worker_id, reason=f"worker {how}", crashed=crashed, now=time.time()
        )
        self.journal.unregister_worker(wp.worker_id, time.time())
        return released

    def _wake_workers(self) -> None:
        # Released runs (and doomed ones, which fail at their next execution) are new
        # work: wake the idle workers now, not at their next poll.
        wake.poke(
            w.wake_addr
            for w in self.journal.live_workers(
                now=time.time(), stale_after=3 * self.template.heartbeat_seconds
            )
        )

    def _journal_gone(self) -> None:
        if self.journal_gone is None:
            self.journal_gone = journal_gone_message(self.config.journal)
            self.on_event(self.journal_gone)

    def _restart_deferred(self) -> None:
        now = time.monotonic()
        due = [(index, line) for at, index, line in self._deferred if at <= now]
        self._deferred = [d for d in self._deferred if d[0] > now]
        for index, line in due:
            if line is not None:
                self.on_event(line)
            self.table.add(index)

    def serve(self, stop: threading.Event, interval: float = 0.1) -> None:
        """Supervise until `stop` is set (from a signal handler or another thread)."""
        while not stop.is_set() and self.journal_gone is None:
            self.poll(interval)

    def stop(self, *, graceful: bool = True, grace: float | None = None) -> None:
        """Graceful: workers let in-flight steps finish (up to the shutdown grace), hand
        their runs back at the step boundary, then exit. Not graceful: kill them now; their
        runs are released (not counted as crashes)."""
        if grace is None:
            # The workers' own grace, and time to hand back what outlived it.
            grace = self.template.grace_seconds + 5.0
        self.stopping = True
        self.table.drop_standby()
        for wp in list(self.procs):
            if wp.process.exitcode is None:
                if graceful:
                    wp.process.terminate()  # SIGTERM: the worker drains
                else:
                    wp.kill()
        deadline = time.monotonic() + (grace + 2 if graceful else 2)
        while self.procs and time.monotonic() < deadline:
            self.poll(0.05)
        with self._lock:
            for wp in list(self.procs):
                wp.kill()
                wp.process.join(2)
                self._handle_exit(wp)
        if hasattr(self, "_watch_stop"):
            self._watch_stop.set()
        self.journal.close()

    def stop_now(self) -> None:
        """From a second Ctrl-C during a graceful stop: kill the workers at once. `stop`
        notices them dead and releases their runs."""
        for wp in list(self.procs):
            wp.kill()

    def kill_worker(self, index: int) -> int:
        """SIGKILL one worker (tests, torture): returns the pid killed."""
        wp = next(p for p in self.procs if p.index == index)
        pid = wp.process.pid
        os.kill(pid, signal.SIGKILL)
        return pid
