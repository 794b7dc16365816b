"""Child runs seen from inside a parent run: their results, and waiting for one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sylphrun import model
from sylphrun.errors import NonRetriableError
from sylphrun.journal.interface_reads import JournalReader
from sylphrun.runtime.scope import current_step_key
from sylphrun.runtime.signals import journal_guard

if TYPE_CHECKING:
    from sylphrun.runtime.execution import Execution


class Children:
    """The finished results of a run's children, read once per execution."""

    def __init__(self, journal: JournalReader, run_id: str) -> None:
        self._journal = journal
        self._run_id = run_id
        self._results: dict[str, model.RunResult] | None = None

    def exists(self, run_id: str) -> bool:
        return bool(self._results and run_id in self._results) or bool(
            self._journal.lease_states([run_id])
        )

    def created(self) -> None:
        """New children exist: the next `result` reads them all again in one query."""
        self._results = None

    def result(self, run_id: str) -> model.RunResult | None:
        """A finished run's result, or None. Read once per execution: a child still
        unfinished when we looked is waited on; `suspend_run` checks it again in the same
        transaction that parks the run, so one finishing meanwhile is not missed."""
        if self._results is None:
            self._results = self._journal.children_results(self._run_id)
        if run_id in self._results:
            return self._results[run_id]
        # Not one of ours (a handle passed in the payload): ask for this id alone.
        found = self._journal.run_results([run_id]).get(run_id)
        if found is not None:
            self._results[run_id] = found
        return found


async def wait_for_run(ex: Execution, run_id: str) -> model.RunResult:
    """Inside a run: a finished run's result, or suspend until it finishes."""
    with journal_guard():
        found = ex.children.result(run_id)
        exists = found is not None or ex.children.exists(run_id)
    if found is not None:
        return found
    if not exists:
        # Parking on it would wake at once (nothing to wait for) and loop forever.
        raise NonRetriableError(f"cannot wait for run {run_id!r}: no such run in this journal")
    ex.barrier.pending_children.add(run_id)
    await ex.barrier.block(current_step_key())
    raise AssertionError("unreachable")  # pragma: no cover
