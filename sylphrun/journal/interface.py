"""What the runtime, the CLI, the dashboard and the user actions may ask of a journal.

A `Journal` speaks the domain (claim runs, record a step's result, park a run on its
children, cancel, the change feed since a cursor); no SQL and no driver type crosses it.
Its reads are `interface_reads.JournalReader`, for code that only follows the journal.
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

from sylphrun import model
from sylphrun.journal.interface_reads import JournalReader
from sylphrun.journal.types import (
    Claim,
    Created,
    RunSpec,
    ScheduleTick,
    SentEvent,
    TakenEvent,
    TaskTerms,
)


@runtime_checkable
class Journal(JournalReader, Protocol):
    """The journal of one project: its reads (`JournalReader`: runs, steps, logs, workers,
    the feed, the handle) and every write, grouped as the runs, the steps and logs of a
    running run, the workers, and the user's actions."""

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

    # -- workers and the tasks they run ----------------------------------------------------

    def register_worker(
        self,
        worker_id: str,
        *,
        pid: int,
        host: str,
        supervisor_pid: int | None,
        wake_addr: str | None,
        now: float,
    ) -> None:
        """A worker is alive (heartbeat `now`); workers stopped over a day ago are forgotten."""
        ...

    def heartbeat(
        self, worker_id: str, held: Mapping[str, int], *, lease_seconds: float, now: float
    ) -> list[str]:
        """Renew the worker's heartbeat and the leases of the runs it executes (`held`:
        run id -> epoch) to `now + lease_seconds`, in one transaction. Returns the held
        runs it no longer owns (cancelled, taken over), so it stops executing them. Runs
        not in `held` are not renewed, even if their lease names this worker."""
        ...

    def renew_leases_for(self, worker_id: str, *, lease_seconds: float, now: float) -> int:
        """The supervisor's renewal for a live worker whose heartbeat starves (a step
        holding the GIL): every running run it holds. Returns how many were renewed."""
        ...

    def unregister_worker(self, worker_id: str, now: float) -> None:
        """The worker stopped at `now`; no longer listed as live."""
        ...

    def release_worker_runs(
        self, worker_id: str, *, reason: str, crashed: bool, now: float
    ) -> tuple[list[str], list[str]]:
        """Every running run a dead or killed worker held, in one transaction: (requeued,
        failed). With `crashed`, each counts a crash; at `MAX_CRASHES` it is requeued doomed
        (it fails at the step in flight, after replaying, so its compensations run) and
        listed as failed; past it, failed at once."""
        ...

    def doom_run(
        self, run_id: str, *, error: str, now: float, worker_id: str | None = None
    ) -> bool:
        """A running run must fail with `error` at its next execution's stuck step (its
        worker is replaced for overrunning the timeout). With `worker_id`, only while that
        worker holds it. Returns whether the run was marked."""
        ...

    def register_tasks(
        self,
        records: Sequence[model.TaskRecord],
        *,
        registered_by: str,
        project_dir: str | None,
        now: float,
    ) -> bool:
        """Replace the registered tasks with `records` in one transaction. The same set
        registered already: False, nothing written."""
        ...

    # -- user actions (not fenced: they fence out the run's worker instead) ---------------

    def cancel_run(self, run_id: str, now: float) -> list[str]:
        """Cancel a run and its unfinished descendants in one transaction; returns their
        ids. Their open steps end 'cancelled' (a running one keeps an interrupted attempt),
        and each finishes as every finish does: the epoch bump fences out their workers.
        `UnknownRun`; `InvalidState` if it already finished."""
        ...

    def retry_run(self, run_id: str, now: float) -> None:
        """A failed or cancelled run queued again as a new attempt, ready at `now`,
        completed steps kept; a cancelled one revives its cancelled descendants, and each
        parent's counters forget them. `InvalidState`: not failed or cancelled, or it ran
        compensations (resuming would build on undone effects)."""
        ...

    def replay_run(self, run_id: str, *, from_step: str | None, now: float) -> str:
        """A new run of the same task and payload (`replay_of` = run_id); returns its id.
        With `from_step`, the completed steps before it are copied (`copied`), except those
        a compensation undid, which a WARNING log line of the new run names. `InvalidState`
        for a step the run does not have; `ReplayFromCompensation` for a compensation."""
        ...

    def wake_run(self, run_id: str, now: float) -> str:
        """A sleeping run, or one waiting for a retry, becomes ready at `now` (its sleeps
        end and its retrying steps are due at `now`), with an INFO log line saying so;
        returns what was woken. `InvalidState` when there is nothing to wake."""
        ...

    # -- user events (issue 14: send_event, wait_for_event, on_event, cancel_on) ----------

    def send_event(
        self,
        *,
        event_id: str | None,
        name: str,
        data: str,
        derived_id: bool = False,
        sent_by: str | None = None,
        now: float,
    ) -> SentEvent:
        """Record the event `name` with `data` (a JSON object as text) and act on it, in
        ONE transaction: every run with an open wait it matches becomes ready at `now`
        (fan-out: all of them), each registered task whose `on_event` names it gets a run
        with `data` as payload (keyed by the event: never twice), and every unfinished run
        of a task whose `cancel_on` names it and whose payload field equals the event's is
        cancelled as `cancel_run` does. An `event_id` sent before hands it back
        (`created=False`, nothing done again); with another name or data
        `EventIdConflict`, unless `derived_id`. Events are ordered by `seq`, which only
        grows."""
        ...

    def take_event(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        name: str,
        seq: int,
        run_attempt: int,
        event: str,
        match: dict | None,
        timeout_at: float | None,
        now: float,
    ) -> TakenEvent:
        """Fenced, ONE transaction. The wait step `key` consumes the first event named
        `event` whose data holds every key/value of `match`, among those sent after the
        run was created (not after the wait began: no race) and not consumed by another
        wait of the run; the step completes with it ("received"). Else, at or past
        `timeout_at`, it completes "timed_out". Else it is journaled 'waiting' with its
        wait open ("waiting"): a matching send makes the run ready."""

    # -- schedules (issue 15) ---------------------------------------------------------------

    def start_schedule(self, task_id: str, *, settled_through: float, now: float) -> bool:
        """A schedule seen for the first time: its state starts settled through
        `settled_through` (no catch-up of slots from before it existed). False, nothing
        written, if the task has a schedule state already."""
        ...

    def fire_schedule(
        self, task_id: str, ticks: Sequence[ScheduleTick], *, settled_through: float, now: float
    ) -> list[Created]:
        """One transaction: the ticks whose slot is after the schedule's settled time are
        enqueued (ready at `now`; a tick's idempotency key hands back the run of a slot
        fired already, whatever its payload), and the schedule is settled through
        `settled_through` (never moved backwards), its last slot and run updated. A paused
        schedule fires nothing and is left as it is. Returns the runs of the ticks fired."""
        ...

    def set_schedule_paused(self, task_id: str, paused: bool, *, now: float) -> bool:
        """Pause or resume a schedule (kept until changed; a task never seen gets a state
        settled through `now`). Resuming settles through `now`: slots of the pause are
        skipped, not caught up. Returns whether anything changed."""
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
