"""`Sylph`, what the `sylph` fixture hands a test: a temporary journal, the project's
tasks, and an in-process executor with a virtual clock, step mocks and crash injection.

    def test_charge_runs_once_across_a_crash(sylph):
        result = sylph.run("order-saga", crash_at=("after-effect", "charge-payment"))
        assert result.ok
        assert sylph.calls("charge-payment") == 2   # the effect happened, then the crash

Runs execute through the runtime the workers run (`runtime.run.execute`), on the real
journal code path; only the process around them is the harness's (`executor`).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sylphrun import model
from sylphrun.define import Task
from sylphrun.errors import UnknownTask
from sylphrun.journal import RunSpec, open_journal
from sylphrun.testing.clock import VirtualClock
from sylphrun.testing.executor import InProcessExecutor
from sylphrun.testing.probe import StepMock, StepProbe
from sylphrun.testing.report import RunNotFinished, run_tree_text
from sylphrun.trigger import check_idempotency_key, encode_payload


@dataclass(frozen=True)
class SylphHandle:
    """A run `sylph.trigger` created. `.result()` runs it (and whatever else is ready) to
    its end and returns its `RunResult`; `.status` reads its state now."""

    run_id: str
    task_id: str
    sylph: Any  # the `sylph` that created it

    def result(self) -> model.RunResult:
        return self.sylph.wait(self.run_id)

    @property
    def status(self) -> str:
        return self.sylph.get_run(self.run_id).status


class SylphBase:
    """What every `sylph` offers, whoever executes the runs: tasks, triggering, and the
    journal read back for assertions. `Sylph` executes in process; `workers.WorkerSylph`
    on real worker processes (`--sylphrun-workers`)."""

    def __init__(
        self, journal_path: str | os.PathLike[str], tasks: dict[str, Task] | None = None
    ) -> None:
        self.journal_path = Path(journal_path)
        self.journal = open_journal(self.journal_path)
        self.tasks: dict[str, Task] = dict(tasks or {})
        self.triggered: list[str] = []  # the runs this test started, for the failure report

    def close(self) -> None:
        self.journal.close()

    def now(self) -> float:
        return time.time()

    # -- tasks -----------------------------------------------------------------------------

    def register(self, *targets: Any) -> None:
        """Add tasks: a module (or its dotted name) adds every task defined in it; a task
        object adds itself. The project's config (`tasks`) is discovered already."""
        for target in targets:
            if isinstance(target, str):
                target = importlib.import_module(target)
            if isinstance(target, Task):
                self.tasks[target.id] = target
            elif isinstance(target, types.ModuleType):
                self.tasks.update(tasks_in_module(target))
            else:
                raise TypeError(f"sylph.register takes modules and tasks, not {target!r:.60}")

    def _task_id(self, task: Task | str) -> str:
        if isinstance(task, Task):
            if self.tasks.get(task.id) is not task:
                # A task defined in the test module itself: its module's other tasks come
                # with it (the children it triggers, typically).
                module = sys.modules.get(getattr(task.fn, "__module__", ""))
                if module is not None:
                    self.tasks.update(tasks_in_module(module))
                self.tasks[task.id] = task
            return task.id
        if not isinstance(task, str):
            raise TypeError(f"expected a task or a task id, not {task!r:.60}")
        if task not in self.tasks:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTask(
                f"no task {task!r} is registered with sylph (known: {known}); "
                "list its module in the config's `tasks` or call sylph.register"
            )
        return task

    # -- running ---------------------------------------------------------------------------

    def trigger(
        self, task: Task | str, payload: dict | None = None, *, idempotency_key: str | None = None
    ) -> SylphHandle:
        """Enqueue a run, as `sylphrun trigger` does, without executing anything."""
        task_id = self._task_id(task)
        spec = RunSpec(task_id, encode_payload(payload), check_idempotency_key(idempotency_key))
        [created] = self.journal.enqueue_runs([spec], self.now())
        if created.run_id not in self.triggered:
            self.triggered.append(created.run_id)
        return SylphHandle(created.run_id, task_id, self)

    def send_event(self, event: str, data: dict | None = None, *, id: str | None = None) -> Any:
        """Send a user event into this test's journal, as `sylphrun.send_event` does, at
        the harness's time: the runs it wakes or starts execute at the next `run`, `wait`,
        `advance` or `handle.result()`. Returns what the journal did (`SentEvent`)."""
        try:
            from sylphrun.events import check_event_id, check_event_name, encode_event_data
        except ImportError:  # events (issue 14) are not in this build
            raise NotImplementedError("this sylphrun has no user events") from None
        sent = self.journal.send_event(
            event_id=check_event_id(id),
            name=check_event_name(event),
            data=encode_event_data(data),
            now=self.now(),
        )
        self.triggered += [
            r for r in getattr(sent, "triggered_runs", ()) if r not in self.triggered
        ]
        return sent

    # -- the journal, for assertions -------------------------------------------------------

    def get_run(self, run_id: str) -> model.Run:
        return self.journal.get_run(run_id)

    def steps(self, run_id: str) -> list[model.Step]:
        """The run's steps in order: each has `name`, `status`, `attempts`, `kind`,
        `output` (decoded), `key`, `error`."""
        return self.journal.steps_of(run_id)

    def children(self, run_id: str) -> list[model.Run]:
        """The run's child runs, oldest first."""
        return self.journal.children_of(run_id)

    def compensations(self, run_id: str) -> list[model.Step]:
        """The run's compensation steps (an `except` block's undos, `compensate=` undos)
        in the order they ran."""
        return [s for s in self.steps(run_id) if s.kind == model.COMPENSATION]

    def show(self, run_id: str) -> str:
        """The run as `sylphrun show` prints it: its step tree, attempts, children, logs."""
        return run_tree_text(self.journal, run_id)

    def assert_completed(self, result: model.RunResult | str) -> Any:
        """The run completed; its output. Otherwise fails with the run's step tree."""
        run_id = result if isinstance(result, str) else result.run_id
        record = self.get_run(run_id)
        if record.status != model.COMPLETED:
            raise AssertionError(
                f"run {run_id} is {record.status}, not completed: "
                f"{record.error or ''}\n\n{self.show(run_id)}"
            )
        return record.output

    def assert_failed(self, result: model.RunResult | str, match: str | None = None) -> str:
        """The run failed (with `match` in its error); its error. Otherwise fails with the
        run's step tree."""
        run_id = result if isinstance(result, str) else result.run_id
        record = self.get_run(run_id)
        if record.status != model.FAILED or (
            match is not None and match not in (record.error or "")
        ):
            want = "failed" + (f" with {match!r} in its error" if match else "")
            raise AssertionError(
                f"run {run_id} is {record.status} ({record.error}), expected "
                f"{want}\n\n{self.show(run_id)}"
            )
        return record.error or ""

    def check_replay(self, *run_ids: str, tasks: dict[str, Task] | None = None) -> list[Any]:
        """Replay this test's recorded runs (all, or `run_ids`) against the tasks (the
        registered ones, or `tasks`: a new version of the code) without calling any step
        function, as `sylphrun check-replay` does; the first divergence of each run that
        diverged (`replay_check.Divergence`), empty when all replay cleanly."""
        from sylphrun.testing.replay_check import check_journal

        _, found = check_journal(
            self.journal,
            tasks if tasks is not None else self.tasks,
            run_ids=list(run_ids) if run_ids else None,
        )
        return found

    def assert_replays(self, *run_ids: str, tasks: dict[str, Task] | None = None) -> None:
        """Fail, naming each divergence, unless the runs replay cleanly."""
        found = self.check_replay(*run_ids, tasks=tasks)
        if found:
            raise AssertionError(
                "runs no longer replay against the code:\n" + "\n".join(f"  {d}" for d in found)
            )

    def describe_runs(self) -> str:
        """The step trees of the runs this test triggered (the plugin prints them under a
        failing test)."""
        return "\n\n".join(self.show(rid) for rid in self.triggered)


class Sylph(SylphBase):
    """An isolated journal and an in-process executor for one test (see the module)."""

    def __init__(
        self,
        journal_path: str | os.PathLike[str],
        tasks: dict[str, Task] | None = None,
        *,
        max_output: int | None = None,
    ) -> None:
        from sylphrun.codec import DEFAULT_MAX_OUTPUT

        super().__init__(journal_path, tasks)
        self.clock = VirtualClock()
        self.probe = StepProbe()
        self._executor = InProcessExecutor(
            self.journal,
            self.clock,
            self.probe,
            self.tasks,
            max_output=max_output or DEFAULT_MAX_OUTPUT,
        )

    def close(self) -> None:
        self._executor.close()
        super().close()

    def run(
        self,
        task: Task | str,
        payload: dict | None = None,
        *,
        crash_at: tuple[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> model.RunResult:
        """Trigger a run and execute it to its end, children included, waits skipped on the
        virtual clock. `crash_at=(point, step)` (point: "before-start", "after-effect" or
        "after-commit") kills the in-process worker there once, then recovers the run as
        the supervisor would; the result is the recovered run's."""
        if crash_at is not None:
            self.probe.arm_crash(*crash_at)
        try:
            handle = self.trigger(task, payload, idempotency_key=idempotency_key)
            result = self.wait(handle.run_id)
            if crash_at is not None and self.probe.crash is not None:
                raise AssertionError(
                    f"crash_at={crash_at!r}: the run never reached {crash_at[0]} of a step "
                    f"named {crash_at[1]!r}\n\n{self.show(handle.run_id)}"
                )
            return result
        finally:
            self.probe.crash = None

    def wait(self, run: str | SylphHandle) -> model.RunResult:
        """Execute until the run has finished; its `RunResult`. A run that can never finish
        here (it waits for something no test step will bring) raises `RunNotFinished`."""
        run_id = run.run_id if isinstance(run, SylphHandle) else run
        self._executor.run_until(lambda: self._finished(run_id))
        record = self.journal.get_run(run_id)
        if not record.finished:
            raise RunNotFinished(
                f"run {run_id} is {record.status} and nothing left can "
                f"finish it\n\n{self.show(run_id)}"
            )
        return record.result()

    def _finished(self, run_id: str) -> bool:
        return self.journal.run_fields(run_id)[1] in model.TERMINAL_STATES

    # -- the virtual clock -----------------------------------------------------------------

    def now(self) -> float:
        """The virtual time, in seconds since the epoch (what the journal records)."""
        return self.clock.now()

    def advance(self, seconds: float = 0.0) -> float:
        """Move the virtual clock forward by `seconds`, executing everything that becomes
        due on the way (a run woken by its sleep, a retry); returns the new time.
        `advance(0)` executes what is ready now (a run just triggered, up to its first wait)."""
        target = self.clock.now() + float(seconds)
        if seconds < 0:
            raise ValueError("the virtual clock only moves forward")
        self._executor.run_until(lambda: False, until=target)
        return self.clock.now()

    # -- mocks -----------------------------------------------------------------------------

    def mock_step(
        self, name: str, return_value: Any = None, *, side_effect: Any = None
    ) -> StepMock:
        """Replace the function of every step named `name` (in every run of this test):
        it returns `return_value`, or raises `side_effect` (an exception or its class), or
        returns `side_effect(*args, **kwargs)`; a list gives one side effect per call
        (`[ConnectionError("down"), {"id": 1}]`: fails once, then answers). The user's
        function is not touched, and the step is journaled as usual (a replay returns the
        journaled value)."""
        mock = StepMock(name, return_value, side_effect)
        self.probe.mocks[name] = mock
        return mock

    def calls(self, step_name: str) -> int:
        """How many times the function of steps named `step_name` really ran (a mock's
        calls included), in every run of this test; a replayed step does not count."""
        return self.probe.calls[step_name]


def tasks_in_module(module: types.ModuleType) -> dict[str, Task]:
    """The tasks a module defines: its globals that are tasks."""
    return {obj.id: obj for obj in vars(module).values() if isinstance(obj, Task)}
