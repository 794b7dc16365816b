"""What the runtime, the CLI, the dashboard and the user actions may ask of a journal.

A `Journal` speaks the domain (claim runs, record a step's result, park a run on its
children, cancel, the change feed since a cursor); no SQL and no driver type crosses it.
Its reads are `interface_reads.JournalReader`, for code that only follows the journal.
Its writes for workers and for features (user actions, events, schedules) are declared
in `interface_workers.py` and `interface_features.py`; `Journal` extends both.
`sqlite_journal.SqliteJournal` is the first implementation; a PostgreSQL one must honour
the same contracts, and `tests/journal/` is the suite both run.

Contracts every backend keeps (the methods' docstrings refer to them):

- **Time is an argument.** Every method that depends on the time takes `now` (seconds since
  the epoch, float); a backend never reads the clock for journal state. Tests inject it.
- **One call, one transaction.** Each write is atomic: after a crash either all of it is
  in the journal or none of it. Several processes call concurrently; a write never fails
  because another holds a lock (it waits its turn).
- **Fenced.** A write a worker makes for a run it executes takes the `epoch` its `Claim`
  carried and checks, in the same transaction, that the run is still `running` under that
  epoch; otherwise it writes nothing and raises `LeaseLost`. Claiming, releasing, retrying,
  cancelling and finishing a run each bump its epoch.
- **Finishing wakes.** When a run finishes (completed, failed, cancelled), in the same
  transaction: its parent's children counters move, its parked waiters whose last child it
  was become ready at `now`, its own waits are dropped, and its steps still 'running' end
  'interrupted' with an attempt saying why.
- **The change feed.** Every run status change, every step change other than a step's
  start and result (those announce themselves when asked: `notify`), and every log line
  appends an `Event`, in the transaction that made the change. Ids become visible in
  increasing order: once a reader has seen id N, no event with an id <= N appears later.
  (SQLite's single writer gives this for free; a sequence in PostgreSQL does not, since a
  transaction can commit after a later one that took a larger id: that backend must
  serialize event ids with the commit, or cursors skip events.) Log ids likewise.
- **Errors a user can cause** are named exceptions from `sylphrun.errors`: `UnknownRun`,
  `InvalidState`, `ReplayFromCompensation`, `IdempotencyConflict`; a journal that cannot
  be opened or written raises `JournalError` with one line saying what to do.

Payloads, outputs and step outputs cross as JSON text (the codec runs at the caller);
reads return `model` records with JSON decoded, except `replay_state`, which leaves step
outputs as text for the runtime to decode only the steps it replays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from sylphrun.journal.interface_features import JournalFeatures
from sylphrun.journal.interface_reads import JournalReader
from sylphrun.journal.interface_workers import JournalWorkers
from sylphrun.journal.types import (
    Claim,
    Created,
    RunSpec,
    TaskTerms,
)


@runtime_checkable
class Journal(JournalReader, JournalWorkers, JournalFeatures, Protocol):
    """The journal of one project: its reads (`JournalReader`: runs, steps, logs, workers,
    the feed, the handle) and every write, grouped as the runs, the steps and logs of a
    running run (here), the workers (`JournalWorkers`), and the user's actions, events
    and schedules (`JournalFeatures`)."""

    # -- runs: created, claimed, parked, finished ------------------------------------------

    def enqueue_runs(self, specs: Sequence[RunSpec], now: float) -> list[Created]:
        """Create runs from outside any run (the CLI, a script), queued and ready at `now`,
        all in one transaction. A spec whose (task, idempotency key) exists hands back that
        run (`created=False`) if its payload is the same JSON (key order aside); another
        payload raises `IdempotencyConflict` and nothing of the batch is written.
        A spec with `debounce` (and no idempotency key) whose key has a run still
        debouncing (queued, never started, not yet ready) collapses into it: that run
        takes this payload and becomes ready at `now + period`, never later than its
        creation + `max_wait`, and is handed back with `created=False`; otherwise the new
        run is ready only after its period. `priority` and the keys are stored as given."""
        ...

    def enqueue_children(
        self, run_id: str, epoch: int, specs: Sequence[RunSpec], now: float
    ) -> list[Created]:
        """Fenced. Children of `run_id` created inside a step function; the parent's
        `children_total` grows by the ones created (not the ones a key handed back). A
        derived key (`RunSpec.derived_key`) hands back its run whatever the payload."""
        ...

    def claim_runs(
        self,
        worker_id: str,
        limit: int,
        *,
        lease_seconds: float,
        known_tasks: Mapping[str, TaskTerms],
        now: float,
    ) -> tuple[list[Claim], list[str]]:
        """Claim up to `limit` runs for `worker_id`, in one transaction: (claims, ids of
        runs failed as unknown tasks).

        Claimable: runs ready at or before `now` (highest `priority` first, oldest
        `ready_at` first within a priority), then running runs whose lease expired before
        `now` (their worker froze or died). A task's `concurrency` caps its runs with a
        live lease; `key_concurrency` caps them per `concurrency_key`; `rate_limit` caps
        the first starts per `rate_key` in any `rate_period` seconds (each start is
        recorded, in the same transaction). Runs held back by a limit stay queued, and
        never keep a run behind them from being claimed (limits hold across processes:
        see `journal/flow.py` for what a backend must lock). A run of a task not in `known_tasks`
        is left to other workers until it has been ready `UNKNOWN_TASK_GRACE` seconds, then
        failed as unknown. A worker holds at most one run that crashed a worker before.
        Each claim bumps the epoch, sets the lease to `now + lease_seconds` and the timeout
        deadline, records the code fingerprint (the previous one is in the `Claim`), and
        ends the run's steps still 'running' as interrupted."""
        ...

    def keyed_batch_children(self, run_id: str, step_key: str) -> list[str]:
        """The children a large batch-trigger step created, in payload order (the step
        keeps only their count; their idempotency keys end with their index)."""
        ...

    def suspend_run(
        self,
        run_id: str,
        epoch: int,
        *,
        children: Sequence[str],
        wake_at: float | None,
        now: float,
    ) -> None:
        """Fenced. Park a run on `children` and/or until `wake_at`, freeing its lease. Waits
        are taken only on children still unfinished, atomically with the finishing child's
        wake-up, so no wake-up is lost; all finished already: ready at `now`. An open
        event wait (`take_event`) whose event was sent meanwhile: ready at `now`. Steps
        'running' go 'waiting' with the run (resuming them is not a new attempt)."""
        ...

    def release_run(self, run_id: str, epoch: int, now: float) -> None:
        """Give a run back to the queue, ready at `now`, no crash counted (shutdown,
        reload). A run this epoch no longer owns is left alone, silently."""
        ...

    def requeue_after_error(self, run_id: str, epoch: int, *, error: str, now: float) -> bool:
        """An error of sylphrun's own while executing: requeued after a short growing pause
        and counted as a crash; failed (InternalError, with `error`) at `MAX_CRASHES`.
        Returns True if it failed. A run this epoch no longer owns: False, nothing written."""
        ...

    def finish_run(
        self,
        run_id: str,
        epoch: int,
        *,
        status: str,
        output: str | None,
        error: str | None,
        traceback: str | None,
        now: float,
    ) -> None:
        """Fenced. The run ends `status`; not completed: its attempt is kept in the run's
        attempt log. Wakes as every finish does (see the module's contracts)."""
        ...

    def schedule_retry(
        self,
        run_id: str,
        epoch: int,
        *,
        error: str,
        traceback: str | None,
        retry_at: float,
        now: float,
    ) -> None:
        """Fenced. A failed attempt with attempts left: the attempt is logged as failed,
        the run queued as attempt + 1, claimable from `retry_at`, steps kept."""
        ...

    # -- steps and logs of a running run (the hot path: no extra reads) --------------------

    def record_step_start(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        name: str,
        kind: str,
        seq: int,
        run_attempt: int,
        now: float,
        notify: bool = True,
        fn: str | None = None,
        args_hash: str | None = None,
    ) -> None:
        """Fenced, in the same statement. A step is about to run: created 'running', or
        restarted (a retried or interrupted step counts one more attempt; a parked one
        does not). Need not be durable until the next durable write. `notify=False`: no
        event (a later `note_step_change` announces it)."""
        ...

    def record_step_result(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        output: str,
        now: float,
        compensate: str | None = None,
        notify: bool = True,
    ) -> None:
        """Fenced. The started step completed with `output`; `compensate` names its undo.
        No start record for it: RuntimeError (a bug, not a lost lease)."""
        ...

    def note_step_change(
        self, run_id: str, epoch: int, *, key: str, status: str, now: float
    ) -> None:
        """Fenced (a stale one writes nothing, silently). The event for step changes
        written without one; need not be durable."""
        ...

    def record_step_failure(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        error: str,
        traceback: str | None,
        retry_at: float | None,
        fatal: bool = False,
        now: float,
    ) -> None:
        """Fenced. A failed attempt, kept in the step's attempt log: 'retrying' at
        `retry_at`, or 'failed' (None) for this run attempt."""
        ...

    def record_step_interrupted(
        self, run_id: str, epoch: int, *, key: str, reason: str, now: float
    ) -> None:
        """Fenced. A running step ended with no result while its run goes on: an
        'interrupted' attempt saying `reason`."""
        ...

    def record_step_waiting(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        name: str,
        kind: str,
        seq: int,
        run_attempt: int,
        output: str,
        now: float,
    ) -> None:
        """Fenced. A sleep or wait step begun; `output` says what it waits for (a sleep's
        `{"wake_at": t}`). An existing step of that key is left as it is."""
        ...

    def record_completed_step(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        name: str,
        kind: str,
        seq: int,
        run_attempt: int,
        output: str,
        started_at: float,
        now: float,
    ) -> None:
        """Fenced. A step whose start and result are written together (a wait answered)."""
        ...

    def record_trigger_step(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        name: str,
        seq: int,
        run_attempt: int,
        specs: Sequence[RunSpec],
        output_of: Callable[[list[str]], str],
        now: float,
        list_children: bool = True,
    ) -> tuple[list[str], str]:
        """Fenced. A trigger step: its children (as `enqueue_children`) and the completed
        step, whose output is `output_of(child ids)`, in ONE transaction, so a resumed
        parent never creates them twice. Returns (child ids, output)."""
        ...

    def mark_step_diverged(self, run_id: str, epoch: int, *, key: str, error: str | None) -> None:
        """Fenced. Mark a completed step as where the code diverged (`error`), or clear the
        mark (None); its journaled result stays."""
        ...

    def record_divergence(
        self, run_id: str, epoch: int, *, key: str, error: str, now: float
    ) -> None:
        """Fenced. In one transaction: the step marked diverged, the run failed with
        `error` (no retry scheduled)."""
        ...

    def append_log(
        self,
        run_id: str,
        *,
        level: str,
        message: str,
        step_key: str | None,
        now: float,
        epoch: int | None = None,
    ) -> None:
        """A log line of a run, with its event. With `epoch`, fenced like the run's other
        writes; without (a user action, the supervisor), written whoever holds the run."""
        ...

    # -- wake-ups from the journal itself (issue 17: PostgreSQL's LISTEN/NOTIFY) ------------

    def work_listener(self) -> WorkListener | None:
        """A listener that wakes when a run becomes claimable, from any process on any
        host (its own connection: close it), or None where the journal has none (SQLite:
        its workers are woken by datagrams, `runtime.wake`). Best effort either way: a
        worker keeps its timed poll as the fallback."""
        ...


class WorkListener(Protocol):
    """What `Journal.work_listener` returns: a descriptor readable when work may have been
    announced, so a worker's event loop can wait on it beside its other descriptors."""

    def fileno(self) -> int: ...

    def wait(self, timeout: float) -> bool:
        """Whether work was announced within `timeout` seconds (0: only what has arrived);
        every pending announcement is consumed. Raises `JournalError` if the connection
        is lost."""
        ...

    def close(self) -> None: ...


__all__ = ["Journal", "JournalReader", "WorkListener"]
