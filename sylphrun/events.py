"""User events: `send_event` from a script or a run, `CancelOn`, and the checks the CLI,
the SDK and the runtime share (an event name, its data, a `match`).

    await sylphrun.send_event("order.approved", {"order_id": 42})

Outside a run the event is written to the journal of the current folder's config (or
`$SYLPHRUN_JOURNAL`) and the workers are poked; inside a run it is a journaled step
(`runtime.event_waits`): a retried run does not send it twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sylphrun import codec
from sylphrun.errors import InvalidEvent

if TYPE_CHECKING:
    from sylphrun.journal.interface import Journal

# Event data is a run's payload when an `on_event` task takes it: the same limit.
MAX_EVENT_BYTES = 1_000_000
MAX_NAME = 200


@dataclass(frozen=True)
class CancelOn:
    """`@task(cancel_on=[CancelOn("order.cancelled", match="order_id")])`: the event
    `event` whose field `match` equals the run's `payload[match]` cancels the run."""

    event: str
    match: str

    def __post_init__(self) -> None:
        check_event_name(self.event)
        if not isinstance(self.match, str) or not self.match:
            raise InvalidEvent(
                f"CancelOn({self.event!r}): match must name a payload field "
                f"(a non-empty string), not {self.match!r:.60}"
            )

    def to_json(self) -> dict[str, str]:
        return {"event": self.event, "match": self.match}


@dataclass(frozen=True)
class EventSent:
    """What `send_event` did: the event's id (`created` False: that id was sent before),
    the runs it woke, triggered (`on_event`) and cancelled (`cancel_on`)."""

    event_id: str
    matched_runs: list[str] = field(default_factory=list)
    triggered_runs: list[str] = field(default_factory=list)
    cancelled_runs: list[str] = field(default_factory=list)
    created: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "matched_runs": self.matched_runs,
            "triggered_runs": self.triggered_runs,
            "cancelled_runs": self.cancelled_runs,
        }


def check_event_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidEvent(f"an event name must be a non-empty string, not {name!r:.60}")
    if len(name) > MAX_NAME or codec.clean_text(name) != name or not name.isprintable():
        raise InvalidEvent(
            f"event name {name!r:.60} must be printable text of at most {MAX_NAME} characters"
        )
    return name


def encode_event_data(data: Any) -> str:
    """Event data is a JSON object (None: `{}`), at most `MAX_EVENT_BYTES` as JSON."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidEvent(f"event data must be a JSON object (a dict), not {type(data).__name__}")
    try:
        text = codec.dumps(data, what="event data")
    except TypeError as exc:
        raise InvalidEvent(str(exc)) from None
    if len(text) > MAX_EVENT_BYTES // 4 and len(text.encode()) > MAX_EVENT_BYTES:
        raise InvalidEvent(
            f"event data is {len(text.encode()):,} bytes as JSON; the limit is "
            f"{MAX_EVENT_BYTES:,} (send an id or a path instead of the data)"
        )
    return text


def check_event_id(event_id: Any) -> str | None:
    if event_id is None:
        return None
    if not isinstance(event_id, str) or not event_id or len(event_id) > 1_000:
        raise InvalidEvent(
            f"an event id must be a non-empty string of at most 1,000 "
            f"characters, not {event_id!r:.60}"
        )
    if codec.clean_text(event_id) != event_id:
        raise InvalidEvent(f"event id {event_id!r:.60} is not valid Unicode")
    return event_id


_SCALARS = (str, int, float, bool, type(None))


def check_match(match: Any) -> dict | None:
    """`match`: None, or a dict of field name -> JSON scalar (equality on that field)."""
    if match is None:
        return None
    if not isinstance(match, dict):
        raise InvalidEvent(f"match must be a dict of field -> value, not {type(match).__name__}")
    for key, value in match.items():
        if not isinstance(key, str) or not key:
            raise InvalidEvent(
                f"match keys must be field names (non-empty strings), not {key!r:.60}"
            )
        if not isinstance(value, _SCALARS):
            raise InvalidEvent(
                f"match[{key!r}] must be a string, number, bool or None, not {type(value).__name__}"
            )
    codec.dumps(match, what="match")  # NaN and the like: refused here, not in the journal
    return match


async def send_event(event: str, data: dict | None = None, *, id: str | None = None) -> EventSent:
    """Send the event `event` with `data` (a JSON object). Every run waiting for it
    (`ctx.step.wait_for_event`) whose `match` it satisfies gets it, `on_event` tasks get a
    run, `cancel_on` runs are cancelled. `id` makes sending idempotent: the same id again
    does nothing more and returns the first send's ids."""
    name = check_event_name(event)
    text = encode_event_data(data)
    event_id = check_event_id(id)
    from sylphrun.runtime.scope import current_scope

    scope = current_scope.get()
    if scope is not None:
        from sylphrun.runtime.event_waits import send_in_run

        return send_in_run(scope, name, text, event_id)
    from sylphrun.journal import open_journal
    from sylphrun.trigger import _script_journal

    journal = open_journal(_script_journal())
    try:
        return deliver(journal, name, text, event_id)
    finally:
        journal.close()


def deliver(
    journal: Journal,
    name: str,
    text: str,
    event_id: str | None,
    *,
    derived_id: bool = False,
    sent_by: str | None = None,
    poke: bool = True,
) -> EventSent:
    """Write the event (checked already) and poke the workers when it woke, triggered or
    cancelled runs: a run waiting for it resumes at once, not at the next poll."""
    sent = journal.send_event(
        event_id=event_id,
        name=name,
        data=text,
        derived_id=derived_id,
        sent_by=sent_by,
        now=time.time(),
    )
    if poke and (sent.matched_runs or sent.triggered_runs or sent.cancelled_runs):
        from sylphrun.trigger import poke_workers

        poke_workers(journal)
    return EventSent(
        sent.event_id, sent.matched_runs, sent.triggered_runs, sent.cancelled_runs, sent.created
    )


# -- what a waiting run waits for (`show`, and the dashboard) ---------------------------


def open_event_waits(steps: list[Any]) -> list[dict[str, Any]]:
    """The run's `wait_for_event` steps still waiting, from its steps (`model.Step`; the
    journal's `event_waits_of` answers the same from the wait records): step key, event
    name, match and timeout time (Unix seconds or None)."""
    out = []
    for s in steps:
        output = s.output
        if (
            s.kind == "wait"
            and s.status == "waiting"
            and isinstance(output, dict)
            and "event" in output
        ):
            out.append(
                {
                    "step": s.key,
                    "event": output["event"],
                    "match": output.get("match"),
                    "timeout_at": output.get("timeout_at"),
                }
            )
    return out


def waiting_for_text(wait: dict[str, Any], now: float) -> str:
    """ "waiting for event order.approved where order_id=42, times out in 23h05m"."""
    from sylphrun.render import until

    text = f"waiting for event {wait['event']}"
    match = wait.get("match") or {}
    if match:
        text += " where " + ", ".join(f"{k}={codec.dumps(v)}" for k, v in match.items())
    timeout_at = wait.get("timeout_at")
    if isinstance(timeout_at, (int, float)):
        text += f", times out {until(timeout_at, now)}" if timeout_at > now else ", timed out"
    return text
