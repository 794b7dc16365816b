"""The runs table's columns: which ones fit a width, and one run's cells under them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.text import Text

from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.run_notes import NOTED_STATUSES, RunNote, note_line
from sylphrun.journal.types import RunSummary


@dataclass(frozen=True)
class Column:
    title: str
    width: int
    right: bool = False


def layout(
    width: int,
    *,
    error_column: bool = True,
    task_width: int = 28,
    children_column: bool = True,
    errors: bool = False,
) -> list[Column]:
    """Columns that fit `width`. When some run shown has an error (`errors`), the error
    column gets a third of the width (at least 20 cells): the start time, the attempt and
    the duration give way to it, in that order; without errors they give way to the task.
    `task_width` is the longest task id shown (the task column takes no more); the
    children column is there only when some run shown has children."""
    status = Column("STATUS" if width >= 100 else "", 11 if width >= 100 else 1)
    want_error = max(20, width // 3) if error_column and errors else 0
    optional = ["STARTED", "ATT", "DURATION"]
    while True:
        fixed = [
            Column("RUN", 21),
            *([Column("ATT", 3, right=True)] if "ATT" in optional else []),
            *([Column("STARTED", 8)] if "STARTED" in optional else []),
            *([Column("DURATION", 8, right=True)] if "DURATION" in optional else []),
            *([Column("CHILDREN", 14)] if children_column else []),
        ]
        # A leading space, then each column followed by two.
        used = 1 + status.width + sum(c.width for c in fixed) + 2 * (len(fixed) + 2)
        task_min = min(12, task_width + 2)
        room = width - used - (want_error + 2 if want_error else 0)  # for the task
        if room >= task_min or not optional:
            break
        optional.pop(0)
    # The task keeps its minimum; past that the error takes what is left.
    task = max(6, min(28, task_width + 2, max(task_min, room), width - used))
    columns = [status, Column("TASK", task), *fixed]
    rest = width - used - task - 2
    if error_column and rest >= 12:
        columns.append(Column("ERROR", rest))
    return columns


def row_cells(
    run: RunSummary,
    columns: list[Column],
    now: float,
    *,
    child_arrow: bool = True,
    note: RunNote | None = None,
) -> list[Text]:
    """`note`: what the run waits for or is held by, shown where a failed run's error is."""
    cells: list[Text] = []
    for col in columns:
        title = col.title
        if title in ("STATUS", ""):
            cells.append(fmt.run_status(run.status, word=col.width > 1))
        elif title == "TASK":
            cell = Text("↳ ", style="bright_black") if run.parent_run_id and child_arrow else Text()
            cell.append_text(fmt.literal(run.task_id, "bold"))
            cells.append(cell)
        elif title == "RUN":
            cells.append(Text(run.id, style="bright_black" if run.parent_run_id else ""))
        elif title == "ATT":
            cells.append(Text(str(run.attempt), style="magenta" if run.attempt > 1 else "dim"))
        elif title == "STARTED":
            cells.append(Text(fmt.clock_time(run.started_at or run.created_at, now), style="dim"))
        elif title == "DURATION":
            cells.append(Text(fmt.span(run.started_at, run.finished_at, now)))
        elif title == "CHILDREN":
            cells.append(
                fmt.children_text(
                    run.children_done,
                    run.children_total,
                    run.children_failed,
                    run.children_cancelled,
                )
            )
        elif title in ("ERROR", NOTE_TITLE):
            why = note_line(note, now) if note and run.status in NOTED_STATUSES else None
            if why and not run.error:
                cells.append(fmt.literal(why, "blue" if note.waits else "yellow"))
            else:
                cells.append(fmt.literal(fmt.first_line(run.error), "red"))
    return cells


# The error column's title once some run shown there says why it is not running.
NOTE_TITLE = "ERROR / WAITING FOR"


def join_cells(cells: Iterable[Text], columns: list[Column]) -> Text:
    line = Text(no_wrap=True, end="")
    line.append(" ")
    for cell, col in zip(cells, columns, strict=True):
        cell = cell.copy()
        cell.no_wrap = True
        if col.right:
            cell.pad_left(max(0, col.width - cell.cell_len))
        cell.truncate(col.width, overflow="ellipsis", pad=True)
        line.append_text(cell)
        line.append("  ")
    return line
