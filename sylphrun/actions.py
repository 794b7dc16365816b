"""What a user can do to runs: the one implementation behind the CLI and the dashboard.

Each function validates its input before anything touches the journal, so a bad request
changes nothing, then makes one journal write and wakes the workers.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sylphrun import model
from sylphrun.errors import InvalidPayload, SylphrunError, UnknownTask
from sylphrun.flow import FlowOptions
from sylphrun.journal import Journal, JournalReader, as_journal
from sylphrun.journal.types import RunSpec
from sylphrun.json_input import load_json_object
from sylphrun.trigger import (
    MAX_PAYLOAD_BYTES,
    check_idempotency_key,
    check_priority,
    encode_payload,
    enqueue,
    flow_fields,
    flow_of,
    poke_workers,
)

if TYPE_CHECKING:
    from sylphrun.config import Config


def parse_payload(text: str | None, *, example: str = """'{"order_id": 42}'""") -> dict[str, Any]:
    """A JSON object typed by a person, or a one-line error saying what is wrong, with
    `example` (how the CLI or the dialog wants it written)."""
    if text is None or text.strip() == "":
        return {}
    return load_json_object(
        text,
        what="payload",
        example=example,
        error=InvalidPayload,
        limit=MAX_PAYLOAD_BYTES,
    )


def known_tasks(
    config: Config,
    journal: JournalReader | None,
    *,
    want: str | None = None,
    note: Callable[[str], None] = lambda _: None,
) -> dict[str, model.TaskRecord]:
    """The tasks of a project, by id, as the workers registered them in the journal.

    The project's code is imported only when no worker has registered yet (`journal` None:
    no journal), or when `want` is not among the registered tasks (a task added since the
    workers imported the code): a syntax error in one task file, or a module that takes a
    second to import, must not break or slow down triggering the tasks the workers serve.
    `note` hears, after the fact, that the code was imported and why.
    """
    registered = journal.registered_tasks() if journal is not None else {}
    if registered and (want is None or want in registered):
        return registered
    from sylphrun.discover import discover, task_records

    where = ", ".join(config.tasks) or "(no `tasks` configured)"
    try:
        imported = {r.id: r for r in task_records(discover(config))}
    except SylphrunError:
        if registered:  # the registered view stands; `want` is simply not in it
            return registered
        raise
    if not registered:
        note(f"no worker has registered tasks in this journal yet; imported {where} to find them")
    elif registered and want in imported:
        note(f"task {want!r} is not registered by a worker yet; found it by importing {where}")
    return {**registered, **imported}


def require_task(tasks: Mapping[str, Any], task_id: str) -> Any:
    found = tasks.get(task_id)
    if found is not None:
        return found
    close = difflib.get_close_matches(task_id, list(tasks), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    known = (
        f" (known: {', '.join(sorted(tasks))})" if tasks and not close and len(tasks) <= 8 else ""
    )
    raise UnknownTask(f"unknown task {task_id!r}{hint}{known} (`sylphrun tasks` lists them)")


def trigger_run(
    journal: Journal,
    tasks: Mapping[str, Any],
    task_id: str,
    payload: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    priority: int = 0,
    flow: FlowOptions | None = None,
) -> tuple[str, bool]:
    """Start a run: (run id, created). With an idempotency key already used for this task,
    the existing run's id comes back and nothing new is created (so does a debounced
    trigger collapsing into a pending run). `flow`: the task's flow options, when its
    record's cannot be evaluated without its code (a callable key)."""
    record = require_task(tasks, task_id)
    encoded = encode_payload(payload)
    check_idempotency_key(idempotency_key)
    check_priority(priority)
    if flow is None:
        flow = task_flow(journal, task_id, record)
    [fields] = flow_fields(flow, [payload], priority)
    [(run_id, created)] = enqueue(journal, [RunSpec(task_id, encoded, idempotency_key, **fields)])
    return run_id, created


def task_flow(journal: JournalReader | None, task_id: str, record: Any) -> FlowOptions | None:
    """A task's flow options: from its registry record, its definition, or (a caller that
    knows only its id) wherever `trigger.flow_of` finds them."""
    if isinstance(record, model.TaskRecord):
        return FlowOptions.from_options(task_id, record.options)
    if isinstance(getattr(record, "flow", None), FlowOptions):
        return record.flow
    return flow_of(task_id, journal)


def flow_needing_code(
    config: Config, tasks: Mapping[str, Any], task_id: str, note: Callable[[str], None]
) -> FlowOptions | None:
    """A task whose flow-control key is a function: only its code can evaluate it, so the
    project is imported (said on stderr); None for every other task."""
    record = tasks.get(task_id)
    options = None if record is None else task_flow(None, task_id, record)
    if options is None or not options.needs_code():
        return None
    from sylphrun.discover import discover

    found = discover(config).get(task_id)
    note(
        f"task {task_id!r} takes a flow-control key from a function; imported "
        f"{', '.join(config.tasks)} to evaluate it"
    )
    return None if found is None else found.flow


def retry_run(journal: Journal, run_id: str) -> tuple[str, int]:
    """Resume a failed or cancelled run: (its full id, the attempt number it will run as)."""
    journal = as_journal(journal)  # the dashboard may still pass a Connection
    run_id = journal.resolve_run_id(run_id)
    journal.retry_run(run_id, time.time())
    poke_workers(journal)
    return run_id, journal.get_run(run_id).attempt


def replay_run(journal: Journal, run_id: str, *, from_step: str | None = None) -> str:
    journal = as_journal(journal)  # the dashboard may still pass a Connection
    run_id = journal.resolve_run_id(run_id)
    new_id = journal.replay_run(run_id, from_step=from_step, now=time.time())
    poke_workers(journal)
    return new_id


def cancel_run(journal: Journal, run_id: str) -> list[str]:
    journal = as_journal(journal)  # the dashboard may still pass a Connection
    run_id = journal.resolve_run_id(run_id)
    cancelled = journal.cancel_run(run_id, time.time())
    poke_workers(journal)  # a worker executing it notices at once, not at its next heartbeat
    return cancelled


def wake_run(journal: Journal, run_id: str) -> tuple[str, str]:
    """End a sleeping run's sleep, or a retry's back-off, now: (its full id, what was woken,
    e.g. "its sleep 'cool-down' ends now"). Journaled as a log line on the run."""
    journal = as_journal(journal)  # the dashboard may still pass a Connection
    run_id = journal.resolve_run_id(run_id)
    what = journal.wake_run(run_id, time.time())
    poke_workers(journal)  # an idle worker claims it at once, not at its next poll
    return run_id, what
