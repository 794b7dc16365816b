"""A table of runs drawn with Textual's line API: only the visible rows are rendered.

Textual's DataTable builds every row up front (about a second at 10,000 rows); this one
keeps a list of `RunSummary` and renders the ~30 rows on screen, each cached as a `Strip`
until that run changes, the width changes, or (for an unfinished run) its duration ticks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sylphrun.dashboard.run_notes import NOTED_STATUSES, RunNote
from sylphrun.dashboard.widgets.runs_columns import (
    NOTE_TITLE,
    Column,
    join_cells,
    layout,
    row_cells,
)
from sylphrun.journal.types import RunSummary
from sylphrun.model import TERMINAL_STATES

# Column, layout, row_cells, join_cells: moved to runs_columns, re-exported (tests use them).
__all__ = ["NOTE_TITLE", "Column", "RunsTable", "join_cells", "layout", "row_cells"]


class RunsTable(ScrollView, can_focus=True):
    """Runs, one per line, with a cursor. Posts `Highlighted` and `Opened`."""

    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]
    COMPONENT_CLASSES = {"runs-table--header", "runs-table--cursor", "runs-table--empty"}
    DEFAULT_CSS = """
    RunsTable { height: 1fr; }
    RunsTable > .runs-table--header { text-style: bold; color: $text-muted; }
    RunsTable > .runs-table--cursor { background: $block-cursor-blurred-background; }
    RunsTable:focus > .runs-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
    }
    RunsTable > .runs-table--empty { color: $text-muted; text-style: italic; }
    """

    cursor = reactive(0, always_update=True, init=False)

    class Highlighted(Message):
        def __init__(self, table: RunsTable, run_id: str | None) -> None:
            super().__init__()
            self.table = table
            self.run_id = run_id

        @property
        def control(self) -> RunsTable:
            return self.table

    class Opened(Message):
        def __init__(self, table: RunsTable, run_id: str) -> None:
            super().__init__()
            self.table = table
            self.run_id = run_id

        @property
        def control(self) -> RunsTable:
            return self.table

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        empty_text: str = "no runs",
        error_column: bool = True,
        child_arrow: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.clock = clock
        self.empty_text = empty_text
        self.error_column = error_column
        self.child_arrow = child_arrow  # off in a list of one parent's children
        self.rows: list[RunSummary] = []
        self._index: dict[str, int] = {}
        self._cache: dict[str, tuple[RunSummary, int, str, Strip]] = {}
        self._columns: list[Column] = []
        self._columns_key: tuple = ()
        self._any_children = True
        self._any_errors = False
        self._longest_task = 8
        # Run id -> what it waits for or is held by (the app's, kept up to date by the feed).
        self.notes: Mapping[str, RunNote] = {}

    # -- data ------------------------------------------------------------------------------

    @property
    def cursor_id(self) -> str | None:
        if 0 <= self.cursor < len(self.rows):
            return self.rows[self.cursor].id
        return None

    def set_rows(self, rows: list[RunSummary], *, keep: str | None = None) -> None:
        """Replace the rows (a new order or filter); the cursor stays on its run if it can."""
        old_id = self.cursor_id
        # On the top row the cursor stays there, on the newest run (watching new runs come
        # in); further down it stays on its run while new ones are added above.
        keep = keep or (old_id if self.cursor > 0 else None)
        self.rows = rows
        self._index = {r.id: i for i, r in enumerate(rows)}
        tasks = {r.task_id for r in rows}
        self._any_children = any(r.children_total for r in rows)
        self._any_errors = any(r.error for r in rows)
        self._longest_task = max((len(t) for t in tasks), default=8) + (
            2 if self.child_arrow and any(r.parent_run_id for r in rows) else 0
        )
        target = self._index[keep] if keep in self._index else min(self.cursor, len(rows) - 1)
        self._update_virtual_size()
        self.set_reactive(RunsTable.cursor, max(0, target))
        if self.cursor_id != old_id:
            self.post_message(self.Highlighted(self, self.cursor_id))
        if len(self._cache) > 4 * len(rows) + 1000:
            self._cache.clear()
        self.refresh()

    def update_rows(self, changed: Iterable[RunSummary]) -> None:
        """Some runs changed in place: redraw just their lines if they are on screen."""
        top = self.scroll_offset.y
        height = self.scrollable_content_region.height
        for run in changed:
            i = self._index.get(run.id)
            if i is None:
                continue
            self.rows[i] = run
            if (run.error and not self._any_errors) or (
                run.children_total and not self._any_children
            ):
                # The first error or child shown adds its column: every line changes.
                self._any_errors = self._any_errors or bool(run.error)
                self._any_children = self._any_children or bool(run.children_total)
                self.refresh()
            y = i - top + 1
            if 1 <= y < height:
                self.refresh(Region(0, y, self.size.width, 1))

    def tick(self) -> None:
        """Redraw the visible unfinished runs (their durations grow)."""
        top = self.scroll_offset.y
        height = self.scrollable_content_region.height
        for i in range(top, min(len(self.rows), top + height - 1)):
            if self.rows[i].status not in TERMINAL_STATES:
                self.refresh(Region(0, i - top + 1, self.size.width, 1))

    def noted_rows(self) -> dict[str, str]:
        """The runs on screen that may wait for an event or be held: id -> status."""
        top = self.scroll_offset.y
        rows = self.rows[top : top + max(1, self.scrollable_content_region.height)]
        return {r.id: r.status for r in rows if r.status in NOTED_STATUSES}

    def notes_changed(self, run_ids: Iterable[str]) -> None:
        """New notes for these runs: redraw their lines (and the header, which names them)."""
        self.refresh(Region(0, 0, self.size.width, 1))
        self.update_rows(
            [self.rows[i] for i in (self._index.get(r) for r in run_ids) if i is not None]
        )

    def select_id(self, run_id: str) -> bool:
        i = self._index.get(run_id)
        if i is None:
            return False
        self.set_cursor(i)
        return True

    # -- cursor ----------------------------------------------------------------------------

    def set_cursor(self, index: int, *, scroll: bool = True, announce: bool = True) -> None:
        index = max(0, min(index, len(self.rows) - 1)) if self.rows else 0
        old = self.cursor
        self.set_reactive(RunsTable.cursor, index)
        self._refresh_row(old)
        self._refresh_row(index)
        if scroll:
            self._scroll_to_cursor()
        if announce:
            self.post_message(self.Highlighted(self, self.cursor_id))

    def _refresh_row(self, index: int) -> None:
        y = index - self.scroll_offset.y + 1
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def action_cursor(self, delta: int) -> None:
        self.set_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.set_cursor(self.cursor + direction * max(1, self.scrollable_content_region.height - 2))

    def action_jump(self, where: int) -> None:
        self.set_cursor(0 if where == 0 else len(self.rows) - 1)

    def action_open(self) -> None:
        if self.cursor_id is not None:
            self.post_message(self.Opened(self, self.cursor_id))

    def on_click(self, event: events.Click) -> None:
        row = self.scroll_offset.y + event.y - 1
        if event.y >= 1 and 0 <= row < len(self.rows):
            self.set_cursor(row, scroll=False)
            if event.chain >= 2:
                self.action_open()

    # -- rendering -------------------------------------------------------------------------

    def on_resize(self) -> None:
        self._update_virtual_size()

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(0, len(self.rows) + 1)

    def _layout(self) -> list[Column]:
        width = self.scrollable_content_region.width
        key = (width, self._longest_task, self._any_children, self._any_errors)
        if key != self._columns_key:
            self._columns = layout(
                width,
                error_column=self.error_column,
                task_width=self._longest_task,
                children_column=self._any_children,
                errors=self._any_errors,
            )
            self._columns_key = key
            self._cache.clear()
        return self._columns

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        columns = self._layout()
        base = self.rich_style
        if y == 0:
            noted = any(
                self.notes.get(r.id) for r in self.rows[self.scroll_offset.y :][: self.size.height]
            )
            header = join_cells(
                (Text(NOTE_TITLE if c.title == "ERROR" and noted else c.title) for c in columns),
                columns,
            )
            style = base + self.get_component_rich_style("runs-table--header")
            return self._strip(header, width, style)
        index = self.scroll_offset.y + y - 1
        if not self.rows:
            if y == 2:
                style = base + self.get_component_rich_style("runs-table--empty")
                return self._strip(Text(f"  {self.empty_text}"), width, style)
            return Strip.blank(width, base)
        if index >= len(self.rows):
            return Strip.blank(width, base)
        run = self.rows[index]
        now = self.clock()
        # Unfinished runs show a growing duration: cache them per second only.
        stamp = "" if run.status in TERMINAL_STATES else str(int(now))
        note = self.notes.get(run.id)
        if note:
            stamp += f"/{id(note)}"  # a new note (an object of its own) draws the line again
        cached = self._cache.get(run.id)
        if cached is not None and cached[0] is run and cached[1] == width and cached[2] == stamp:
            strip = cached[3]
        else:
            cells = row_cells(run, columns, now, child_arrow=self.child_arrow, note=note)
            strip = self._strip(join_cells(cells, columns), width, base)
            self._cache[run.id] = (run, width, stamp, strip)
        if index == self.cursor:
            cursor = self.get_component_rich_style("runs-table--cursor")
            strip = Strip(Segment.apply_style(strip, post_style=cursor), width)
        return strip

    def _strip(self, line: Text, width: int, style: Style) -> Strip:
        line.truncate(width, pad=True)
        segments = list(line.render(self.app.console))
        segments = [s for s in segments if s.text != "\n"]
        return Strip(Segment.apply_style(segments, style), width).crop_extend(0, width, style)
