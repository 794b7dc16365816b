"""Control flow that must pass through user code untouched.

Each is a `BaseException`, not an `Exception`, so that a user's `except Exception:` around
`step.run` (the seed's saga does exactly that) cannot swallow a suspension and carry on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sylphrun.errors import JournalError, JournalUnreachable


class Suspend(BaseException):
    """The run waits on children or a time: park it and free the worker slot."""


class Release(BaseException):
    """The worker is stopping or reloading: hand the run back at this step boundary."""


class JournalFailed(BaseException):
    """The journal failed (a disk error, a full disk) under a write or read made for user
    code: the execution stops and the run goes back to the queue, as after a crash. Not an
    `Exception`: the user's `except Exception` around `step.run` would take it for the
    step's own failure and carry on with nothing journaled."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable  # the server was out of reach: no crash is counted

    @classmethod
    def of(cls, exc: JournalError) -> JournalFailed:
        return cls(str(exc), unreachable=isinstance(exc, JournalUnreachable))


class Settled(BaseException):
    """The task function has ended and the run's outcome is being settled (see
    `runtime.drain`): a new step a parallel branch starts now is refused, because its
    effect would land after the compensations were chosen or while the next attempt runs."""


class StepDiverged(BaseException):
    """A replayed step's journaled result was recorded for another call (see
    `runtime.divergence`): the run stops at that step. Not an `Exception`: a saga's
    `except Exception` block would take it for a step failure and compensate."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


@contextlib.contextmanager
def journal_guard() -> Iterator[None]:
    """Around journal calls made while user code waits on them: see `JournalFailed`."""
    try:
        yield
    except JournalError as exc:
        raise JournalFailed.of(exc) from None
