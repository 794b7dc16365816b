"""Replay checking (Temporal's Replayer, for sylphrun): re-execute recorded runs against the
current code without calling a single step function, and report where the code no longer
matches the journal.

Each run's task function is called with its journaled payload on an `Execution` of the
runtime over the recorded journal, so every `step.run` goes through the runtime's own
replay path: a completed step returns its journaled result, and the runtime's divergence
check (`runtime.divergence.check_replay`) stops a step recorded for another function or
other arguments. Around it, `ReplayExecution` watches the order the code asks for steps
in (`next_key`): a journaled step skipped, a new step before journaled ones, or steps out
of order is the first divergence of that run, reported with the step the journal expected,
the one the code called, and where. A step that would really execute (`ReplayProbe`)
stops the replay: for a run that never finished, that is simply where it stopped.

Nothing is written to the journal: the executions hold epoch -1, which no run has, so
every fenced write the runtime might attempt is refused (`LeaseLost`), and `ctx.log` is
replaced by a logger that journals nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sylphrun import codec, model
from sylphrun.define import Task
from sylphrun.journal import LeaseLost
from sylphrun.journal.types import Claim
from sylphrun.runtime.context import Context
from sylphrun.runtime.execution import Execution
from sylphrun.runtime.scope import Scope, current_scope
from sylphrun.runtime.signals import JournalFailed, StepDiverged, Suspend

_SYLPHRUN_DIR = str(Path(__file__).resolve().parent.parent)
_ASYNCIO_DIR = str(Path(asyncio.__file__).resolve().parent)


@dataclass(frozen=True)
class Divergence:
    """The first place a recorded run and the current code disagree."""

    run_id: str
    task_id: str
    message: str

    def __str__(self) -> str:
        return f"{self.run_id} ({self.task_id}): {self.message}"


class ReplayStop(BaseException):
    """Ends a replay early: at a divergence (`diverged`), or where the recorded run stopped."""

    def __init__(self, message: str, diverged: bool) -> None:
        super().__init__(message)
        self.message = message
        self.diverged = diverged


def _user_frame() -> str:
    """file:line of the innermost frame outside sylphrun and asyncio: the user's call."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith((_SYLPHRUN_DIR, _ASYNCIO_DIR)):
        frame = frame.f_back
    if frame is None:
        return "?"
    path = frame.f_code.co_filename
    try:
        rel = os.path.relpath(path)
        path = path if rel.startswith("..") else rel
    except ValueError:
        pass
    return f"{path}:{frame.f_lineno}"


class ReplayExecution(Execution):
    """An execution that checks the order of the steps the code asks for against the
    journal's (see the module)."""

    finished: bool = False

    def next_key(self, name: str) -> str:
        expected = next((k for k in self.journal_order if k not in self._issued), None)
        key = super().next_key(name)
        if key.startswith("compensate:"):
            return key
        if key in self.journal_order and key != expected:
            raise ReplayStop(
                f"expected step {expected!r} next, but the code called {key!r} "
                f"at {_user_frame()} (steps out of order)",
                diverged=True,
            )
        if key not in self.journal:
            if expected is not None:
                raise ReplayStop(
                    f"expected step {expected!r} next, but the code called "
                    f"{key!r} at {_user_frame()}, which the run never ran",
                    diverged=True,
                )
            if self.finished:
                raise ReplayStop(
                    f"the run had finished, but the code now calls step {key!r} at {_user_frame()}",
                    diverged=True,
                )
            raise ReplayStop(f"reached {key!r}, where the run stopped", diverged=False)
        return key


class ReplayProbe:
    """The step probe of a replay: a step that would really run stops it."""

    def __init__(self, finished: bool) -> None:
        self.finished = finished

    def starting(self, key: str, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        raise ReplayStop(
            f"step {key!r} would run again (the journal has no result for it "
            f"in this attempt) at {_user_frame()}",
            diverged=self.finished,
        )

    def at(self, point: str, key: str, name: str | None = None) -> None:
        pass


class _QuietLog:
    """`ctx.log` during a replay: nothing is journaled (the lines were, when it ran)."""

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    debug = info = warning = warn = error = exception = critical = log


def check_journal(
    journal: Any, tasks: dict[str, Task], *, run_ids: list[str] | None = None
) -> tuple[int, list[Divergence]]:
    """Replay every run of `journal` that has steps (or those of `run_ids`) against
    `tasks`: (runs checked, the first divergence of each run that diverged)."""
    runs = (
        [journal.get_run(r) for r in run_ids]
        if run_ids is not None
        else journal.list_runs(limit=10**9)
    )
    with ThreadPoolExecutor(8, thread_name_prefix="sylph-replay") as threads:
        return asyncio.run(_check_runs(journal, runs, tasks, threads))


async def _check_runs(
    journal: Any, runs: list[model.Run], tasks: dict[str, Task], threads: ThreadPoolExecutor
) -> tuple[int, list[Divergence]]:
    found: list[Divergence] = []
    checked = 0
    for run in sorted(runs, key=lambda r: (r.created_at, r.id)):
        if run.status == model.QUEUED and run.attempt <= 1 and run.started_at is None:
            continue  # never ran: nothing recorded to replay
        checked += 1
        task = tasks.get(run.task_id)
        if task is None:
            found.append(
                Divergence(run.id, run.task_id, f"task {run.task_id!r} is no longer defined")
            )
            continue
        message = await replay_run(journal, run, task, threads)
        if message is not None:
            found.append(Divergence(run.id, run.task_id, message))
    return checked, found


async def replay_run(
    journal: Any, run: model.Run, task: Task, threads: ThreadPoolExecutor
) -> str | None:
    """Replay one recorded run; the first divergence, or None."""
    finished = run.status in model.TERMINAL_STATES
    claim = Claim(
        run.id,
        run.task_id,
        codec.dumps(run.payload),
        max(run.attempt, 1),
        -1,
        run.parent_run_id,
        0,
        None,
        None,
    )
    ex = ReplayExecution(journal, claim, task, threads=threads)
    ex.finished = finished
    ex.probe = ReplayProbe(finished)
    ctx = Context(ex)
    ctx.log = _QuietLog()
    ctx.payload = run.payload
    token = current_scope.set(Scope(ex, None))
    raised: BaseException | None = None
    try:
        if task.is_async:
            await task.fn(run.payload, ctx)
        else:
            ctx.step = ctx.sync_step
            await ex.loop.run_in_executor(
                threads, contextvars.copy_context().run, task.fn, run.payload, ctx
            )
    except StepDiverged as exc:
        return exc.message
    except ReplayStop as stop:
        return stop.message if stop.diverged else None
    except (Suspend, LeaseLost, JournalFailed) as exc:
        if finished:
            return (
                f"the run had finished, but its replay waits or writes "
                f"({type(exc).__name__}): the code now does something the run never did"
            )
        return None
    except Exception as exc:  # the task function's own failure, replayed
        raised = exc
    finally:
        current_scope.reset(token)
    if run.status == model.COMPLETED and raised is not None:
        return f"the run completed, but its replay raised {type(raised).__name__}: {raised}"
    missing = [
        k for k in ex.journal_order if k not in ex._issued and not k.startswith("compensate:")
    ]
    if run.status == model.COMPLETED and missing:
        return f"journaled step {missing[0]!r} is no longer called by the code"
    return None
