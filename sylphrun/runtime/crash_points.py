"""Fault injection for the torture suite (tests/torture/).

SYLPHRUN_TEST_CRASH_AT="<point>:<step key>:<marker file>" SIGKILLs this worker at <point>
of that step, once (the marker file is created on the first hit). Points: "before-start"
(no start record yet), "after-effect" (the step function returned, its result is not
journaled), "after-commit" (the result is journaled, `step.run` has not returned),
"between-chunks" (a large in-run batch trigger, after its first chunk). Read once at
import; unset, it costs one truth test per step.
"""

from __future__ import annotations

import os
import signal

POINTS = ("before-start", "after-effect", "after-commit")

CRASH_AT = os.environ.get("SYLPHRUN_TEST_CRASH_AT")


def crash_point(point: str, key: str) -> None:
    want, _, rest = CRASH_AT.partition(":")  # type: ignore[union-attr]
    want_key, _, marker = rest.rpartition(":")
    if want != point or want_key != key:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


class WorkerDied(BaseException):
    """The in-process form of a crash point (the test harness, `sylphrun.testing`): raised
    at the point, it abandons the execution with nothing more journaled for the step, as
    a SIGKILL would; the harness then recovers the run through the journal as the
    supervisor does. A `BaseException`, so a user's `except Exception` cannot swallow it."""

    def __init__(self, point: str, key: str) -> None:
        super().__init__(f"simulated worker crash at {point} of step {key!r}")
        self.point = point
        self.key = key
