"""The harness's virtual clock: time moves only when the harness or the test moves it.

Every journal time the in-process executor writes (step starts, retry times, a sleep's
wake-up, claims) comes from here, passed in as the runtime's `clock=`; nothing is
monkeypatched. When nothing can run now, the harness jumps the clock to the next time
something becomes ready (a durable sleep's wake-up, a step's or a run's retry), so a
one-hour `step.sleep` takes no real time.
"""

from __future__ import annotations

import math
import time


class VirtualClock:
    """Seconds since the epoch, as the journal counts them, moved by hand. It starts at the
    real time (so `sylph.show` of a run still waiting reads sensibly) and then stands
    still unless moved."""

    def __init__(self, start: float | None = None) -> None:
        # A whole second: sums of whole seconds stay exact (a sleep of 3600 s ends at
        # exactly `advance(3599)` + `advance(1)`).
        self._now = float(int(time.time()) if start is None else start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the virtual clock only moves forward")
        self._now += float(seconds)
        return self._now

    def advance_to(self, when: float) -> float:
        """Move to `when`, or stay if it is already past."""
        self._now = max(self._now, float(when))
        return self._now

    def skip_past(self, seconds: float) -> None:
        """Move just past `seconds` from now: an event loop runs a timer only once its
        time is strictly behind it, and near 1.7e9 a float step is 2.4e-7 s, so a tiny
        remainder could leave the clock where it was."""
        self._now = math.nextafter(self._now + float(seconds), math.inf)
