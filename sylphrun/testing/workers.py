"""`sylph` on real worker processes (`pytest --sylphrun-workers`, or the
`sylphrun_workers` marker): the same tests, executed by a `sylphrun worker` pool over the
test's journal instead of in process.

The pool starts on the first run, with a config of its own in a temp folder naming the
task modules by their dotted names (the project's, and the modules of tasks the test
registered), so it imports exactly what the test runs. What only the in-process executor
can do (the virtual clock, `crash_at`, step mocks) skips the test with the reason.
`calls(name)` is counted from the journal here (a step's attempts), since the functions
run in other processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sylphrun import model
from sylphrun.define import Task
from sylphrun.testing.harness import SylphBase, SylphHandle

START_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0


def _unsupported(what: str) -> None:
    pytest.skip(f"{what} needs the in-process executor; not available with --sylphrun-workers")


class WorkerSylph(SylphBase):
    def __init__(
        self,
        journal_path: str | os.PathLike[str],
        tasks: dict[str, Task] | None = None,
        *,
        max_output: int | None = None,
        root: Path | None = None,
    ) -> None:
        super().__init__(journal_path, tasks)
        self.max_output = max_output
        self.root = Path(root or os.getcwd())
        self._proc: subprocess.Popen | None = None
        self._modules: tuple[str, ...] = ()

    # -- the pool ----------------------------------------------------------------------------

    def _needed_modules(self) -> tuple[str, ...]:
        return tuple(sorted({t.fn.__module__ for t in self.tasks.values()}))

    def _ensure_workers(self) -> None:
        modules = self._needed_modules()
        if self._proc is not None and self._proc.poll() is None and modules == self._modules:
            return
        self._stop_workers()
        self._modules = modules
        folder = self.journal_path.parent / "workers"
        folder.mkdir(exist_ok=True)
        lines = [
            f"tasks = [{', '.join(repr(m) for m in modules)}]",
            f"journal = {str(self.journal_path)!r}",
            "workers = 2",
        ]
        if self.max_output:
            lines.append(f"max_step_output = {self.max_output}")
        (folder / "sylphrun.toml").write_text("\n".join(lines) + "\n")
        paths = [str(self.root)] + [
            str(Path(sys.modules[m].__file__).resolve().parent)  # type: ignore[arg-type]
            for m in modules
            if getattr(sys.modules.get(m), "__file__", None)
        ]
        env = {
            **os.environ,
            "SYLPHRUN_ECHO_RUN_LOGS": "0",
            "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
        }
        self._log = open(folder / "workers.log", "wb")  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "sylphrun", "worker", "--project", str(folder)],
            cwd=folder,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.journal.live_workers(now=time.time(), stale_after=10.0):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "sylphrun worker did not start:\n"
                    + (folder / "workers.log").read_text(errors="replace")[-2000:]
                )
            time.sleep(0.05)

    def _stop_workers(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(5)
        self._log.close()
        self._proc = None

    def close(self) -> None:
        self._stop_workers()
        super().close()

    # -- running -----------------------------------------------------------------------------

    def run(
        self,
        task: Task | str,
        payload: dict | None = None,
        *,
        crash_at: tuple[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> model.RunResult:
        if crash_at is not None:
            _unsupported("crash_at")
        handle = self.trigger(task, payload, idempotency_key=idempotency_key)
        return self.wait(handle)

    def wait(self, run: str | SylphHandle) -> model.RunResult:
        from sylphrun.trigger import wait_for_result

        run_id = run.run_id if isinstance(run, SylphHandle) else run
        self._ensure_workers()
        return asyncio.run(wait_for_result(self.journal, run_id, timeout=RUN_TIMEOUT))

    def advance(self, seconds: float = 0.0) -> float:
        _unsupported("sylph.advance (the virtual clock)")
        return 0.0

    def mock_step(self, name: str, return_value: Any = None, *, side_effect: Any = None) -> Any:
        _unsupported("sylph.mock_step")

    def calls(self, step_name: str) -> int:
        """Attempts of the steps named `step_name`, over every run of this test (from the
        journal: the functions ran in the worker processes)."""
        return sum(
            s.attempts
            for run in self.journal.list_runs(limit=10**9)
            for s in self.journal.steps_of(run.id, with_attempts=False)
            if s.name == step_name
        )
