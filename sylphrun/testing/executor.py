"""The in-process executor: the worker's claim-and-execute cycle on one event loop, with
the harness's virtual clock and step probe.

It claims runs from the journal and executes each through `runtime.run.execute`, the very
function a worker process runs (replay-or-record steps, suspension, retries, children,
compensations); only the loop around it is the harness's. When nothing is ready it moves
the virtual clock to the next time something is (a sleep's wake-up, a retry), so waits
cost no real time; the event loop runs on the same clock (`looptime`), so a task's
`timeout=` and asyncio timers in step code do not wait either. Each execution is claimed
under a worker id of its own, as if every run had a worker process to itself: a simulated
crash (`WorkerDied` from the probe) then kills the run that hit it and no other (siblings
sharing a real worker would die too, which would make a test's outcome depend on timing).
The dead "worker's" run is released through the journal exactly as the supervisor releases
a dead worker's (`release_worker_runs`, counted as a crash), then claimed again, and
resumes from its journaled steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sylphrun.journal.types import UNKNOWN_TASK_GRACE, TaskTerms
from sylphrun.runtime.crash_points import WorkerDied
from sylphrun.runtime.execution import Execution
from sylphrun.runtime.run import execute
from sylphrun.runtime.task_factory import task_factory
from sylphrun.runtime.threads import RunThreads
from sylphrun.testing.looptime import VirtualTimeLoop

if TYPE_CHECKING:
    from sylphrun.define import Task
    from sylphrun.journal import Journal
    from sylphrun.testing.clock import VirtualClock
    from sylphrun.testing.probe import StepProbe

# The harness's claims never expire on their own: the virtual clock can jump past any
# lease while an execution waits, and the harness would take its own runs over.
LEASE_SECONDS = 1e9
# Runs one in-process "worker" executes at once (a fan-out's children run side by side).
SLOTS = 1_000


class InProcessExecutor:
    def __init__(
        self,
        journal: Journal,
        clock: VirtualClock,
        probe: StepProbe,
        tasks: dict[str, Task],
        *,
        max_output: int,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self.probe = probe
        self.tasks = tasks
        self.max_output = max_output
        self.step_threads = ThreadPoolExecutor(32, thread_name_prefix="sylph-step")
        self.run_threads = ThreadPoolExecutor(32, thread_name_prefix="sylph-run")
        self._claims = 0  # worker ids: one per execution (see the module)
        self._worker_of: dict[Execution, str] = {}
        self.crashes: list[WorkerDied] = []

    def close(self) -> None:
        self.step_threads.shutdown(wait=False, cancel_futures=True)
        self.run_threads.shutdown(wait=False, cancel_futures=True)

    def run_until(self, done: Callable[[], bool], until: float | None = None) -> None:
        """Execute what is ready, moving the clock to each next ready time, until `done()`
        holds with nothing executing, nothing is left that could ever run, or (with
        `until`) the next ready time is past `until` (the clock then stops at `until`)."""

        def run() -> None:
            with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(self.clock)) as runner:
                runner.run(self._drive(done, until))

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            run()
            return
        # Called from an async test: the executor gets a loop of its own, in a thread.
        with ThreadPoolExecutor(1, thread_name_prefix="sylph-loop") as pool:
            pool.submit(run).result()

    async def _drive(self, done: Callable[[], bool], until: float | None) -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(task_factory)
        ready = asyncio.Event()
        active: dict[asyncio.Task, Execution] = {}
        unclaimable = 0
        try:
            while True:
                ready.clear()
                claimed, failed_unknown = self._claim(active, ready)
                if failed_unknown:
                    unclaimable = 0
                if active:
                    await self._wait_for_any(active, ready)
                    continue
                if done():
                    return
                nxt = self.journal.next_ready_at()
                now = self.clock.now()
                if nxt is None:
                    return
                if nxt <= now and not claimed:
                    # Ready but not claimable: a run of a task the harness does not know.
                    # Let the journal's grace pass, as a worker would, so it fails as
                    # UnknownTask instead of waiting for ever.
                    unclaimable += 1
                    if unclaimable > 1:
                        return
                    nxt = now + UNKNOWN_TASK_GRACE + 1
                if until is not None and nxt > until + 1e-6:  # float sums: a microsecond
                    return
                self.clock.advance_to(nxt)
        finally:
            for task in active:
                task.cancel()
            if active:
                await asyncio.wait(list(active))
            if until is not None:
                self.clock.advance_to(until)

    def _claim(
        self, active: dict[asyncio.Task, Execution], ready: asyncio.Event
    ) -> tuple[bool, bool]:
        """Claim and start what is ready: (anything claimed, any run failed as UnknownTask)."""
        now = self.clock.now()
        if not self.journal.has_ready_work(now):
            return False, False
        known = {
            t.id: TaskTerms(t.concurrency, t.timeout, t.source_fingerprint())
            for t in self.tasks.values()
        }
        claimed = failed = False
        while len(active) < SLOTS:
            self._claims += 1
            worker_id = f"sylph-test-{self._claims}"
            claims, unknown = self.journal.claim_runs(
                worker_id, 1, lease_seconds=LEASE_SECONDS, known_tasks=known, now=now
            )
            failed = failed or bool(unknown)
            if not claims:
                if unknown:
                    continue
                break
            claimed = True
            ex = Execution(
                self.journal,
                claims[0],
                self.tasks[claims[0].task_id],
                threads=RunThreads(self.step_threads),
                on_ready_work=lambda peers=False: ready.set(),
                clock=self.clock.now,
                max_output=self.max_output,
            )
            ex.body_threads = RunThreads(self.run_threads)
            ex.probe = self.probe
            task = asyncio.create_task(execute(ex), name=f"run {ex.run_id}")
            active[task] = ex
            self._worker_of[ex] = worker_id
        return claimed, failed

    async def _wait_for_any(
        self, active: dict[asyncio.Task, Execution], ready: asyncio.Event
    ) -> None:
        waiter = asyncio.ensure_future(ready.wait())
        try:
            finished, _ = await asyncio.wait([*active, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        for task in finished:
            if task is waiter or task not in active:
                continue
            ex = active.pop(task)
            worker_id = self._worker_of.pop(ex)
            exc = task.exception() if not task.cancelled() else None
            if isinstance(exc, WorkerDied):
                self._worker_died(exc, worker_id)
            elif exc is not None:
                raise exc  # a bug of sylphrun's (a worker would log it and requeue the run)

    def _worker_died(self, crash: WorkerDied, worker_id: str) -> None:
        """The in-process form of a SIGKILL: the execution ended writing nothing more;
        its run is released as the supervisor releases a dead worker's, counted as a
        crash, and is claimed again by the next turn of the loop."""
        self.crashes.append(crash)
        self.journal.release_worker_runs(
            worker_id, reason=f"sylph crash_at: {crash}", crashed=True, now=self.clock.now()
        )
