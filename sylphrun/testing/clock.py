"""The harness's virtual clock: time moves only when the harness or the test moves it.

Every journal time the in-process executor writes (step starts, retry times, a sleep's
wake-up, claims) comes from here, passed in as the runtime's `clock=`; nothing is
monkeypatched. When nothing can run now, the harness jumps the clock to the next time
something becomes ready (a durable sleep's wake-up, a step's or a run's retry), so a
one-hour `step.sleep` takes no real time.
"""

from __future__ import annotations

# A fixed start (2030-01-01 UTC): times in a test's journal are the same on every run.
EPOCH = 1_893_456_000.0


class VirtualClock:
    """Seconds since the epoch, as the journal counts them, moved by hand."""

    def __init__(self, start: float = EPOCH) -> None:
        self._now = float(start)

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
