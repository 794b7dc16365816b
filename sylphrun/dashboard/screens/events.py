"""`E`: the Events view: the events sent lately, newest first, with their data and the runs
each matched (woke), triggered (`on_event`) and cancelled (`cancel_on`); under the table,
the runs of the event under the cursor. `enter` opens its run (with several, the list
below takes the focus: `enter` there opens one); `e` sends an event; `/` shows only the
events of one name (as `sylphrun events --name`).

The journal is read through the interface (`recent_events`) in a thread worker, again
only when the journal changed (`change_token`) and at most twice a second. The UI
thread never touches the journal.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, OptionList, Static
from textual.widgets.option_list import Option

from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.screens.journal_views import UNCHANGED, follow_journal
from sylphrun.journal import JournalReader
from sylphrun.journal.types import EventRecord

REFRESH_SECONDS = 0.5
LIMIT = 200  # events shown: `sylphrun events --json` has the rest
COLUMNS = ("sent", "event", "data", "runs")
DATA_CELL = 60  # characters of an event's data shown in its row


class Touched(NamedTuple):
    """A run an event touched, and how."""

    run_id: str
    how: str  # matched, triggered, cancelled


def touched_runs(event: EventRecord) -> list[Touched]:
    return (
        [Touched(r, "matched") for r in event.matched_runs]
        + [Touched(r, "triggered") for r in event.triggered_runs]
        + [Touched(r, "cancelled") for r in event.cancelled_runs]
    )


def runs_cell(event: EventRecord) -> Text:
    """ "matched run_a · triggered run_b, run_c", or "none" (dim)."""
    out = Text()
    for how, ids, style in (
        ("matched", event.matched_runs, "blue"),
        ("triggered", event.triggered_runs, "cyan"),
        ("cancelled", event.cancelled_runs, "bright_black"),
    ):
        if not ids:
            continue
        if out:
            out.append(" · ", style="dim")
        out.append(f"{how} ", style=style)
        out.append(", ".join(ids[:2]) + (f" +{len(ids) - 2}" if len(ids) > 2 else ""))
    return out if out else Text("none", style="dim")


def data_summary(data: str) -> str:
    """The event's data on one line, as compact JSON."""
    try:
        text = fmt.one_line_json(json.loads(data))
    except ValueError:
        text = data
    return text if len(text) <= DATA_CELL else text[: DATA_CELL - 1] + "…"


def event_cells(event: EventRecord, now: float) -> tuple[Text, Text, Text, Text]:
    """One row's cells; user text (names, data) as `Text`, never markup."""
    return (
        Text(fmt.clock_time(event.sent_at, now), style="dim"),
        fmt.literal(event.name, "bold"),
        fmt.literal(data_summary(event.data), "dim"),
        runs_cell(event),
    )


class EventsScreen(ModalScreen[None]):
    # Here, not in dashboard.tcss: the view is one file, registered by one binding.
    DEFAULT_CSS = """
    EventsScreen { align: center middle; }
    #events-dialog {
        width: 95%; max-width: 150; height: 85%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    #events-table { height: 1fr; }
    #events-runs { height: auto; max-height: 8; border-top: solid $primary-darken-2; }
    #events-note { height: auto; }
    #events-name { display: none; }
    #events-name.-shown { display: block; }
    """
    BINDINGS = [
        Binding("escape,q,E", "dismiss(None)", "Close"),
        Binding("e", "send_event", "Send an event"),
        Binding("slash", "filter_name", "Filter by name"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[str, EventRecord] = {}  # by event id, newest first
        self.error: str | None = None
        self.loaded = False
        self._shown_runs: tuple = ()  # (runs, their statuses) in the list below
        self.name_filter: str | None = None  # only the events of this name (exact)
        self._reread = False  # read again now, not at the next change of the journal

    def compose(self) -> ComposeResult:
        with Vertical(id="events-dialog") as box:
            box.border_title = "Events  enter opens a run it touched · e sends one · esc closes"
            yield Input(
                placeholder="event name (exact), enter applies, empty: all",
                id="events-name",
                compact=True,
            )
            table: DataTable = DataTable(id="events-table", cursor_type="row")
            for col in COLUMNS:
                table.add_column(col, key=col)
            yield table
            yield OptionList(id="events-runs")
            yield Static("", id="events-note")

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._follow_events()

    @work(thread=True, exclusive=True, group="events", exit_on_error=False)
    def _follow_events(self) -> None:
        seen = None

        def read(journal: JournalReader) -> list[EventRecord]:
            nonlocal seen
            token = journal.change_token()
            if token == seen and not self._reread:
                return UNCHANGED  # nothing written since: no read of the events
            self._reread = False
            events = journal.recent_events(name=self.name_filter, limit=LIMIT)
            seen = token
            return events

        follow_journal(self, read, self.show_events, every=REFRESH_SECONDS)

    def show_events(self, events: list[EventRecord] | None, error: str | None) -> None:
        """Update the table by event id: new events on top, the cursor on its event."""
        self.error = error
        if events is not None:
            table = self.query_one(DataTable)
            fresh = {e.event_id: e for e in events}
            now = self.app.clock()
            if list(fresh) != list(self.events):
                keep = self.selected()
                table.clear()
                for event_id, event in fresh.items():
                    table.add_row(*event_cells(event, now), key=event_id)
                if keep is not None and keep.event_id in fresh:
                    table.move_cursor(row=list(fresh).index(keep.event_id), animate=False)
            else:
                for event_id, event in fresh.items():
                    if event != self.events[event_id]:
                        for col, cell in zip(COLUMNS, event_cells(event, now), strict=True):
                            table.update_cell(event_id, col, cell)
            self.events = fresh
            self.loaded = True
            self._show_runs()
        note = self.query_one("#events-note", Static)
        if error:
            note.update(fmt.literal(error, "red"))
        elif not self.events and self.name_filter is not None:
            note.update(
                fmt.literal(f"no events named {self.name_filter} (/ changes the name)", "dim")
            )
        elif not self.events:
            note.update(
                Text(
                    "no events yet: e sends one, as `sylphrun send NAME --data JSON` does",
                    style="dim",
                )
            )
        else:
            note.update("")

    def selected(self) -> EventRecord | None:
        table = self.query_one(DataTable)
        if not self.events or not 0 <= table.cursor_row < table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.events.get(key)

    def _show_runs(self) -> None:
        """The runs the event under the cursor touched, each with how and its status."""
        event = self.selected()
        runs = tuple(touched_runs(event)) if event is not None else ()
        summaries = self.app.runs.by_id
        options = self.query_one("#events-runs", OptionList)
        statuses = tuple(getattr(summaries.get(t.run_id), "status", None) for t in runs)
        if (runs, statuses) == self._shown_runs:
            return
        self._shown_runs = (runs, statuses)
        options.clear_options()
        for touched in runs:
            line = Text(f"{touched.how:<10}", style="dim")
            line.append(touched.run_id)
            summary = summaries.get(touched.run_id)
            if summary is not None:
                line.append("  ")
                line.append_text(fmt.literal(summary.task_id, "bold"))
                line.append("  ")
                line.append_text(fmt.run_status(summary.status))
            options.add_option(Option(line, id=touched.run_id))
        options.display = bool(runs)

    @on(DataTable.RowHighlighted, "#events-table")
    def _event_highlighted(self) -> None:
        self._show_runs()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """`enter` (the table's own key): open the run the event touched; with several,
        the list of them takes the focus."""
        event.stop()
        found = self.events.get(event.row_key.value)
        runs = touched_runs(found) if found is not None else []
        if len(runs) == 1:
            self._open(runs[0].run_id)
        elif runs:
            options = self.query_one("#events-runs", OptionList)
            options.focus()
            options.highlighted = 0
        else:
            self.app.notify(
                "this event matched, triggered and cancelled no run",
                severity="warning",
                markup=False,
            )

    @on(OptionList.OptionSelected, "#events-runs")
    def _run_chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self._open(event.option.id)

    def _open(self, run_id: str) -> None:
        self.dismiss(None)
        self.app.open_run(run_id)

    def action_filter_name(self) -> None:
        box = self.query_one("#events-name", Input)
        box.add_class("-shown")
        box.focus()

    @on(Input.Submitted, "#events-name")
    def _name_chosen(self, event: Input.Submitted) -> None:
        self.name_filter = event.value.strip() or None
        if self.name_filter is None:
            event.input.remove_class("-shown")
        self._reread = True
        self.query_one(DataTable).focus()

    def action_send_event(self) -> None:
        self.app.open_send_event()
