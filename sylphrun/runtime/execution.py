"""An `Execution`: one claim of one run by one worker, and what this attempt did.

The task function runs from the top at every execution; the journal read at the start
(`journal`) answers each replayed step. The parts with a job of their own live beside it:
the suspension barrier (`runtime.barrier`), child results (`runtime.children`), coalesced
events (`runtime.notices`) and the divergence checks (`runtime.divergence`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from sylphrun import codec, model
from sylphrun.errors import JournalError
from sylphrun.journal.interface import Journal
from sylphrun.journal.types import Claim, JournaledStep
from sylphrun.runtime.barrier import Barrier
from sylphrun.runtime.children import Children
from sylphrun.runtime.notices import Notices
from sylphrun.runtime.signals import journal_guard

if TYPE_CHECKING:
    from sylphrun.define import Task

log = logging.getLogger("sylphrun.worker")


class Execution:
    """One claim of one run: the journal's view of its steps plus what this attempt did."""

    # The test harness's step probe (`sylphrun.testing.probe.StepProbe`: mocks, call
    # counts, in-process crash points), set on an execution by the harness only. A class
    # attribute, so a worker's step path pays one attribute test and nothing else.
    probe: Any = None

    def __init__(
        self,
        store: Journal,
        claim: Claim,
        task: Task,
        *,
        threads: Executor,
        on_ready_work: Callable[..., None] = lambda peers=False: None,
        clock: Callable[[], float] = time.time,
        max_output: int = codec.DEFAULT_MAX_OUTPUT,
    ) -> None:
        # The journal this execution reads and writes; `journal` below is what it held of
        # the run's steps when the execution began (the replay state).
        self.store = store
        self.claim = claim
        self.task = task
        self.run_id = claim.run_id
        self.epoch = claim.epoch
        self.attempt = claim.attempt
        self.threads = threads
        # Plain `def` task functions block a thread for the whole run: a pool of their own,
        # or runs waiting on their steps could take every thread their steps need.
        self.body_threads: Executor = threads
        self.on_ready_work = on_ready_work
        self.clock = clock
        # The time now, for the journal: the clock itself rather than a method calling it
        # (read twice on every step's path).
        self.now: Callable[[], float] = clock
        # The config's `max_step_output`: a larger result fails its step, not retried.
        self.max_output = max_output
        self.loop = asyncio.get_running_loop()
        self.journal: dict[str, JournaledStep] = store.replay_state(claim.run_id)
        self._next_seq = max((s.seq for s in self.journal.values()), default=0)
        self._name_counts: Counter[str] = Counter()
        self._issued: set[str] = set()
        self.doom: str | None = claim.doom
        # Set when the worker learns the run is no longer ours (cancelled, taken over).
        self.lost = False
        self.releasing = False
        self.barrier = Barrier(self.loop)
        # The barrier's own collections, under the names the worker and `run` read.
        self.running = self.barrier.running
        self.pending_children = self.barrier.pending_children
        self.wake_times = self.barrier.wake_times
        self.children = Children(store, claim.run_id)
        self.compensations: list[tuple[str, str, Callable[..., Any], Any]] = []
        self.triggers_in_step: Counter[str] = Counter()
        # Set once the task function has ended: see `runtime.drain`.
        self.draining = False
        self.drained: asyncio.Future[None] | None = None
        self._start_divergence_notes(claim, task)
        self.thread_steps = 0
        self.notices = Notices(self.loop, self._note_step_change, lambda: self.lost)

    def _start_divergence_notes(self, claim: Claim, task: Task) -> None:
        """The state of the divergence notes (`runtime.divergence`): taken only when the
        code changed since the run last executed."""
        self.code_changed = (
            claim.previous_fingerprint is not None
            and claim.previous_fingerprint != task.source_fingerprint()
        )
        self.journal_order = [
            k
            for k, s in sorted(self.journal.items(), key=lambda kv: kv[1].seq)
            if s.status == model.STEP_COMPLETED and s.kind in (model.STEP, model.COMPENSATION)
        ]
        self.called: set[str] = set()
        self.diverged = False

    # -- keys and sequence --------------------------------------------------------------

    def next_key(self, name: str) -> str:
        """`name`, then `name#2`, `name#3`...: assigned at call time, so deterministic."""
        self._name_counts[name] += 1
        n = self._name_counts[name]
        key = name if n == 1 else f"{name}#{n}"
        # A user's own name may look like a generated key ("a#2"): skip keys handed out
        # already in this execution. Still deterministic: the same calls give the same keys.
        while key in self._issued:
            self._name_counts[name] += 1
            key = f"{name}#{self._name_counts[name]}"
        self._issued.add(key)
        return key

    def seq_for(self, key: str) -> int:
        rec = self.journal.get(key)
        if rec is not None:
            return rec.seq
        self._next_seq += 1
        return self._next_seq

    # -- steps in flight ----------------------------------------------------------------

    @property
    def suspending(self) -> bool:
        return self.barrier.suspending

    def step_finished(self, key: str) -> None:
        self.barrier.step_finished(key)
        if self.drained is not None and not self.drained.done():
            # Wakes `drain` after this task's current run: the step's outcome (result,
            # failure, undo registration) is journaled synchronously right after this.
            self.drained.set_result(None)

    # -- the run's log and events -------------------------------------------------------

    def warn(self, message: str) -> None:
        with journal_guard():
            self.store.append_log(
                self.run_id,
                level="WARNING",
                message=codec.clean_text(message),
                step_key=None,
                now=self.now(),
                epoch=self.epoch,
            )
        # INFO: the journaled line is the warning (`dev --no-tui` prints it in its format).
        log.info("run %s: %s", self.run_id, message)

    def _note_step_change(self, key: str, status: str) -> None:
        try:
            self.store.note_step_change(
                self.run_id, self.epoch, key=key, status=status, now=self.now()
            )
        except JournalError:
            pass  # only a hint to readers: the run's next event makes them look again
