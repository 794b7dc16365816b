"""The runs the dashboard holds, newest first, and the filtered view of them.

Plain Python (no Textual), so a change from the feed costs O(changed) plus, only when
the set of visible runs changes, one pass over the list: the benchmark measures it at
10,000 runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sylphrun.journal.types import RunSummary


@dataclass(frozen=True)
class RunFilter:
    """What the runs list shows. Child runs are hidden unless asked for, or unless a task
    filter or a search is set (then every matching run is shown: a search for a child's
    id finds it).

    A search matches a run's id, task or error here, and its payload in the journal: the
    runs held here have no payloads (50,000 of them would cost memory and load time), so
    the feed finds the payload matches and they arrive as `payload_ids`."""

    status: str | None = None
    task_id: str | None = None
    text: str = ""
    show_children: bool = False
    payload_ids: frozenset[str] = frozenset()

    def matches(self, run: RunSummary) -> bool:
        if self.status is not None and run.status != self.status:
            return False
        if self.task_id is not None and run.task_id != self.task_id:
            return False
        text = self.text.strip().lower()
        if text:
            return (
                text in run.id
                or text in run.task_id.lower()
                or (run.error is not None and text in run.error.lower())
                or run.id in self.payload_ids
            )
        return run.parent_run_id is None or self.show_children or self.task_id is not None


@dataclass(frozen=True)
class ModelChange:
    """What a change did to the visible list: a new order (the table re-reads it), or
    only some visible rows changed in place."""

    reordered: bool
    changed_ids: frozenset[str]


class RunsModel:
    def __init__(self) -> None:
        self.by_id: dict[str, RunSummary] = {}
        self._order: list[str] = []  # every run id, newest first
        self.filter = RunFilter()
        self.visible: list[RunSummary] = []
        self._position: dict[str, int] = {}  # run id -> index in `visible`
        self.task_ids: set[str] = set()
        self.truncated = False

    def load(self, runs: list[RunSummary], *, truncated: bool = False) -> ModelChange:
        self.by_id = {r.id: r for r in runs}
        self.task_ids = {r.task_id for r in runs}
        self.truncated = truncated
        self._sort()
        self._refilter()
        return ModelChange(True, frozenset())

    def apply(self, runs: list[RunSummary]) -> ModelChange:
        """Merge changed runs: O(changed), unless a run enters or leaves the view."""
        added = False
        membership = False
        changed: set[str] = set()
        match = self.filter.matches
        for run in runs:
            old = self.by_id.get(run.id)
            if old == run:
                continue
            self.by_id[run.id] = run
            if old is None:
                added = True
                self.task_ids.add(run.task_id)
                membership = membership or match(run)
            elif match(old) != match(run):
                membership = True
            elif run.id in self._position:
                changed.add(run.id)
        if added:
            self._sort()
        if membership:
            self._refilter()
            return ModelChange(True, frozenset(changed))
        for run_id in changed:
            self.visible[self._position[run_id]] = self.by_id[run_id]
        return ModelChange(False, frozenset(changed))

    def set_filter(self, new: RunFilter) -> ModelChange:
        self.filter = new
        self._refilter()
        return ModelChange(True, frozenset())

    def _sort(self) -> None:
        by_id = self.by_id
        # Timsort on an almost sorted list (new runs are the newest) is close to linear.
        self._order = sorted(by_id, key=lambda i: (by_id[i].created_at, i), reverse=True)

    def _refilter(self) -> None:
        match = self.filter.matches
        by_id = self.by_id
        self.visible = [r for r in (by_id[i] for i in self._order) if match(r)]
        self._position = {r.id: n for n, r in enumerate(self.visible)}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.by_id.values():
            out[r.status] = out.get(r.status, 0) + 1
        return out
