"""Why an unfinished run is not running, in words: the event it waits for, or what holds
it in the queue (a per-key concurrency, a rate limit, a debounce).

The words are `sylphrun show`'s (`events.waiting_for_text`, `render.hold_text`): this only
picks them for a run. The journal reads (`event_waits_of`, `held_by`) are made by the feed,
in its thread, for the few runs on screen that need them (`JournalFeed.want_notes`); the
UI thread turns what they return into text with its own clock. Plain Python, no Textual.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sylphrun import model
from sylphrun.events import open_event_waits, waiting_for_text
from sylphrun.journal.types import EventWait
from sylphrun.render import hold_text

# Statuses whose runs may need a note: parked on an event, or held in the queue.
NOTED_STATUSES = (model.WAITING, model.QUEUED)
# At most this many runs are read per refresh (a screen of the list, and the open run).
MAX_NOTED = 100


class RunNote(NamedTuple):
    """What the journal said about one unfinished run: its open event waits, its hold."""

    waits: tuple[EventWait, ...] = ()
    hold: Any = None  # a `journal.types.Hold`, or None

    def __bool__(self) -> bool:
        return bool(self.waits) or self.hold is not None


def hold_line(hold: Any, now: float) -> str | None:
    """ "held: concurrency user_id=7 (2/2)", "rate limited until 12:00:05 (...)",
    "debouncing, starts in 3.2s"; None when nothing holds the run."""
    text = hold_text(hold, now)
    if text is None:
        return None
    return f"held: {text}" if hold.kind == "concurrency" else text


def wait_lines(waits: Iterable[EventWait], now: float) -> list[str]:
    """ "waiting for event order.approved where order_id=42, times out in 23h05m", one per
    open wait."""
    return [
        waiting_for_text({"event": w.event, "match": w.match, "timeout_at": w.timeout_at}, now)
        for w in waits
    ]


def step_wait_lines(steps: Sequence[model.Step], now: float) -> list[str]:
    """The same from a run's steps (the run screen has them: no read of its own)."""
    return [waiting_for_text(w, now) for w in open_event_waits(list(steps))]


def note_line(note: RunNote | None, now: float) -> str | None:
    """The runs list's one line for a run: its first event wait (and how many more), or
    its hold."""
    if not note:
        return None
    lines = wait_lines(note.waits, now)
    if lines:
        more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
        return lines[0] + more
    return hold_line(note.hold, now)
