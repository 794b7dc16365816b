"""Where a run's wall-clock time went while no step was running: its suspensions.

A run parks (status `waiting`) when everything it awaits is a child run, a durable sleep
or a step's retry time, and goes back to the queue (`queued`) for a run-level retry or
when its worker is replaced. None of that is a step, so a timeline drawn from steps alone
shows a gap there. The run's own status changes (the journal's `run.*` events, with the
`step.waiting` events of the steps parked with it) say exactly when it was parked and
resumed; the steps say why. Plain Python, no Textual: the timeline draws what this returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sylphrun import model

WAITING = "waiting"  # on child runs, or a wait step
SLEEPING = "sleeping"  # a durable step.sleep
RETRY = "retry"  # a step's or the run's retry, not before its back-off time
QUEUED = "queued"  # back in the queue without a retry (reload, shutdown, a worker crash)

# Two times the store wrote from one `now` (a failed attempt and the run's requeue).
_SAME = 1e-6


@dataclass(frozen=True)
class Band:
    """A stretch of suspended time: `end` is None while it lasts."""

    start: float
    end: float | None
    reason: str
    step_keys: tuple[str, ...] = ()  # the steps parked with the run, drawn on their lines

    def stop(self, now: float) -> float:
        return now if self.end is None else max(self.start, self.end)


# (event id, at, kind, step key): the `run.*` and `step.waiting` events of one run.
StateChange = tuple[int, float, str, str | None]


def run_suspensions(
    run: model.Run,
    steps: Sequence[model.Step],
    attempts: Sequence[model.RunAttempt],
    changes: Sequence[StateChange],
) -> list[Band]:
    """The times the run was parked or queued again after it first started, with why."""
    kinds = {s.key: s.kind for s in steps}
    bands: list[Band] = []
    started = False
    parked: tuple[float, str, tuple[str, ...]] | None = None
    waiting_keys: list[str] = []  # steps that went 'waiting' since the run last ran
    for _, at, kind, key in changes:
        if kind == "step.waiting":
            if key is not None:
                waiting_keys.append(key)
            continue
        status = kind.removeprefix("run.")
        if status in (model.WAITING, model.QUEUED):
            if started and parked is None:
                parked = (at, status, tuple(dict.fromkeys(waiting_keys)))
            continue
        if parked is not None:
            bands.append(_band(parked, at, steps, attempts, kinds))
            parked = None
        started = started or status == model.RUNNING
        waiting_keys = []
    if parked is not None and run.status in (model.WAITING, model.QUEUED):
        bands.append(_band(parked, None, steps, attempts, kinds))
    return bands


def _band(
    parked: tuple[float, str, tuple[str, ...]],
    end: float | None,
    steps: Sequence[model.Step],
    attempts: Sequence[model.RunAttempt],
    kinds: dict[str, str],
) -> Band:
    start, status, keys = parked
    if status == model.QUEUED:
        retried = any(
            a.status == model.FAILED
            and a.finished_at is not None
            and abs(a.finished_at - start) < _SAME
            for a in attempts
        )
        return Band(start, end, RETRY if retried else QUEUED)
    parked_kinds = {kinds.get(k) for k in keys}
    if parked_kinds and parked_kinds <= {model.SLEEP}:
        reason = SLEEPING
    elif not keys and any(_retry_covers(s, start, end) for s in steps):
        reason = RETRY
    else:
        reason = WAITING
    return Band(start, end, reason, keys)


def _retry_covers(step: model.Step, start: float, end: float | None) -> bool:
    """Did this step wait for its retry time through [start, end]?"""
    for gap_start, gap_end in retry_gaps(step):
        if gap_start <= start + _SAME and (gap_end is None or end is None or gap_end >= end - 0.5):
            return True
    return False


def retry_gaps(step: model.Step) -> list[tuple[float, float | None]]:
    """From each failed try of a step to its next try (None: the next has not begun)."""
    tries = [
        (a.started_at, a.finished_at) for a in step.attempt_log if a.status == model.STEP_FAILED
    ]
    starts = sorted(a.started_at for a in step.attempt_log if a.started_at is not None)
    if step.started_at is not None:
        starts.append(step.started_at)
    gaps: list[tuple[float, float | None]] = []
    for _, failed_at in tries:
        if failed_at is None:
            continue
        later = [t for t in starts if t > failed_at]
        if later:
            gaps.append((failed_at, min(later)))
        elif step.status == model.STEP_RETRYING:
            gaps.append((failed_at, None))
    return gaps


def step_bands(step: model.Step, run_bands: Sequence[Band]) -> list[Band]:
    """The suspended stretches drawn on one step's line: a sleep or wait step is one band
    from its start to its end; a step parked with its run (a fan-in collecting children)
    gets the run's band; a step waiting for its retry time gets a band from each failed
    try to the next."""
    if step.kind in (model.SLEEP, model.WAIT) and step.started_at is not None:
        reason = SLEEPING if step.kind == model.SLEEP else WAITING
        return [Band(step.started_at, step.finished_at, reason, (step.key,))]
    out = [b for b in run_bands if step.key in b.step_keys]
    if (
        step.status == model.STEP_WAITING
        and step.started_at is not None
        and not any(b.end is None for b in out)
    ):
        # Parked now, and the journal's events did not say when (an old journal).
        out.append(Band(step.started_at, None, WAITING, (step.key,)))
    out += [Band(a, b, RETRY, (step.key,)) for a, b in retry_gaps(step)]
    return out
