"""`ctx.step.wait_for_event`, `ctx.step.sleep_until` and `send_event` inside a run.

A wait is a journaled step of kind `wait`. Taking an event and completing the step are
one transaction (the journal's `take_event`), so a retried or replayed run gets the
same data and no event is consumed twice. With nothing to take, the step is journaled
waiting and the run parks like a sleep (no worker held): until a matching send makes it
ready, or until its timeout, the wake time of the park. The park itself looks once more
(`suspend_run`): an event sent between the look and the park makes the run ready.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sylphrun import codec, model
from sylphrun.errors import CorruptRecord, InvalidEvent
from sylphrun.events import EventSent, check_event_name, check_match, deliver
from sylphrun.journal.types import JournaledStep
from sylphrun.runtime.execution import Execution
from sylphrun.runtime.scope import Scope, current_step_key
from sylphrun.runtime.signals import Release, Settled, Suspend, journal_guard


async def wait_for_event(
    ex: Execution, name: str, event: str, match: Any, timeout: Any
) -> dict | None:
    """The data of the first matching event sent since the run was triggered, or None once
    `timeout` seconds passed first."""
    check_event_name(event)
    match = check_match(match)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0
    ):
        raise InvalidEvent(
            f"wait_for_event {name!r}: timeout must be seconds (a number >= 0) "
            f"or None, not {timeout!r:.60}"
        )
    key = ex.next_key(name)
    rec = ex.journal.get(key)
    if rec is not None and rec.status == model.STEP_COMPLETED:
        return _data_of(key, rec.output)
    with journal_guard():
        return await _wait(ex, key, name, event, match, timeout, rec)


async def _wait(
    ex: Execution,
    key: str,
    name: str,
    event: str,
    match: dict | None,
    timeout: float | None,
    rec: JournaledStep | None,
) -> dict | None:
    if ex.releasing:
        raise Release()
    if ex.suspending:
        raise Suspend()
    if rec is not None and rec.output:
        timeout_at = _loads(key, rec.output).get("timeout_at")  # fixed when the wait began
    elif ex.draining:
        raise Settled()
    else:
        timeout_at = None if timeout is None else ex.now() + float(timeout)
    seq = ex.seq_for(key)
    taken = ex.store.take_event(
        ex.run_id,
        ex.epoch,
        key=key,
        name=name,
        seq=seq,
        run_attempt=ex.attempt,
        event=event,
        match=match,
        timeout_at=timeout_at,
        now=ex.now(),
    )
    status = model.STEP_WAITING if taken.outcome == "waiting" else model.STEP_COMPLETED
    ex.journal[key] = JournaledStep(
        status, model.WAIT, taken.output, None, 1, ex.attempt, seq, None, False
    )
    if taken.outcome != "waiting":
        return _data_of(key, taken.output)
    if timeout_at is not None:
        ex.wake_times.append(timeout_at)
    ex.barrier.pending_events.add(key)
    await ex.barrier.block(current_step_key())
    return None  # pragma: no cover - block raises Suspend


def _data_of(key: str, output: str | None) -> dict | None:
    return _loads(key, output).get("data")


def _loads(key: str, output: str | None) -> dict:
    try:
        value = json.loads(output) if output is not None else {}
    except ValueError as exc:
        raise CorruptRecord(
            f"the journaled output of wait step {key!r} is not valid JSON "
            f"({exc}); the row was damaged or edited by hand"
        ) from None
    return value if isinstance(value, dict) else {}


def sleep_until_seconds(ex: Execution, name: str, when: Any) -> float:
    """`when` (an aware datetime or a Unix timestamp) as seconds from now."""
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                f"sleep_until {name!r}: the datetime {when.isoformat()} has no "
                "timezone; pass an aware one (datetime.now(timezone.utc), "
                "ZoneInfo(...))"
            )
        at = when.timestamp()
    elif isinstance(when, (int, float)) and not isinstance(when, bool):
        at = float(when)
    else:
        raise TypeError(
            f"sleep_until {name!r}: when must be a timezone-aware datetime or a "
            f"Unix timestamp, not {type(when).__name__}"
        )
    return at - ex.now()


def send_in_run(scope: Scope, name: str, text: str, event_id: str | None) -> EventSent:
    """In the task body: the `send-event:<name>` step, completed after the send. Its id
    (the user's, or one derived from the step) makes a send repeated after a crash between
    the two commits a no-op. Inside a step function: an id derived from the step."""
    ex = scope.execution
    with journal_guard():
        if scope.step_key is not None:
            counter = f"{scope.step_key}\0send-event"
            n = ex.triggers_in_step[counter]
            ex.triggers_in_step[counter] += 1
            derived = f"{ex.run_id}:{scope.step_key}:send:{n}"
            return _send(ex, name, text, event_id or derived, event_id is None)
        step = f"send-event:{name}"
        key = ex.next_key(step)
        rec = ex.journal.get(key)
        if rec is not None and rec.status == model.STEP_COMPLETED:
            done = _loads(key, rec.output)
            return EventSent(
                done.get("event_id", ""),
                done.get("matched_runs", []),
                done.get("triggered_runs", []),
                done.get("cancelled_runs", []),
            )
        sent = _send(ex, name, text, event_id or f"{ex.run_id}:{key}", event_id is None)
        seq = ex.seq_for(key)
        now = ex.now()
        output = codec.dumps(sent.to_json())
        ex.store.record_completed_step(
            ex.run_id,
            ex.epoch,
            key=key,
            name=step,
            kind=model.TRIGGER,
            seq=seq,
            run_attempt=ex.attempt,
            output=output,
            started_at=now,
            now=now,
        )
        ex.journal[key] = JournaledStep(
            model.STEP_COMPLETED, model.TRIGGER, output, None, 1, ex.attempt, seq, None, False
        )
        return sent


def _send(ex: Execution, name: str, text: str, event_id: str, derived: bool) -> EventSent:
    sent = deliver(
        ex.store, name, text, event_id, derived_id=derived, sent_by=ex.run_id, poke=False
    )
    if sent.matched_runs or sent.triggered_runs or sent.cancelled_runs:
        ex.on_ready_work(peers=True)
    return sent
