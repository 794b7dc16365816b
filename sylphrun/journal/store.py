"""Every write to the journal, under one name.

Each function is one short transaction under the fair write lock. Writes a worker makes
for a run it executes carry the lease epoch it claimed the run with, and check it in the
same transaction (`fence`): a worker that was paused past its lease (SIGSTOP, a long GC,
a suspended laptop) cannot overwrite the work of the worker that took the run over.

The writes live in modules along their seams: `lifecycle` (a run's life as its worker
writes it), `steps` (its steps and log), `user_actions` (cancel, retry, replay), `workers`
(registration, leases, dead workers' runs), `registry` (the tasks the workers can run),
and the pieces they share, `fence` and `transitions`. Callers depend on this one name
(`store.record_step_start(...)`) so the modules can move without touching them; the
modules show the seams.
"""

from sylphrun.journal.fence import LeaseLost
from sylphrun.journal.lifecycle import (
    UNKNOWN_TASK_GRACE,
    Claim,
    TaskTerms,
    claim_runs,
    enqueue_children,
    enqueue_runs,
    finish_run,
    release_run,
    requeue_after_error,
    schedule_retry,
    suspend_run,
)
from sylphrun.journal.registry import register_tasks
from sylphrun.journal.steps import (
    append_log,
    mark_step_diverged,
    note_step_change,
    record_completed_step,
    record_divergence,
    record_step_failure,
    record_step_interrupted,
    record_step_result,
    record_step_start,
    record_step_waiting,
    record_trigger_step,
)
from sylphrun.journal.transitions import MAX_CRASHES, RunSpec
from sylphrun.journal.user_actions import cancel_run, replay_run, retry_run, wake_run
from sylphrun.journal.workers import (
    doom_run,
    heartbeat,
    register_worker,
    release_worker_runs,
    unregister_worker,
)

__all__ = [
    "MAX_CRASHES",
    "UNKNOWN_TASK_GRACE",
    "Claim",
    "LeaseLost",
    "RunSpec",
    "TaskTerms",
    "append_log",
    "cancel_run",
    "claim_runs",
    "doom_run",
    "enqueue_children",
    "enqueue_runs",
    "finish_run",
    "heartbeat",
    "mark_step_diverged",
    "note_step_change",
    "record_completed_step",
    "record_divergence",
    "record_step_failure",
    "record_step_interrupted",
    "record_step_result",
    "record_step_start",
    "record_step_waiting",
    "record_trigger_step",
    "register_tasks",
    "register_worker",
    "release_run",
    "release_worker_runs",
    "replay_run",
    "requeue_after_error",
    "retry_run",
    "schedule_retry",
    "suspend_run",
    "unregister_worker",
    "wake_run",
]
