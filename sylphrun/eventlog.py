"""`sylphrun dev --no-tui`: one coloured line per run and step change, read from the journal.

Reading the journal (not the supervisor's in-process state) means the log shows exactly
what a dashboard would, including runs executed by other processes. Events say which runs
changed; step events are coalesced (schema V2), so the steps of a run that changed are
read back and compared with what was printed: a step that started and finished between two
looks gets one line, "completed", not two.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from sylphrun import model
from sylphrun.journal import Connection, logs, queries
from sylphrun.journal.queries import StepChange
from sylphrun.render import STATUS_STYLE, STEP_STYLE, console, duration, local_time, one_line

# Step rows are read back from a little before the last look: a worker takes its clock
# reading before its commit, so a change can land with a time just before the look.
CLOCK_SLACK = 2.0


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


def log_line(record: logs.LogRecord) -> Text:
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
    """Turns the journal's events into lines, remembering what each live run showed.

    The log may read a batch of events after they happened; the steps table says how the
    steps are now. So a run event first prints the step changes made before it, and the
    rest wait for the run's later events or the end of the batch, keeping lines in order.
    """

    def __init__(self, conn: Connection, emit: Callable[[Text], None],
                 started: float | None = None, logs_after: int | None = None) -> None:
        self.conn = conn
        self.emit = emit
        self.started = time.time() if started is None else started
        # What each run's steps showed, and when its steps were last read. Kept after the
        # run finishes (a retry, or a late event, must not print its old steps again), for
        # the most recently active runs only.
        self._memory: OrderedDict[str, _Seen] = OrderedDict()
        self._touched: set[str] = set()
        # Warnings are printed from the log after this id (default: from now on).
        self._log_id = logs.last_log_id(conn) if logs_after is None else logs_after
        self._logged = False

    def handle(self, event: tuple[int, float, str, str, str | None]) -> None:
        _, at, run_id, kind, step_key = event
        if kind == "log":
            self._logged = True
            return
        what, _, status = kind.partition(".")
        seen = self._seen(run_id)
        self._show_steps(run_id, seen, until=at, key=step_key)
        if what != "run":
            self._touched.add(run_id)
            return
        error = None
        # The run is read once for its task id, and again only for the error a failed or
        # cancelled line shows: a fan-out of 1,000 children is 3,000 run events.
        if seen.task_id is None or status in (model.FAILED, model.CANCELLED):
            try:
                run = queries.get_run(self.conn, run_id)
            except Exception:  # noqa: BLE001 - deleted meanwhile: nothing to print
                return
            seen.task_id, error = run.task_id, run.error
        self.emit(run_line(run_id, seen.task_id, status, at, error))
        if status in model.TERMINAL_STATES:
            self._touched.discard(run_id)
        else:
            self._touched.add(run_id)

    def end_batch(self) -> None:
        """Print what the batch's runs did after their last event (a coalesced burst)."""
        for run_id in self._touched:
            self._show_steps(run_id, self._seen(run_id), until=None)
        self._touched.clear()
        if self._logged:
            self._logged = False
            for record in logs.notable_logs_since(self.conn, self._log_id, limit=100_000):
                self._log_id = record.id
                self.emit(log_line(record))

    def _seen(self, run_id: str) -> _Seen:
        seen = self._memory.get(run_id)
        if seen is None:
            seen = self._memory[run_id] = _Seen({}, self.started)
            if len(self._memory) > REMEMBERED_RUNS:
                self._memory.popitem(last=False)
        else:
            self._memory.move_to_end(run_id)
        return seen

    def _show_steps(self, run_id: str, seen: _Seen, until: float | None,
                    key: str | None = None) -> None:
        # Steps are found by their times (since the last look, less the slack) plus the
        # one the event names. Known gap: a write whose clock reading preceded its commit
        # by more than CLOCK_SLACK (stuck behind a lock that long) and that no event names
        # is not printed; the dashboard, which re-reads the whole run, still shows it.
        for step in queries.steps_changed_since(self.conn, run_id, seen.looked - CLOCK_SLACK,
                                                key):
            changed = max(step.started_at or 0.0, step.finished_at or 0.0)
            if until is not None and changed > until:
                break
            state = (step.status, step.attempts)
            if seen.shown.get(step.key) != state:
                seen.shown[step.key] = state
                self.emit(step_line(run_id, step))
        seen.looked = max(seen.looked, time.time() if until is None else until)


@dataclass
class _Seen:
    """What the log printed of one run: each step's (status, attempts), when its steps were
    last read, and its task id."""

    shown: dict[str, tuple[str, int]]
    looked: float
    task_id: str | None = None


# Runs whose printed step states the log remembers (a few MB at most).
REMEMBERED_RUNS = 5_000


def follow(conn: Connection, stop: threading.Event, emit: Callable[[Text], None],
           *, interval: float = 0.05, from_start: bool = False) -> None:
    """Emit lines for every change until `stop` is set."""
    cursor = queries.JournalCursor(conn, after=0 if from_start else queries.last_event_id(conn))
    printer = EventPrinter(conn, emit, started=0.0 if from_start else None,
                           logs_after=0 if from_start else None)
    while not stop.is_set():
        if cursor.changed():
            while True:
                events = cursor.new_events(1000)
                for event in events:
                    printer.handle(event)
                if len(events) < 1000:
                    printer.end_batch()
                    break
        stop.wait(interval)
