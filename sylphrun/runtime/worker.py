"""One worker process: claims runs from the journal and executes several at once on an
asyncio loop. Started by the supervisor with the "spawn" method; shares nothing with
other processes but the journal file (and best-effort wake-up datagrams).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from sylphrun.config import Config
from sylphrun.define import Task
from sylphrun.errors import JournalError
from sylphrun.journal import Connection, queries, store
from sylphrun.runtime import wake
from sylphrun.runtime.run import execute
from sylphrun.runtime.steps import Execution, error_text, task_factory

log = logging.getLogger("sylphrun.worker")

# The exit code of a worker that could not import the task modules: the supervisor does
# not restart it in a loop (the code on disk is broken; the next good save reloads).
IMPORT_FAILED = 3

# Set to "0" in the environment: run logs (`ctx.log`) are journaled only, not also
# echoed to the worker's stderr.
ECHO_RUN_LOGS = "SYLPHRUN_ECHO_RUN_LOGS"


@dataclass(frozen=True)
class WorkerSettings:
    config: Config
    worker_id: str
    supervisor_pid: int | None = None
    lease_seconds: float = 10.0
    heartbeat_seconds: float = 2.0
    # Fallback poll when no wake-up datagram arrives (another tool wrote the journal).
    poll_seconds: float = 0.25
    # How long a stopping worker lets in-flight steps finish before it hands runs back.
    grace_seconds: float = 3.0
    # Where the worker's stdout/stderr go (user prints, log records). None: inherit the
    # terminal. `sylphrun dev` points them at a file while the dashboard owns the screen.
    output_path: str | None = None


def worker_main(settings: WorkerSettings, gate: multiprocessing.connection.Connection | None = None) -> None:
    """Entry point of a worker process (the target the supervisor spawns).

    With a `gate`, a standby started ahead of a reload: the runtime is imported (this
    module's imports), the task modules not yet. It waits for the config to serve; the
    gate closing (the supervisor dropped the standby, or died) means exit.
    """
    from sylphrun.discover import discover
    from sylphrun.errors import SylphrunError

    # Ctrl-C reaches the whole process group; the supervisor decides how to stop us. It
    # started us with SIGINT blocked (see Supervisor._spawn): ignore it, then unblock.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if gate is not None:
        try:
            config = gate.recv()
        except (EOFError, OSError):
            os._exit(0)
        gate.close()
        settings = replace(settings, config=config)
    if settings.output_path:
        fd = os.open(settings.output_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    logging.basicConfig(level=os.environ.get("SYLPHRUN_LOG", "WARNING"),
                        format="%(asctime)s worker %(process)d %(levelname)s %(message)s")
    if os.environ.get(ECHO_RUN_LOGS) == "0":
        # `dev --no-tui` prints the journaled run logs in its own line format already.
        logging.getLogger("sylphrun.run").disabled = True
    try:
        tasks = discover(settings.config)
    except SylphrunError as exc:
        print(f"sylphrun worker: {exc}", file=sys.stderr)
        sys.exit(IMPORT_FAILED)
    worker = Worker(settings, tasks)
    asyncio.run(worker.serve())
    # Threads stuck in a user's sync step must not keep a stopped worker alive.
    os._exit(0)


class Worker:
    def __init__(self, settings: WorkerSettings, tasks: dict[str, Task]) -> None:
        self.settings = settings
        self.tasks = tasks
        self.id = settings.worker_id
        self.slots = settings.config.slots
        self.known = {
            t.id: store.TaskTerms(t.concurrency, t.timeout, t.source_fingerprint())
            for t in tasks.values()
        }
        self.active: dict[str, tuple[Execution, asyncio.Task]] = {}
        self.stopping = False
        self._peers: list[str] = []
        self._peers_at = 0.0

    async def serve(self) -> None:
        cfg = self.settings.config
        self.loop = asyncio.get_running_loop()
        self.loop.set_task_factory(task_factory)
        self.wake_event = asyncio.Event()
        self.conn = Connection(cfg.journal, durability=cfg.durability)
        self.step_threads = ThreadPoolExecutor(32, thread_name_prefix="sylphrun-step")
        self.run_threads = ThreadPoolExecutor(self.slots, thread_name_prefix="sylphrun-run")
        self.sock, self.addr = wake.bind_wake_socket(self.id)
        store.register_worker(self.conn, self.id, pid=os.getpid(), host=socket.gethostname(),
                              supervisor_pid=self.settings.supervisor_pid, wake_addr=self.addr,
                              now=time.time())
        self.loop.add_reader(self.sock.fileno(), self._on_poke)
        self.loop.add_signal_handler(signal.SIGTERM, self.stop)
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(beat_stop,), daemon=True)
        beat.start()
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            beat_stop.set()
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            wake.cleanup(self.addr)
            store.unregister_worker(self.conn, self.id, time.time())
            self.conn.close()

    def stop(self) -> None:
        """Stop claiming; in-flight runs are handed back at their next step boundary."""
        self.stopping = True
        for ex, _ in self.active.values():
            ex.releasing = True
        self.wake_event.set()

    # -- claiming ---------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        s = self.settings
        backoff = 0.0
        while not self.stopping:
            self.wake_event.clear()
            free = self.slots - len(self.active)
            now = time.time()
            try:
                if free > 0 and queries.has_ready_work(self.conn, now):
                    claims, _ = store.claim_runs(self.conn, self.id, free,
                                                 lease_seconds=s.lease_seconds,
                                                 known_tasks=self.known, now=now)
                    for claim in claims:
                        self._start(claim)
                    if claims and len(claims) < free:
                        continue
                timeout = s.poll_seconds
                nxt = queries.next_ready_at(self.conn)
                if nxt is not None and nxt > now:
                    timeout = min(timeout, nxt - now)
                backoff = 0.0
            except JournalError as exc:
                # A failing journal (a disk error, a full disk) is waited out, not crashed
                # on: a worker that exits is restarted by its supervisor, which would loop.
                backoff = min(5.0, backoff * 2 or 0.1)
                log.error("journal error (claiming again in %.1f s): %s", backoff, exc)
                timeout = backoff
            try:
                await asyncio.wait_for(self.wake_event.wait(), timeout)
            except TimeoutError:
                pass

    def _start(self, claim: store.Claim) -> None:
        task = self.tasks[claim.task_id]
        try:
            ex = Execution(self.conn, claim, task, threads=self.step_threads,
                           on_ready_work=self._ready_work,
                           max_output=self.settings.config.max_step_output)
        except JournalError:
            log.exception("run %s: cannot read its journal records; handing it back", claim.run_id)
            store.requeue_after_error(self.conn, claim.run_id, claim.epoch,
                                      error="the journal could not be read", now=time.time())
            return
        except Exception as exc:  # a row this code cannot make sense of: fail it, once
            log.exception("run %s: unreadable journal records", claim.run_id)
            store.finish_run(self.conn, claim.run_id, claim.epoch, status="failed", output=None,
                             error=f"CorruptRecord: this run's steps in the journal cannot be "
                             f"read ({error_text(exc)}); the row was damaged or edited by hand",
                             traceback=None, now=time.time())
            return
        ex.body_threads = self.run_threads
        t = asyncio.create_task(self._execute(ex), name=f"run {claim.run_id}")
        self.active[claim.run_id] = (ex, t)

    async def _execute(self, ex: Execution) -> None:
        outcome = "error"
        try:
            outcome = await execute(ex)
        except asyncio.CancelledError:
            outcome = "lost"
        except Exception as exc:  # a bug of ours, or the journal failing under us
            # Handed back as a crash, with a delay: a plain release made a run whose error
            # recurs (a result SQLite refused) loop through the workers thousands of times a
            # second. After MAX_CRASHES it fails, the error journaled.
            if isinstance(exc, JournalError):
                log.error("run %s: %s; handing it back", ex.run_id, exc)
            else:
                log.exception("run %s: internal error; handing it back", ex.run_id)
            try:
                store.requeue_after_error(self.conn, ex.run_id, ex.epoch,
                                          error=error_text(exc), now=time.time())
            except JournalError as again:
                log.error("run %s: could not hand it back (%s); it is claimed again when "
                          "its lease runs out", ex.run_id, again)
            except Exception:
                log.exception("run %s: could not hand it back", ex.run_id)
        finally:
            # Only our own entry: after a cancel and a retry this worker may already be
            # executing the run again under a new claim.
            if self.active.get(ex.run_id, (None,))[0] is ex:
                del self.active[ex.run_id]
            self.wake_event.set()
        log.debug("run %s %s", ex.run_id, outcome)

    def _ready_work(self, peers: bool = False) -> None:
        self.wake_event.set()
        if peers:
            now = time.time()
            if now - self._peers_at > 1.0:
                self._peers_at = now
                self._peers = [w.wake_addr for w in queries.live_workers(
                    self.conn, now=now, stale_after=3 * self.settings.heartbeat_seconds)
                    if w.id != self.id and w.wake_addr]
            wake.poke(self._peers)

    def _on_poke(self) -> None:
        wake.drain(self.sock)
        self.wake_event.set()
        if self.active:
            self._drop_lost(self._lost_runs())

    def _lost_runs(self) -> list[str]:
        states = queries.lease_states(self.conn, list(self.active))
        return [rid for rid, (ex, _) in self.active.items()
                if states.get(rid, (None, None)) != (ex.epoch, "running")]

    def _drop_lost(self, run_ids: list[str]) -> None:
        """Runs cancelled or taken over: stop executing them now, write nothing more."""
        for rid in run_ids:
            entry = self.active.get(rid)
            if entry is not None:
                entry[0].lost = True
                entry[1].cancel()

    # -- heartbeat ----------------------------------------------------------------------

    def _heartbeat(self, stop: threading.Event) -> None:
        """Renews leases from a thread of its own, so a user's step that blocks the event
        loop does not make this worker's runs look abandoned."""
        s = self.settings
        conn = Connection(s.config.journal, durability=s.config.durability)
        failing = False
        try:
            while not stop.wait(s.heartbeat_seconds):
                held = {rid: ex.epoch for rid, (ex, _) in dict(self.active).items()}
                try:
                    lost = store.heartbeat(conn, self.id, held, lease_seconds=s.lease_seconds,
                                           now=time.time())
                    if failing:
                        log.warning("heartbeat: the journal is writable again")
                    failing = False
                except JournalError as exc:  # a full or failing disk: once, not every beat
                    if not failing:
                        log.error("heartbeat failed (retrying every %g s): %s",
                                  s.heartbeat_seconds, exc)
                    failing, lost = True, []
                except Exception:
                    log.exception("heartbeat failed")
                    lost = []
                if lost:
                    self.loop.call_soon_threadsafe(self._drop_lost, lost)
                if s.supervisor_pid and os.getppid() != s.supervisor_pid:
                    # Our supervisor died (kill -9): stop, handing our runs back.
                    self.loop.call_soon_threadsafe(self.stop)
        finally:
            conn.close()

    # -- stopping -----------------------------------------------------------------------

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.settings.grace_seconds
        while self.active and time.monotonic() < deadline:
            self.wake_event.clear()
            try:
                await asyncio.wait_for(self.wake_event.wait(), 0.05)
            except TimeoutError:
                pass
        now = time.time()
        for rid, (ex, t) in list(self.active.items()):
            store.release_run(self.conn, rid, ex.epoch, now)
            t.cancel()
