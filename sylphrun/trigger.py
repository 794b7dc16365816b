"""Triggering runs and waiting for them.

Outside a run (a script, the CLI) a trigger just enqueues into the journal and pokes the
workers. Inside a run it is a journaled step: `runtime.in_run`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sylphrun import codec, model
from sylphrun.batching import CHUNK_PAUSE, chunks_of
from sylphrun.batching import batch_chunk as batch_chunk  # re-exported: bench/batch_children
from sylphrun.errors import InvalidPayload, JournalError
from sylphrun.flow import FlowOptions
from sylphrun.journal import Journal, JournalReader, as_journal, open_journal
from sylphrun.journal.types import RunSpec
from sylphrun.runtime.scope import current_scope

# Workers heartbeat every 2 s; one missed beat more and we call a worker gone.
WORKER_STALE_AFTER = 6.0


@dataclass(frozen=True)
class RunHandle:
    """A triggered run. `await handle.wait_for_completion()` gives its `RunResult`."""

    run_id: str
    task_id: str
    journal: Path | None = field(default=None, compare=False, repr=False)

    async def wait_for_completion(self, timeout: float | None = None) -> model.RunResult:
        """The run's result once it finishes. Inside a run the caller suspends meanwhile
        (no worker slot is held); outside, this polls the journal."""
        scope = current_scope.get()
        if scope is not None:
            from sylphrun.runtime.children import wait_for_run

            return await wait_for_run(scope.execution, self.run_id)
        journal = open_journal(self.journal or _script_journal(), create=False)
        try:
            return await wait_for_result(journal, self.run_id, timeout=timeout)
        finally:
            journal.close()

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "task_id": self.task_id}


@dataclass(frozen=True)
class BatchHandle:
    """The runs of one `batch_trigger`, in payload order."""

    runs: list[RunHandle]

    @property
    def run_ids(self) -> list[str]:
        return [h.run_id for h in self.runs]

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self):
        return iter(self.runs)

    def to_json(self) -> dict[str, Any]:
        return {"run_ids": self.run_ids}


# A payload is stored in the journal and replayed to every attempt; a few MB is a sign of
# a mistake (pass a path or an id instead), and would bloat every read of the run.
MAX_PAYLOAD_BYTES = 1_000_000
MAX_IDEMPOTENCY_KEY = 1_000


def encode_payload(payload: Any) -> str:
    """A run's payload is a JSON object; `None` means `{}`. The same checks for the CLI,
    the dashboard and a script: a limit that only the CLI applied was no limit."""
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidPayload(
            f"a payload must be a JSON object (a dict), not {type(payload).__name__}"
        )
    try:
        text = codec.dumps(payload, what="payload")
    except TypeError as exc:
        raise InvalidPayload(str(exc)) from None
    if len(text) > MAX_PAYLOAD_BYTES // 4 and len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidPayload(
            f"payload is {len(text.encode()):,} bytes as JSON; the limit is "
            f"{MAX_PAYLOAD_BYTES:,} (pass a file path or an id instead of the data)"
        )
    return text


def check_idempotency_key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise InvalidPayload(f"an idempotency key must be a non-empty string, not {key!r:.60}")
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidPayload(
            f"an idempotency key is at most {MAX_IDEMPOTENCY_KEY:,} characters, "
            f"not {len(key):,} (hash a longer one)"
        )
    if codec.clean_text(key) != key:
        raise InvalidPayload(f"idempotency key {key!r:.60} is not valid Unicode")
    return key


def check_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidPayload(
            f"a priority must be a whole number (higher starts first), not {priority!r:.60}"
        )
    return priority


def flow_of(task_id: str, journal: JournalReader | None = None) -> FlowOptions | None:
    """A task's flow options: from its definition in this process (a worker, a script
    that imported it), else as the workers registered them in the journal."""
    from sylphrun.define import registered_tasks

    found = registered_tasks().get(task_id)
    if found is not None:
        return found.flow
    record = journal.registered_tasks().get(task_id) if journal is not None else None
    return None if record is None else FlowOptions.from_options(task_id, record.options)


def flow_fields(
    flow: FlowOptions | None, payloads: Sequence[Any], priority: int
) -> list[dict[str, Any]]:
    """The `RunSpec` fields of each payload's run: its priority, and the keys its task's
    flow options take from it (evaluated now, stored on the run)."""
    return [{"priority": priority, **(flow.run_fields(p) if flow else {})} for p in payloads]


def _script_journal() -> Path:
    from sylphrun.config import journal_path_for_scripts

    return journal_path_for_scripts()


def poke_workers(journal: JournalReader) -> None:
    from sylphrun.runtime.wake import poke

    workers = journal.live_workers(now=time.time(), stale_after=WORKER_STALE_AFTER)
    poke(w.wake_addr for w in workers)


def enqueue(journal: Journal, specs: Sequence[RunSpec]) -> list[tuple[str, bool]]:
    """Create runs outside any run and wake the workers (a large batch in chunks, each its
    own transaction; the workers start on the first while the next are written)."""
    journal = as_journal(journal)  # a test or bench harness may still pass a Connection
    results: list[tuple[str, bool]] = []
    for n, chunk in enumerate(chunks_of(specs)):
        if n:
            time.sleep(CHUNK_PAUSE)
        done = journal.enqueue_runs(chunk, time.time())
        results += done
        if any(created for _, created in done):
            poke_workers(journal)
    return results


async def trigger(
    task_id: str, payload: Any = None, *, idempotency_key: str | None = None, priority: int = 0
) -> RunHandle:
    handles = await _trigger_many(
        task_id, [payload], idempotency_key=idempotency_key, batch=False, priority=priority
    )
    return handles[0]


async def batch_trigger(task_id: str, payloads: list[Any], *, priority: int = 0) -> BatchHandle:
    return BatchHandle(
        await _trigger_many(task_id, payloads, idempotency_key=None, batch=True, priority=priority)
    )


async def trigger_and_wait(
    task_id: str, payload: Any = None, *, idempotency_key: str | None = None, priority: int = 0
) -> model.RunResult:
    handle = await trigger(task_id, payload, idempotency_key=idempotency_key, priority=priority)
    scope = current_scope.get()
    if scope is None or scope.step_key is not None:
        return await handle.wait_for_completion()
    from sylphrun.runtime.in_run import journaled_wait

    return await journaled_wait(scope.execution, task_id, handle.run_id)


async def _trigger_many(
    task_id: str,
    payloads: list[Any],
    *,
    idempotency_key: str | None,
    batch: bool,
    priority: int = 0,
) -> list[RunHandle]:
    encoded = [encode_payload(p) for p in payloads]
    check_idempotency_key(idempotency_key)
    check_priority(priority)
    scope = current_scope.get()
    if scope is not None:
        # Imported here: a script or the CLI never loads the runtime (nor asyncio).
        from sylphrun.runtime.in_run import trigger_in_run

        fields = flow_fields(flow_of(task_id), payloads, priority)
        ids = trigger_in_run(scope, task_id, encoded, idempotency_key, batch, fields=fields)
        return [RunHandle(rid, task_id) for rid in ids]
    path = _script_journal()
    journal = open_journal(path)
    try:
        fields = flow_fields(flow_of(task_id, journal), payloads, priority)
        results = enqueue(
            journal,
            [
                RunSpec(task_id, p, idempotency_key, **f)
                for p, f in zip(encoded, fields, strict=True)
            ],
        )
    finally:
        journal.close()
    return [RunHandle(rid, task_id, path) for rid, _ in results]


async def _sleep(seconds: float) -> None:
    # asyncio is imported here, not at the top: `sylphrun trigger` without --wait never
    # runs a loop, and the import is a tenth of its start-up (bench/trigger_latency.py).
    import asyncio

    await asyncio.sleep(seconds)


async def wait_for_result(
    journal: JournalReader,
    run_id: str,
    *,
    timeout: float | None = None,
    poll: float = 0.005,
    on_no_workers: Any = None,
) -> model.RunResult:
    """Poll the journal until the run finishes (outside a run). `change_token` makes each
    idle poll a few microseconds; nothing is read until something was committed."""
    journal = as_journal(journal)  # a test or bench harness may still pass a Connection
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: int | None = None
    warned = False
    next_worker_check = 0.0
    while True:
        token = journal.change_token()
        if token != seen:
            seen = token
            attempt_status = journal.run_fields(run_id)
            if attempt_status[1] in model.TERMINAL_STATES:
                return journal.get_run(run_id).result()
        now = time.monotonic()
        if on_no_workers is not None and now >= next_worker_check:
            next_worker_check = now + 1.0
            if journal.replaced():
                # Deleted under us: the run can no longer finish where we look for it.
                raise JournalError(
                    f"the journal {journal.location} was deleted or replaced "
                    f"while waiting for {run_id}; it cannot finish there"
                )
            if not warned and not journal.live_workers(
                now=time.time(), stale_after=WORKER_STALE_AFTER
            ):
                on_no_workers()
                warned = True
        if deadline is not None and now >= deadline:
            raise TimeoutError(run_id)
        await _sleep(poll)
