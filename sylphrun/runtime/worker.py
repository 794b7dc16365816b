"""One worker process: claims runs from the journal and executes several at once on an
asyncio loop. Started by the supervisor with the "spawn" method; shares nothing with
other processes but the journal file (and best-effort wake-up datagrams).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sylphrun.define import Task
from sylphrun.discover import register_tasks
from sylphrun.errors import JournalError, JournalUnreachable
from sylphrun.journal.types import Claim, TaskTerms
from sylphrun.runtime import wake
from sylphrun.runtime.execution import Execution
from sylphrun.runtime.failures import error_text
from sylphrun.runtime.heartbeat import journal_errors_logged, renew_leases
from sylphrun.runtime.run import execute
from sylphrun.runtime.task_factory import task_factory
from sylphrun.runtime.threads import RunThreads, Stragglers
from sylphrun.runtime.waiting_open import open_journal_waiting
from sylphrun.runtime.worker_settings import (  # re-exported: imported from here elsewhere
    ECHO_RUN_LOGS,  # noqa: F401
    IMPORT_FAILED,  # noqa: F401
    JOURNAL_GONE,  # noqa: F401
    REPLACE_ME,  # noqa: F401
    WorkerSettings,
    journal_gone_message,
)
from sylphrun.runtime.worker_stop import abandon_stuck, drain_active

log = logging.getLogger("sylphrun.worker")


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        tasks: dict[str, Task],
        *,
        registered: multiprocessing.connection.Connection | None = None,
        owns_process: bool = False,
    ) -> None:
        self.settings = settings
        # The worker process's entry point (`worker_entry`) owns its process's signals;
        # anyone else (a test, an embedding) gets its own SIGTERM handling back.
        self.owns_process = owns_process
        self._registered = registered
        self.tasks = tasks
        self.id = settings.worker_id
        self.slots = settings.config.slots
        self.known = {
            t.id: TaskTerms(
                t.concurrency, t.timeout, t.source_fingerprint(), **t.flow.claim_terms()
            )
            for t in tasks.values()
        }
        self.active: dict[str, tuple[Execution, asyncio.Task]] = {}
        self.stopping = False
        self.journal_gone = False
        self.replace_me = False
        self.stragglers = Stragglers(settings.grace_seconds)
        self._peers: list[str] = []
        # Runs to hand back whose hand-back the journal refused (a server down): run id ->
        # (epoch, error; None: a release, no crash counted). Retried each claim loop turn:
        # not left for the lease to expire.
        self.owed: dict[str, tuple[int, str | None]] = {}
        self._peers_at = 0.0

    async def serve(self) -> None:
        cfg = self.settings.config
        self.loop = asyncio.get_running_loop()
        self.loop.set_task_factory(task_factory)
        self.wake_event = asyncio.Event()
        # A server with no connection slot left: wait for one, not crash-loop (issue 17).
        self.journal = open_journal_waiting(cfg.journal, durability=cfg.durability)
        self.step_threads = ThreadPoolExecutor(32, thread_name_prefix="sylphrun-step")
        self.run_threads = ThreadPoolExecutor(self.slots, thread_name_prefix="sylphrun-run")
        self.sock, self.addr = wake.bind_wake_socket(self.id)
        # Before registering: a SIGTERM to the process group right after would kill us.
        sigterm_before = signal.getsignal(signal.SIGTERM)
        self.loop.add_signal_handler(signal.SIGTERM, self.stop)
        self.journal.register_worker(
            self.id,
            pid=os.getpid(),
            host=socket.gethostname(),
            supervisor_pid=self.settings.supervisor_pid,
            wake_addr=self.addr,
            now=time.time(),
        )
        register_tasks(self.journal, cfg, self.tasks, by=self.id)  # what `sylphrun trigger` reads
        self._say_registered()
        self.loop.add_reader(self.sock.fileno(), self._on_poke)
        # The journal's own wake-ups too, where it has them (PostgreSQL: from any host).
        self.journal_wakeups = wake.JournalWakeups(self.journal, self.loop, self.wake_event.set)
        self.journal_wakeups.listen()
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(beat_stop,), daemon=True)
        beat.start()
        try:
            await self._claim_loop()
            if not self.journal_gone:
                await drain_active(self)
        finally:
            # Every run task has ended before the connection closes: a task cancelled by
            # asyncio.run's teardown wrote through a closed connection (seven tracebacks
            # of `fcntl` on a closed file per stuck step).
            await abandon_stuck(self)
            beat_stop.set()
            self.loop.remove_reader(self.sock.fileno())
            self.journal_wakeups.close()
            self.sock.close()
            wake.cleanup(self.addr)
            with journal_errors_logged("unregistering this worker"):
                self.journal.unregister_worker(self.id, time.time())
            self.journal.close()
            # asyncio.run's loop.close() closes its wakeup pipe before it removes this
            # handler: a SIGTERM in between (the group's, then the supervisor's) printed
            # "Exception ignored ... Bad file descriptor" and a traceback. Leaving now, a
            # SIGTERM has nothing left to stop. Only in a process of our own: an ignored
            # SIGTERM is inherited by every process started after, across exec, so a
            # Worker served inside a test session left each host a later test started
            # deaf to a SIGTERM until it set its own handler (a lost stop, PostgreSQL
            # torture). Elsewhere the handling found at the start is put back.
            self.loop.remove_signal_handler(signal.SIGTERM)
            if self.owns_process:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            else:
                signal.signal(signal.SIGTERM, sigterm_before or signal.SIG_DFL)

    def _say_registered(self) -> None:
        if self._registered is None:
            return
        try:
            self._registered.send_bytes(b"registered")
        except OSError:
            pass  # the supervisor is gone; the journal says we are registered anyway
        self._registered.close()
        self._registered = None

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
            self._check_stragglers()
            self.journal_wakeups.listen_again_if_due()
            if self.stopping:
                break
            free = self.slots - len(self.active)
            now = time.time()
            try:
                self._hand_back_owed(now)
                if free > 0 and self.journal.has_ready_work(now):
                    claims, _ = self.journal.claim_runs(
                        self.id,
                        free,
                        lease_seconds=s.lease_seconds,
                        known_tasks=self.known,
                        now=now,
                    )
                    for claim in claims:
                        self._start(claim)
                    if claims and len(claims) < free:
                        continue
                timeout = (
                    s.listening_poll_seconds if self.journal_wakeups.listening else s.poll_seconds
                )
                nxt = self.journal.next_ready_at()
                if nxt is not None and nxt > now:
                    timeout = min(timeout, nxt - now)
                backoff = 0.0
            except JournalError as exc:
                # A failing journal (a disk error, a full disk) is waited out, not crashed
                # on: a worker that exits is restarted by its supervisor, which would loop.
                # Said once per failing spell (a server down for a minute said it 20 times).
                if not backoff:
                    log.error("journal error (claiming again until it answers): %s", exc)
                backoff = min(5.0, backoff * 2 or 0.1)
                timeout = backoff
            try:
                await asyncio.wait_for(self.wake_event.wait(), timeout)
            except TimeoutError:
                pass

    def _hand_back(self, run_id: str, epoch: int, error: str | None) -> None:
        """Back to the queue: counted as a crash with `error`, or, for None (the server was
        out of reach, not the run's doing), released with none counted. A JournalError
        leaves it owed, made again each claim loop turn: not left for the lease to expire."""
        try:
            if error is None:
                self.journal.release_run(run_id, epoch, time.time())
            else:
                self.journal.requeue_after_error(run_id, epoch, error=error, now=time.time())
        except JournalError:
            self.owed[run_id] = (epoch, error)
            raise

    def _hand_back_owed(self, now: float) -> None:
        """The hand-backs the journal refused, now that it may answer (a run no longer ours
        is left alone by the journal)."""
        for run_id, (epoch, error) in list(self.owed.items()):
            self._hand_back(run_id, epoch, error)
            del self.owed[run_id]
            log.warning("run %s: handed back now that the journal answers", run_id)

    def _start(self, claim: Claim) -> None:
        task = self.tasks[claim.task_id]
        try:
            ex = Execution(
                self.journal,
                claim,
                task,
                threads=RunThreads(self.step_threads),
                on_ready_work=self._ready_work,
                max_output=self.settings.config.max_step_output,
            )
        except JournalError as exc:  # one line: an outage is said, not a traceback
            log.error(
                "run %s: cannot read its journal records (%s); handing it back", claim.run_id, exc
            )
            reason = (
                None if isinstance(exc, JournalUnreachable) else "the journal could not be read"
            )
            with contextlib.suppress(JournalError):  # still down: handed back when it answers
                self._hand_back(claim.run_id, claim.epoch, reason)
            return
        except Exception as exc:  # a row this code cannot make sense of: fail it, once
            log.exception("run %s: unreadable journal records", claim.run_id)
            self.journal.finish_run(
                claim.run_id,
                claim.epoch,
                status="failed",
                output=None,
                error=f"CorruptRecord: this run's steps in the journal cannot be "
                f"read ({error_text(exc)}); the row was damaged or edited by hand",
                traceback=None,
                now=time.time(),
            )
            return
        ex.body_threads = RunThreads(self.run_threads)
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
            # A server out of reach is not the run's doing: owed as a release (no crash).
            error = None if isinstance(exc, JournalUnreachable) else error_text(exc)
            try:
                self._hand_back(ex.run_id, ex.epoch, error)
            except JournalError as again:
                log.error(
                    "run %s: could not hand it back (%s); handing it back once the "
                    "journal answers (or its lease runs out)",
                    ex.run_id,
                    again,
                )
            except Exception:
                log.exception("run %s: could not hand it back", ex.run_id)
        finally:
            # Only our own entry: after a cancel and a retry this worker may already be
            # executing the run again under a new claim.
            if self.active.get(ex.run_id, (None,))[0] is ex:
                del self.active[ex.run_id]
            self.stragglers.ended(ex.run_id, ex.threads, ex.body_threads)
            self.wake_event.set()
        if outcome == "released":
            self._ready_work(peers=True)  # a reload's new workers take it at once
        log.debug("run %s %s", ex.run_id, outcome)

    def _ready_work(self, peers: bool = False) -> None:
        self.wake_event.set()
        if peers:
            now = time.time()
            if now - self._peers_at > 1.0:
                self._peers_at = now
                self._peers = [
                    w.wake_addr
                    for w in self.journal.live_workers(
                        now=now, stale_after=3 * self.settings.heartbeat_seconds
                    )
                    if w.id != self.id and w.wake_addr
                ]
            wake.poke(self._peers)

    def _on_poke(self) -> None:
        wake.drain(self.sock)
        self.wake_event.set()
        if self.active:
            try:
                lost = self._lost_runs()
            except JournalError:
                # A loop callback: raising printed a traceback per poke while the journal
                # was down. The heartbeat reports lost runs as well, once it is back.
                return
            self._drop_lost(lost)

    def _lost_runs(self) -> list[tuple[str, int]]:
        states = self.journal.lease_states(list(self.active))
        return [
            (rid, ex.epoch)
            for rid, (ex, _) in self.active.items()
            if states.get(rid, (None, None)) != (ex.epoch, "running")
        ]

    def _drop_lost(self, lost: list[tuple[str, int]]) -> None:
        """Runs cancelled or taken over: stop executing them now, write nothing more.

        By (run id, lease epoch): the heartbeat thread reports what it renewed a moment
        ago, and meanwhile this worker may have claimed the same run again (cancelled,
        then retried). Cancelling that new execution by its run id alone left the run
        'running' forever, its lease renewed by every heartbeat."""
        for rid, epoch in lost:
            entry = self.active.get(rid)
            if entry is not None and entry[0].epoch == epoch:
                entry[0].lost = True
                entry[1].cancel()

    # -- heartbeat ----------------------------------------------------------------------

    def _heartbeat(self, stop: threading.Event) -> None:
        # A method (the thread is named after it: tests/torture/iofault looks for it).
        renew_leases(self, stop)

    # -- stopping -----------------------------------------------------------------------

    def _check_stragglers(self) -> None:
        """A run's thread outlived its execution by the grace (a cancelled run's step that
        does not return): it holds a thread of the pool for good. Ask to be replaced; the
        other runs are handed back at their next step, as in any stop."""
        overdue = self.stragglers.overdue()
        if overdue is None or self.replace_me:
            return
        self.replace_me = True
        print(
            f"sylphrun worker: run {overdue} ended (cancelled or taken over) but a step of "
            f"it still runs in a thread {self.stragglers.grace:g} s later; replacing this "
            "worker to free the thread",
            file=sys.stderr,
            flush=True,
        )
        self.stop()

    def _journal_gone(self) -> None:
        """Our journal file was deleted or replaced: whatever we write goes nowhere anyone
        reads. Stop now, without the grace: there is nothing to hand back to."""
        if not self.journal_gone:
            self.journal_gone = True
            print(
                f"sylphrun worker: {journal_gone_message(self.settings.config.journal)}",
                file=sys.stderr,
                flush=True,
            )
        self.stop()
