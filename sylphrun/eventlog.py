"""`sylphrun dev --no-tui`: one coloured line per run and step change, read from the journal.

Reading the journal (not the supervisor's in-process state) means the log shows exactly
what a dashboard would, including runs executed by other processes. The feed's changes say
which runs changed; a step's start and result write none of their own (schema V2), so the
steps a run changed are read through the feed's exact cursor (`JournalReader.step_changes`):
each change once, in order, with no clock involved. A step that started and finished
between two looks gets one line, "completed", not two.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from sylphrun import model
from sylphrun.follow import ChangeFollower
from sylphrun.journal.interface_reads import JournalReader
from sylphrun.journal.types import Change, FeedCursor, LogRecord, StepChange
from sylphrun.render import STATUS_STYLE, STEP_STYLE, console, duration, local_time, one_line


def run_line(run_id: str, task_id: str, status: str, at: float, error: str | None) -> Text:
    symbol, style = STATUS_STYLE.get(status, ("·", ""))
    line = Text(f"{local_time(at)} ", style="dim")
    line.append(f"{symbol} ", style=style)
    line.append(run_id, style="bold")
    line.append(f" {one_line(task_id)} ", style="cyan")
    line.append(status, style=style)
    if error and status in (model.FAILED, model.CANCELLED):
        line.append(f": {one_line(error)}", style=style)
    return line


def step_line(run_id: str, step: StepChange) -> Text:
    symbol, style = STEP_STYLE.get(step.status, ("·", ""))
    at = step.finished_at or step.started_at or 0.0
    line = Text(f"{local_time(at)} ", style="dim")
    line.append(f"  {symbol} ", style=style)
    line.append(f"{run_id} ", style="dim")
    line.append(one_line(step.key), style="bold")
    line.append(f" {step.status}", style=style)
    if step.status in (model.STEP_COMPLETED, model.STEP_FAILED, model.STEP_RETRYING):
        if step.kind != model.STEP:
            line.append(f" [{step.kind}]", style="magenta")
        line.append(f" {duration(step.started_at, step.finished_at)}", style="dim")
        if step.error and step.status != model.STEP_COMPLETED:
            line.append(f": {one_line(step.error)}", style=style)
    return line


def log_line(record: LogRecord) -> Text:
    """A run's journaled warning (a step order changed by a reload, the user's own
    `ctx.log.warning`), in the format of the other lines."""
    style = "red" if record.level in ("ERROR", "CRITICAL") else "yellow"
    line = Text(f"{local_time(record.at)} ", style="dim")
    line.append("  ! ", style=style)
    line.append(f"{record.run_id} ", style="dim")
    line.append(f"{record.level.lower()}: {one_line(record.message)}", style=style)
    return line


def line_console() -> Console:
    """Where the lines go: one record per line, never wrapped by us (a terminal wraps a
    long one on screen; a pipe or a file gets it whole)."""
    return console(soft_wrap=True)


class EventPrinter:
    """Turns the feed's changes into lines, remembering where each live run's steps were
    last read.

    A run's change first prints the step changes the run made before it; the rest wait for
    the run's later changes or the end of the batch (`end_batch`), so a run's lines come
    in the order its changes were made.
    """

    def __init__(
        self,
        journal: JournalReader,
        emit: Callable[[Text], None],
        start: FeedCursor | None = None,
        logs_after: int | None = None,
    ) -> None:
        self.journal = journal
        self.emit = emit
        # Steps changed before this place in the feed are not printed.
        self.start = journal.feed_cursor() if start is None else start
        # Where each run's steps were last read, and its task id. Kept after the run
        # finishes (a retry must not print its old steps again), for the most recently
        # active runs only: a run forgotten and changed again is read from `start` (its
        # steps since then may print again; none is skipped).
        self._memory: OrderedDict[str, _Seen] = OrderedDict()
        self._touched: set[str] = set()
        # Warnings are printed from the log after this id (default: from now on).
        self._log_id = journal.last_log_id() if logs_after is None else logs_after
        self._logged = False

    def handle(self, change: Change) -> None:
        if change.kind == "log":
            self._logged = True
            return
        run_id = change.run_id
        what, _, status = change.kind.partition(".")
        seen = self._seen(run_id)
        self._show_steps(run_id, seen, until=change.cursor)
        if what != "run":
            self._touched.add(run_id)
            return
        error = None
        # The run is read once for its task id, and again only for the error a failed or
        # cancelled line shows: a fan-out of 1,000 children is 3,000 run changes.
        if seen.task_id is None or status in (model.FAILED, model.CANCELLED):
            try:
                run = self.journal.get_run(run_id)
            except Exception:  # noqa: BLE001 - deleted meanwhile: nothing to print
                return
            seen.task_id, error = run.task_id, run.error
        self.emit(run_line(run_id, seen.task_id, status, change.at, error))
        if status in model.TERMINAL_STATES:
            self._touched.discard(run_id)
        else:
            self._touched.add(run_id)

    def end_batch(self, until: FeedCursor) -> None:
        """Print what the batch's runs did after their last change, up to `until` (the
        feed's cursor after the batch: later step changes wait for the changes after it)."""
        for run_id in self._touched:
            self._show_steps(run_id, self._seen(run_id), until=until)
        self._touched.clear()
        if self._logged:
            self._logged = False
            for record in self.journal.notable_logs_since(self._log_id, limit=100_000):
                self._log_id = record.id
                self.emit(log_line(record))

    def _seen(self, run_id: str) -> _Seen:
        seen = self._memory.get(run_id)
        if seen is None:
            seen = self._memory[run_id] = _Seen(self.start)
            if len(self._memory) > REMEMBERED_RUNS:
                self._memory.popitem(last=False)
        else:
            self._memory.move_to_end(run_id)
        return seen

    def _show_steps(self, run_id: str, seen: _Seen, until: FeedCursor) -> None:
        steps, seen.read_to = self.journal.step_changes(run_id, seen.read_to, until=until)
        for step in steps:
            self.emit(step_line(run_id, step))


@dataclass
class _Seen:
    """Of one run: where in the feed its steps were read up to, and its task id."""

    read_to: FeedCursor
    task_id: str | None = None


# Runs whose place the log remembers (a few MB at most).
REMEMBERED_RUNS = 5_000
BATCH = 1_000


def follow(
    journal: JournalReader,
    stop: threading.Event,
    emit: Callable[[Text], None],
    *,
    interval: float = 0.05,
    from_start: bool = False,
) -> None:
    """Emit lines for every change until `stop` is set."""
    start = journal.feed_cursor(from_start=from_start)
    follower = ChangeFollower(journal, start)
    printer = EventPrinter(journal, emit, start=start, logs_after=0 if from_start else None)
    while not stop.is_set():
        if follower.changed():
            while True:
                changes = follower.read(BATCH)
                for change in changes:
                    printer.handle(change)
                if len(changes) < BATCH:
                    printer.end_batch(follower.cursor)
                    break
        stop.wait(interval)
