"""The supervisor: starts N worker processes, restarts dead ones, enforces timeouts.

It watches each worker's process sentinel, so a worker killed by a signal is noticed at
once and its runs are handed back right away (not after a lease expires). A run whose
step overruns the task's timeout in a thread cannot be interrupted from Python; the
supervisor replaces that worker's process.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import wait as wait_sentinels

from sylphrun.config import Config
from sylphrun.errors import JournalError, timeout_error
from sylphrun.journal import Connection, queries, store
from sylphrun.journal.connection import write_lock_holder
from sylphrun.journal.ids import new_worker_id
from sylphrun.journal.workers import renew_leases_for
from sylphrun.runtime import wake
from sylphrun.runtime.worker import (
    IMPORT_FAILED,
    JOURNAL_GONE,
    REPLACE_ME,
    WorkerSettings,
    journal_gone_message,
    worker_main,
)

log = logging.getLogger("sylphrun.supervisor")

# A run past its deadline by this much is stuck in a thread: replace its worker.
TIMEOUT_GRACE = 2.0
# A worker that exited cleanly without our asking is restarted this much later, unless
# the supervisor is stopping by then.
DEFERRED_RESTART = 1.0
ASKED_TO_STOP = (0, -signal.SIGTERM, -signal.SIGHUP)


@dataclass
class WorkerProcess:
    index: int
    worker_id: str
    process: multiprocessing.process.BaseProcess
    started: float
    killed_on_purpose: bool = False
    # Replaced by a reload: it drains and exits; its runs go to the new workers.
    retiring: bool = False
    # Started by a reload, not yet known to serve: its exit is the reload's business.
    probation: bool = False
    # A standby's end of its gate: it waits, imported, for the config to serve (see
    # `prepare_standby`). None once sent, and for workers started to serve at once.
    gate: multiprocessing.connection.Connection | None = None


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    def __init__(
        self, config: Config, *, workers: int | None = None, lease_seconds: float = 10.0,
        heartbeat_seconds: float = 2.0, on_event: Callable[[str], None] | None = None,
        output_path: str | None = None,
    ) -> None:
        self.config = config
        self.count = workers or config.worker_count
        self.template = WorkerSettings(config=config, worker_id="", supervisor_pid=os.getpid(),
                                       lease_seconds=lease_seconds,
                                       heartbeat_seconds=heartbeat_seconds,
                                       grace_seconds=config.shutdown_grace,
                                       output_path=output_path)
        self.on_event = on_event or (lambda msg: log.info(msg))
        self.procs: list[WorkerProcess] = []
        # Spawned ahead for the next reload, waiting at their gate; not in `procs`.
        self.standby: list[WorkerProcess] = []
        self.stopping = False
        # Set (to the line to print) when the journal file was deleted or replaced under
        # us: `serve` returns, and the caller stops with that line.
        self.journal_gone: str | None = None
        self.mp = multiprocessing.get_context("spawn")  # explicit: 3.14 changed the default
        self.conn = Connection(config.journal, durability=config.durability)
        self._recent_deaths: list[float] = []
        # Workers that exited cleanly without our asking: (restart at, index). See
        # `_handle_exit`.
        self._deferred: list[tuple[float, int]] = []
        self._swept_at = time.monotonic()
        # poll() runs in the supervising thread; replace_workers() may come from the
        # reloader's thread: both change self.procs under this lock.
        self._lock = threading.RLock()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.recover_vanished_workers()
        for i in range(self.count):
            self.procs.append(self._spawn(i))
        self._watch_stop = threading.Event()
        threading.Thread(target=self._watch_write_lock, args=(self._watch_stop,), daemon=True,
                         name="sylphrun-lock-watch").start()

    def _spawn(self, index: int, *, gated: bool = False) -> WorkerProcess:
        worker_id = new_worker_id()
        settings = replace(self.template, worker_id=worker_id)
        gate_out, gate = self.mp.Pipe(duplex=False) if gated else (None, None)
        proc = self.mp.Process(target=worker_main, args=(settings, gate_out),
                               name=f"sylphrun-worker-{index}")
        # Ctrl-C reaches the whole process group. A child still starting (importing, before
        # worker_main ignores SIGINT) died of it with a KeyboardInterrupt traceback on the
        # user's terminal: save, then Ctrl-C, hit the standby set. The child inherits this
        # thread's blocked mask; worker_main ignores SIGINT, then unblocks it.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if gate_out is not None:
            gate_out.close()  # the child holds it now; our copy would hide our death from it
        return WorkerProcess(index, worker_id, proc, time.monotonic(), gate=gate)

    def prepare_standby(self) -> None:
        """Spawn the next reload's workers now: a spawned worker spends most of its start
        importing Python and sylphrun's runtime, none of which depends on the user's code.
        They wait at a gate, the task modules not imported, until `start_replacement`
        sends them the config to discover and serve; they are not registered meanwhile,
        so they claim nothing. Called by the reloader once the serving set is settled."""
        with self._lock:
            for wp in self.standby:
                if wp.process.exitcode is not None:
                    wp.process.join(0)
            self.standby = [wp for wp in self.standby if wp.process.exitcode is None]
            if self.stopping or self.standby:
                return
            self.standby = [self._spawn(i, gated=True) for i in range(self.count)]

    def recover_vanished_workers(self, *, quiet_for: float = 0.0) -> None:
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
        registered = queries.live_workers(self.conn, now=now, stale_after=math.inf)
        ours = {p.worker_id for p in self.procs}
        for w in registered:
            if w.id in ours or now - w.heartbeat_at < quiet_for:
                continue
            if w.host == host and not _pid_alive(w.pid):
                requeued, failed = store.release_worker_runs(
                    self.conn, w.id, reason="its worker vanished", crashed=True, now=time.time())
                store.unregister_worker(self.conn, w.id, time.time())
                if requeued or failed:
                    self.on_event(f"recovered {len(requeued)} run(s) from vanished worker {w.id}")

    def _renew_for_busy_workers(self) -> None:
        """Renew the leases of a worker of ours whose heartbeat went quiet while its
        process runs: a step holding the GIL starves its heartbeat thread, not the worker.
        Alive and not stopped is what we can see from here; a worker that is gone, or
        stopped (SIGSTOP, a debugger), is fenced out when its leases run out, as before."""
        beat = self.template.heartbeat_seconds
        now = time.time()
        quiet = {w.id for w in queries.live_workers(self.conn, now=now, stale_after=math.inf)
                 if now - w.heartbeat_at > 1.5 * beat}
        for wp in self.procs:
            if (wp.worker_id not in quiet or wp.killed_on_purpose
                    or wp.process.exitcode is not None or not _pid_alive(wp.process.pid)
                    or _stopped(wp.process.pid)):
                continue
            try:
                renew_leases_for(self.conn, wp.worker_id,
                                 lease_seconds=self.template.lease_seconds, now=now)
            except JournalError as exc:
                # A full or failing disk starves the worker's heartbeat the same way: it
                # logs that itself; we must not die of it (a supervisor that exits
                # takes its workers with it).
                log.warning("renewing worker %s's leases failed: %s", wp.index, exc)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until every worker has registered in the journal (for tests and benches)."""
        deadline = time.monotonic() + timeout
        ids = {p.worker_id for p in self.procs}
        while time.monotonic() < deadline:
            live = {w.id for w in queries.live_workers(self.conn, now=time.time(), stale_after=60)}
            if ids <= live:
                return True
            self.poll(0.02)
        return False

    def poll(self, timeout: float = 0.2) -> None:
        """Wait up to `timeout` for a worker to die, then handle deaths and timeouts."""
        with self._lock:
            sentinels = [p.process.sentinel for p in self.procs]
        if sentinels:
            wait_sentinels(sentinels, timeout)
        else:
            time.sleep(timeout)
        with self._lock:
            for wp in list(self.procs):
                if wp.process.exitcode is not None:
                    self._handle_exit(wp)
            if not self.stopping:
                self._restart_deferred()
                self._enforce_timeouts()
                beat = self.template.heartbeat_seconds
                if time.monotonic() - self._swept_at > beat:
                    self._swept_at = time.monotonic()
                    if self.conn.file_replaced():
                        self._journal_gone()
                        return
                    self.recover_vanished_workers(quiet_for=1.5 * beat)
                    self._renew_for_busy_workers()

    def start_replacement(self, config: Config | None = None) -> list[str]:
        """Start a full new set of workers (on new code) beside the serving ones; returns
        their ids. They are on probation: `retire_all_but` or `abandon` ends it, once the
        reloader knows whether they came up."""
        with self._lock:
            if self.stopping:
                return []
            if config is not None:
                self.config = config
                self.template = replace(self.template, config=config,
                                        grace_seconds=config.shutdown_grace)
            # The standby set if one was prepared (see `prepare_standby`), topped up with
            # fresh workers for any that died waiting.
            new = [wp for wp in self.standby if self._release_gate(wp)]
            self.standby = []
            taken = {wp.index for wp in new}
            new += [self._spawn(i) for i in range(self.count) if i not in taken]
            for wp in new:
                wp.probation = True
            self.procs.extend(new)
            return [p.worker_id for p in new]

    def _release_gate(self, wp: WorkerProcess) -> bool:
        """Send a standby worker the config to serve; False if it is gone, or did not get
        the config (the gate closing then makes it exit, and a fresh one takes its place)."""
        try:
            wp.gate.send(self.template.config)
            sent = True
        except OSError:  # it died waiting (killed by hand, out of memory)
            sent = False
        wp.gate.close()
        wp.gate = None
        if not sent or wp.process.exitcode is not None:
            wp.process.join(0)
            return False
        wp.started = time.monotonic()
        return True

    def _drop_standby(self) -> None:
        """Closing a gate is the standby's signal to exit; SIGKILL if it is slow."""
        for wp in self.standby:
            wp.gate.close()
        for wp in self.standby:
            wp.process.join(1)
            if wp.process.exitcode is None:
                _kill(wp.process.pid)
                wp.process.join(1)
        self.standby = []

    def retire_all_but(self, keep: set[str]) -> None:
        """The new workers are serving: the others stop claiming, hand in-flight runs back
        at a step boundary, and exit."""
        with self._lock:
            for wp in self.procs:
                if wp.worker_id in keep:
                    wp.probation = False
                elif not wp.retiring:
                    wp.retiring = True
                    if wp.process.exitcode is None:
                        wp.process.terminate()

    def abandon(self, ids: set[str]) -> None:
        """New workers that did not come up: stop them; the serving ones stay."""
        with self._lock:
            for wp in self.procs:
                if wp.worker_id in ids and wp.process.exitcode is None:
                    wp.killed_on_purpose = True
                    _kill(wp.process.pid)

    def exited(self, ids: set[str]) -> bool:
        with self._lock:
            running = {p.worker_id for p in self.procs if p.process.exitcode is None}
        return not ids <= running

    def serving(self) -> bool:
        """Has every worker of the serving set registered (none of them still starting)?"""
        with self._lock:
            ids = {p.worker_id for p in self.procs if not p.retiring}
        return bool(ids) and ids <= self.live_worker_ids()

    def starting(self) -> bool:
        """Is a worker of the serving set running but not registered yet?"""
        with self._lock:
            ids = {p.worker_id for p in self.procs
                   if not p.retiring and p.process.exitcode is None}
        return not ids <= self.live_worker_ids()

    def live_worker_ids(self) -> set[str]:
        return {w.id for w in queries.live_workers(self.conn, now=time.time(), stale_after=60)}

    def _handle_exit(self, wp: WorkerProcess) -> None:
        self.procs.remove(wp)
        wp.process.join(0)
        how = describe_exit(wp.process.exitcode)
        on_purpose = self.stopping or wp.killed_on_purpose or wp.retiring
        crashed = not on_purpose and wp.process.exitcode not in (0, REPLACE_ME, JOURNAL_GONE)
        requeued, failed = store.release_worker_runs(
            self.conn, wp.worker_id, reason=f"worker {how}", crashed=crashed, now=time.time())
        store.unregister_worker(self.conn, wp.worker_id, time.time())
        if requeued or failed:
            # Released runs (and doomed ones, which fail at their next execution) are new work: wake the idle workers now, not at their next poll.
            wake.poke(w.wake_addr for w in queries.live_workers(
                self.conn, now=time.time(), stale_after=3 * self.template.heartbeat_seconds))
        if wp.process.exitcode == JOURNAL_GONE:
            self._journal_gone()
        if self.stopping or wp.retiring or wp.probation or self.journal_gone:
            return
        if wp.process.exitcode == IMPORT_FAILED:
            # The code on disk does not import (saved broken while this worker restarted):
            # restarting would only fail again. The next good save reloads a full set.
            self.on_event(f"worker {wp.index} cannot import the task modules; fix the error "
                          "and save: the reload starts it again")
            return
        if wp.process.exitcode == REPLACE_ME:
            # It said why on its own output (a cancelled run's thread would not return).
            self.procs.append(self._spawn(wp.index))
            return
        if wp.process.exitcode in ASKED_TO_STOP and not wp.killed_on_purpose:
            # A stop we did not ask for: SIGTERM to the whole process group (`timeout`,
            # systemd, a terminal closing) reaches the workers a moment before our own
            # handler runs (a worker still starting dies of it). Restart only if no
            # shutdown follows.
            self._deferred.append((time.monotonic() + DEFERRED_RESTART, wp.index))
            return
        detail = f"; released {len(requeued)} run(s)" if requeued else ""
        if failed:
            detail += f"; failing {len(failed)} run(s) that killed it {store.MAX_CRASHES} times"
        self.on_event(f"worker {wp.index} {how}{detail}; restarting it")
        now = time.monotonic()
        self._recent_deaths = [t for t in self._recent_deaths if now - t < 10] + [now]
        if len(self._recent_deaths) > 4 * self.count:
            time.sleep(1.0)  # a crash loop: do not spin at full speed
        self.procs.append(self._spawn(wp.index))

    def _journal_gone(self) -> None:
        if self.journal_gone is None:
            self.journal_gone = journal_gone_message(self.config.journal)
            self.on_event(self.journal_gone)

    def _restart_deferred(self) -> None:
        now = time.monotonic()
        due = [index for at, index in self._deferred if at <= now]
        self._deferred = [(at, index) for at, index in self._deferred if at > now]
        for index in due:
            self.on_event(f"worker {index} was stopped by a signal that did not come from "
                          "this supervisor; restarting it")
            self.procs.append(self._spawn(index))

    def _watch_write_lock(self, stop: threading.Event) -> None:
        """Replace a worker frozen inside a write transaction (SIGSTOP, a debugger).

        It holds the journal's write lock, so every other writer waits on it: the workers
        that would take its runs over when its lease expires, and this supervisor's own
        releases. Leases cannot help there, so a thread of its own (it never touches the
        journal) kills it once it has held the lock for a heartbeat while stopped, or for
        a whole lease period whatever its state: no write transaction lasts that long.
        """
        beat, lease = self.template.heartbeat_seconds, self.template.lease_seconds
        holder, since, wal = None, 0.0, None
        while not stop.wait(min(0.25, beat / 4)):
            pid = write_lock_holder(self.config.journal)
            now = time.monotonic()
            # Progress is a commit, which writes the WAL: one process committing back to
            # back (a 1M-child batch_trigger, chunk after chunk) holds the lock at most
            # samples without holding it long; it was killed as frozen, again and again.
            committed, wal = wal, _wal_stamp(self.config.journal)
            if pid != holder or wal != committed:
                holder, since = pid, now
                continue
            # No self._lock here: poll() holds it while it writes, which is what may be stuck.
            wp = next((p for p in list(self.procs) if p.process.pid == pid), None)
            held = now - since
            if wp is None or wp.killed_on_purpose or held < beat:
                continue
            if held < lease and not _stopped(pid):
                continue
            wp.killed_on_purpose = True
            self.on_event(f"worker {wp.index} held the journal's write lock for {held:.1f} s "
                          "without progress (stopped or frozen); replacing it")
            _kill(pid)
            holder = None

    def _enforce_timeouts(self) -> None:
        by_id = {p.worker_id: p for p in self.procs}
        overdue = queries.overdue_runs(self.conn, list(by_id), now=time.time() - TIMEOUT_GRACE)
        for run_id, task_id, worker_id in overdue:
            wp = by_id.get(worker_id)
            if wp is None or wp.killed_on_purpose:
                continue
            if not store.doom_run(self.conn, run_id, worker_id=worker_id, error=(
                    f"{timeout_error(task_id)}; its worker was replaced to stop code that "
                    "did not return"), now=time.time()):
                continue  # it finished (or moved on) since we looked
            self.on_event(f"run {run_id} overran its timeout in a blocking step; replacing worker {wp.index}")
            wp.killed_on_purpose = True
            _kill(wp.process.pid)

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
        with self._lock:
            self._drop_standby()
        for wp in self.procs:
            if wp.process.exitcode is None:
                if graceful:
                    wp.process.terminate()  # SIGTERM: the worker drains
                else:
                    wp.killed_on_purpose = True
                    _kill(wp.process.pid)
        deadline = time.monotonic() + (grace + 2 if graceful else 2)
        while self.procs and time.monotonic() < deadline:
            self.poll(0.05)
        with self._lock:
            for wp in list(self.procs):
                wp.killed_on_purpose = True
                _kill(wp.process.pid)
                wp.process.join(2)
                self._handle_exit(wp)
        if hasattr(self, "_watch_stop"):
            self._watch_stop.set()
        self.conn.close()

    def stop_now(self) -> None:
        """From a second Ctrl-C during a graceful stop: kill the workers at once. `stop`
        notices them dead and releases their runs."""
        for wp in self.procs:
            wp.killed_on_purpose = True
            _kill(wp.process.pid)

    def kill_worker(self, index: int) -> int:
        """SIGKILL one worker (tests, torture): returns the pid killed."""
        wp = next(p for p in self.procs if p.index == index)
        pid = wp.process.pid
        os.kill(pid, signal.SIGKILL)
        return pid


def _pid_alive(pid: int) -> bool:
    """Is the process running? A zombie is not: a worker orphaned by its supervisor's
    death stays one until its new parent reaps it, which in a container may be never."""
    import psutil  # here: most supervisors never need it, and every start would pay for it

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wal_stamp(journal: object) -> tuple[int, int] | None:
    try:
        st = os.stat(f"{journal}-wal")
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _stopped(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return False


def _kill(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
