"""Every read of the journal. Returns `model` records; never writes.

One module per kind of reader: `runs`, `steps` (a run's steps and logs), `workers`
(workers, tasks, leases) and `feed` (what followers poll). Everything is importable from
here, as `queries.get_run`, whichever module defines it.
"""

from sylphrun.journal.queries.feed import (
    STATE_CHANGE_KINDS,
    JournalCursor,
    RunSummary,
    events_since,
    last_event_id,
    log_lines_after,
    run_state_changes,
    run_summaries,
    run_summaries_by_ids,
    runs_with_payload_text,
    step_changes,
)
from sylphrun.journal.queries.runs import (
    children_of,
    children_results,
    get_run,
    has_ready_work,
    integrity_check,
    list_runs,
    next_ready_at,
    resolve_run_id,
    run_attempts,
    run_fields,
    run_results,
    status_counts,
)
from sylphrun.journal.queries.steps import (
    JournaledStep,
    StepChange,
    logs_of,
    replay_state,
    step_tries_in_attempt,
    steps_of,
)
from sylphrun.journal.queries.workers import (
    lease_holder,
    lease_states,
    live_workers,
    overdue_runs,
    registered_tasks,
)

__all__ = [
    "JournalCursor",
    "JournaledStep",
    "RunSummary",
    "STATE_CHANGE_KINDS",
    "StepChange",
    "children_of",
    "children_results",
    "events_since",
    "get_run",
    "has_ready_work",
    "integrity_check",
    "last_event_id",
    "lease_holder",
    "lease_states",
    "list_runs",
    "live_workers",
    "log_lines_after",
    "logs_of",
    "next_ready_at",
    "overdue_runs",
    "registered_tasks",
    "replay_state",
    "resolve_run_id",
    "run_attempts",
    "run_fields",
    "run_results",
    "run_state_changes",
    "run_summaries",
    "run_summaries_by_ids",
    "runs_with_payload_text",
    "status_counts",
    "step_changes",
    "step_tries_in_attempt",
    "steps_of",
]
