"""The supervisor's worker processes: who they are, what state each is in, and the
changes a reload makes to the set (a standby set spawned ahead, a replacement set on
probation, the old set retired).

One owner: `ProcessTable` holds the serving set and the standby set under one lock. The
supervising thread (deaths, timeouts) and the reloader's thread (replacements) both change
the set through it; each worker's situation is one `WorkerState`, never a set of flags.
"""

from __future__ import annotations

import enum
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection as Pipe
from multiprocessing.connection import wait as wait_objects

# The id formats every journal backend shares: not a storage internal.
from sylphrun.journal.ids import new_worker_id
from sylphrun.runtime.worker import WorkerSettings
from sylphrun.runtime.worker_entry import worker_main


class WorkerState(enum.Enum):
    """Where a worker process stands, which says what its exit means."""

    # Spawned ahead for the next reload, waiting (imported, unregistered) at its gate.
    STANDBY = "standby"
    # Started by a reload, not yet known to serve: its exit is the reload's business.
    PROBATION = "probation"
    SERVING = "serving"
    # Replaced by a reload: it drains and exits; its runs go to the new workers.
    RETIRING = "retiring"
    # Killed by us while serving (a timeout, a frozen write lock): not a crash; another
    # takes its place.
    REPLACED = "replaced"
    # Killed by us while not serving (abandoned, retired or on probation): not a crash,
    # and nothing takes its place.
    DISCARDED = "discarded"


@dataclass
class WorkerProcess:
    index: int
    worker_id: str
    process: multiprocessing.process.BaseProcess
    started: float
    state: WorkerState = WorkerState.SERVING
    # A standby's end of its gate (see `ProcessTable.prepare_standby`); None once sent.
    gate: Pipe | None = field(default=None, repr=False)
    # Where it says it has registered in the journal (see `wait_registered`); None once
    # heard, or once it closed without saying so.
    registered_pipe: Pipe | None = field(default=None, repr=False)
    registered: bool = False

    @property
    def killed_on_purpose(self) -> bool:
        return self.state in (WorkerState.REPLACED, WorkerState.DISCARDED)

    def kill(self) -> None:
        """SIGKILL it, on purpose: its exit is not a crash."""
        if self.state is WorkerState.SERVING:
            self.state = WorkerState.REPLACED
        elif not self.killed_on_purpose:
            self.state = WorkerState.DISCARDED
        kill_pid(self.process.pid)

    def hear_registered(self) -> None:
        """Read its message if it sent it (never blocks)."""
        pipe = self.registered_pipe
        if pipe is None or not pipe.poll():
            return
        try:
            pipe.recv_bytes()
            self.registered = True
        except (EOFError, OSError):
            pass  # it exited without registering
        pipe.close()
        self.registered_pipe = None

    def close_pipes(self) -> None:
        for pipe in (self.gate, self.registered_pipe):
            if pipe is not None:
                pipe.close()
        self.gate = self.registered_pipe = None


class ProcessTable:
    """The serving set (`procs`) and the standby set, and every change made to them."""

    def __init__(self, template: WorkerSettings, count: int) -> None:
        self.template = template
        self.count = count
        self.procs: list[WorkerProcess] = []
        # Spawned ahead for the next reload, waiting at their gate; not in `procs`.
        self.standby: list[WorkerProcess] = []
        self.mp = multiprocessing.get_context("spawn")  # explicit: 3.14 changed the default
        # The supervising thread and the reloader's thread both change the sets under it.
        self.lock = threading.RLock()

    def spawn(self, index: int, *, gated: bool = False) -> WorkerProcess:
        worker_id = new_worker_id()
        settings = replace(self.template, worker_id=worker_id)
        gate_out, gate = self.mp.Pipe(duplex=False) if gated else (None, None)
        registered, registered_out = self.mp.Pipe(duplex=False)
        proc = self.mp.Process(
            target=worker_main,
            args=(settings, gate_out, registered_out),
            name=f"sylphrun-worker-{index}",
        )
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
        registered_out.close()  # and ours of this one would hide the child's death from us
        state = WorkerState.STANDBY if gated else WorkerState.SERVING
        return WorkerProcess(
            index,
            worker_id,
            proc,
            time.monotonic(),
            state=state,
            gate=gate,
            registered_pipe=registered,
        )

    def add(self, index: int) -> None:
        """Start a serving worker in slot `index`."""
        with self.lock:
            self.procs.append(self.spawn(index))

    def remove(self, wp: WorkerProcess) -> None:
        with self.lock:
            self.procs.remove(wp)
            wp.close_pipes()

    def wait_registered(self, ids: set[str], timeout: float) -> bool:
        """Block until every worker of `ids` has registered (True), or until one of them
        exited first, or `timeout` passed (False). An event, not a poll of the journal:
        each worker says so on its pipe once its registration is committed."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                ours = [wp for wp in self.procs if wp.worker_id in ids]
                for wp in ours:
                    wp.hear_registered()
            pending = [wp for wp in ours if not wp.registered]
            if len(ours) < len(ids) or any(wp.process.exitcode is not None for wp in pending):
                return False
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                return not pending
            try:
                wait_objects(
                    [wp.registered_pipe for wp in pending if wp.registered_pipe]
                    + [wp.process.sentinel for wp in pending],
                    remaining,
                )
            except (OSError, ValueError):
                continue  # a pipe closed under us: that worker exited; look again

    def exited_workers(self) -> list[WorkerProcess]:
        with self.lock:
            return [wp for wp in self.procs if wp.process.exitcode is not None]

    def sentinels(self) -> list[int]:
        with self.lock:
            return [wp.process.sentinel for wp in self.procs]

    def by_pid(self, pid: int | None) -> WorkerProcess | None:
        # No lock: the write-lock watcher calls it while the lock's holder may be stuck
        # on the very write lock it watches.
        return next((wp for wp in list(self.procs) if wp.process.pid == pid), None)

    def prepare_standby(self, *, stopping: bool) -> None:
        """Spawn the next reload's workers now: a spawned worker spends most of its start
        importing Python and sylphrun's runtime, none of which depends on the user's code.
        They wait at a gate, the task modules not imported, until `start_replacement`
        sends them the config to discover and serve; they are not registered meanwhile,
        so they claim nothing."""
        with self.lock:
            for wp in self.standby:
                if wp.process.exitcode is not None:
                    wp.process.join(0)
                    wp.close_pipes()
            self.standby = [wp for wp in self.standby if wp.process.exitcode is None]
            if stopping or self.standby:
                return
            self.standby = [self.spawn(i, gated=True) for i in range(self.count)]

    def start_replacement(self) -> list[str]:
        """A full new set of workers beside the serving ones, on probation; their ids."""
        with self.lock:
            # The standby set if one was prepared, topped up with fresh workers for any
            # that died waiting.
            new = [wp for wp in self.standby if self._release_gate(wp)]
            self.standby = []
            taken = {wp.index for wp in new}
            new += [self.spawn(i) for i in range(self.count) if i not in taken]
            for wp in new:
                wp.state = WorkerState.PROBATION
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
            wp.close_pipes()
            return False
        wp.started = time.monotonic()
        return True

    def drop_standby(self) -> None:
        """Closing a gate is the standby's signal to exit; SIGKILL if it is slow."""
        with self.lock:
            for wp in self.standby:
                wp.gate.close()
            for wp in self.standby:
                wp.process.join(1)
                if wp.process.exitcode is None:
                    kill_pid(wp.process.pid)
                    wp.process.join(1)
                wp.close_pipes()
            self.standby = []

    def retire_all_but(self, keep: set[str]) -> None:
        """The workers in `keep` serve; every other one stops claiming, hands its in-flight
        runs back at a step boundary, and exits."""
        with self.lock:
            for wp in self.procs:
                if wp.worker_id in keep:
                    if wp.state is WorkerState.PROBATION:
                        wp.state = WorkerState.SERVING
                    elif wp.state is WorkerState.DISCARDED:  # killed on probation
                        wp.state = WorkerState.REPLACED
                elif wp.state in (WorkerState.SERVING, WorkerState.PROBATION):
                    wp.state = WorkerState.RETIRING
                    if wp.process.exitcode is None:
                        wp.process.terminate()
                elif wp.state is WorkerState.REPLACED:
                    wp.state = WorkerState.DISCARDED  # killed, and now not replaced

    def abandon(self, ids: set[str]) -> None:
        """New workers that did not come up: kill them; the serving ones stay."""
        with self.lock:
            for wp in self.procs:
                if wp.worker_id in ids and wp.process.exitcode is None:
                    wp.kill()

    def serving_set(self, *, running_only: bool = False) -> set[str]:
        """The ids of the serving set: every worker not retiring (nor running, if asked)."""
        with self.lock:
            return {
                p.worker_id
                for p in self.procs
                if p.state is not WorkerState.RETIRING
                and not (running_only and p.process.exitcode is not None)
            }


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def kill_pid(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def pid_alive(pid: int) -> bool:
    """Is the process running? A zombie is not: a worker orphaned by its supervisor's
    death stays one until its new parent reaps it, which in a container may be never."""
    import psutil  # here: most supervisors never need it, and every start would pay for it

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stopped(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return False
