"""What the views that follow the journal (`E` events, `S` schedules, `W` workers) share:
a thread worker that reads through the journal interface once a second and hands what it
read to the UI thread, and a table kept in place by row key so the cursor stays on its row.
The UI thread never reads the journal."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from rich.text import Text
from textual.screen import Screen
from textual.widgets import DataTable
from textual.worker import get_current_worker

from sylphrun.errors import SylphrunError
from sylphrun.journal import JournalReader

T = TypeVar("T")
UNCHANGED: Any = object()  # `read` found nothing new: nothing is handed over


def follow_journal(
    screen: Screen,
    read: Callable[[JournalReader], T],
    show: Callable[[T | None, str | None], None],
    *,
    every: float,
) -> None:
    """Run in a thread worker: `show(read(journal), None)` every `every` seconds, or
    `show(None, error)` while the journal cannot be read (none yet, locked, a server out
    of reach): the view says why and tries again."""
    from sylphrun.journal import open_journal

    worker = get_current_worker()
    journal = None
    try:
        while not worker.is_cancelled:
            try:
                if journal is None:
                    journal = open_journal(screen.app.config.journal, create=False)
                found = read(journal)
                if found is not UNCHANGED:
                    screen.app.call_from_thread(show, found, None)
            except SylphrunError as exc:
                screen.app.call_from_thread(show, None, str(exc))
            deadline = time.monotonic() + every
            while not worker.is_cancelled and time.monotonic() < deadline:
                time.sleep(0.05)  # in slices: a closed view's thread ends at once
    finally:
        if journal is not None:
            journal.close()


def sync_rows(
    table: DataTable,
    shown: Mapping[str, Any],
    fresh: Mapping[str, T],
    cells: Callable[[T], tuple[Text | str, ...]],
    columns: tuple[str, ...],
) -> None:
    """Make `table` (whose rows are `shown`, by key) show `fresh`: rows gone removed, rows
    kept updated cell by cell, new rows added at the end."""
    for gone in set(shown) - set(fresh):
        table.remove_row(gone)
    for key, value in fresh.items():
        row = cells(value)
        if key in shown:
            for col, cell in zip(columns, row, strict=True):
                table.update_cell(key, col, cell)
        else:
            table.add_row(*row, key=key)
