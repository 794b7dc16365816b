"""`S`: the Schedules view: each scheduled task, its next fire time, its last run and
whether it is paused; `p` pauses or resumes the one under the cursor, `enter` opens its
last run.

It reads the journal through the interface, in a thread worker, once a second (schedules
change at most once a second, and a slot's run shows in the runs list meanwhile); the
pause goes through the interface too, in a thread. The UI thread never touches SQLite.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.screens.journal_views import follow_journal, sync_rows
from sylphrun.errors import SylphrunError
from sylphrun.journal import JournalReader

REFRESH_SECONDS = 1.0
COLUMNS = ("task", "schedule", "next", "last run", "status")


class SchedulesScreen(ModalScreen[None]):
    # Here, not in dashboard.tcss: the view is one file, registered by one binding.
    DEFAULT_CSS = """
    SchedulesScreen { align: center middle; }
    #schedules-dialog {
        width: 90%; max-width: 130; height: 70%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    #schedules-table { height: 1fr; }
    #schedules-note { height: auto; }
    """
    BINDINGS = [
        Binding("escape,q,S", "dismiss(None)", "Close"),
        Binding("p", "toggle_pause", "Pause/resume"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}
        self.error: str | None = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Vertical(id="schedules-dialog") as box:
            box.border_title = "Schedules  p pause/resume · enter last run · esc closes"
            table: DataTable = DataTable(id="schedules-table", cursor_type="row")
            for col in COLUMNS:
                table.add_column(col, key=col)
            yield table
            yield Static("", id="schedules-note")

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._follow_schedules()

    @work(thread=True, exclusive=True, group="schedules", exit_on_error=False)
    def _follow_schedules(self) -> None:
        from sylphrun.schedule_view import schedule_rows

        def read(journal: JournalReader) -> list[dict[str, Any]]:
            return schedule_rows(
                journal.registered_tasks(), journal.schedule_states(), self.app.clock()
            )

        follow_journal(self, read, self.show_rows, every=REFRESH_SECONDS)

    def show_rows(self, rows: list[dict[str, Any]] | None, error: str | None) -> None:
        """Update the table in place, by task id (the cursor stays on its row)."""
        self.error = error
        if rows is not None:
            fresh = {r["task"]: r for r in rows}
            sync_rows(self.query_one(DataTable), self.rows, fresh, schedule_cells, COLUMNS)
            self.rows = fresh
            self.loaded = True
        note = self.query_one("#schedules-note", Static)
        if error:
            note.update(fmt.literal(error, "red"))
        elif not self.rows:
            note.update(
                Text(
                    'no scheduled tasks: `@task(..., schedule="0 3 * * *")` makes one', style="dim"
                )
            )
        else:
            note.update("")

    def selected(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.rows.get(key)

    def action_toggle_pause(self) -> None:
        row = self.selected()
        if row is not None:
            self._set_paused(row["task"], not row["paused"])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """`enter` (the table's own key): open the row's last run."""
        event.stop()
        row = self.rows.get(event.row_key.value)
        if row is not None and row["last_run_id"]:
            self.dismiss(None)
            self.app.open_run(row["last_run_id"])

    @work(thread=True, group="schedules-pause", exit_on_error=False)
    def _set_paused(self, task_id: str, paused: bool) -> None:
        from sylphrun.journal import open_journal

        try:
            journal = open_journal(self.app.config.journal, create=False)
            try:
                journal.set_schedule_paused(task_id, paused, now=self.app.clock())
            finally:
                journal.close()
        except SylphrunError as exc:
            self.app.call_from_thread(self.app.notify, str(exc), severity="error")
            return
        word = "paused" if paused else "resumed"
        self.app.call_from_thread(self.app.notify, f"{task_id}: schedule {word}")
        self._follow_schedules()  # show it now, not at the next refresh


def schedule_cells(row: dict[str, Any]) -> tuple[Text, Text, Text, Text, Text]:
    """One row's cells; user text (task ids, expressions) as `Text`, never markup."""
    from sylphrun.schedules import Schedule

    what = Schedule(row["expression"], row["tz"], row["catchup"]).describe()
    if row["catchup"] != "latest":
        what += f", catchup={row['catchup']}"
    upcoming = (
        Text("paused", style="yellow")
        if row["paused"]
        else Text(_stamp(row["next_fire_at"]) or "never", style="")
    )
    last = Text(
        f"{_stamp(row['last_scheduled_at'])}  {row['last_run_id']}" if row["last_run_id"] else "-"
    )
    status = fmt.run_status(row["last_run_status"]) if row["last_run_status"] else Text("-")
    return (fmt.literal(row["task"]), fmt.literal(what), upcoming, last, status)


def _stamp(iso_text: str | None) -> str:
    if not iso_text:
        return ""
    return iso_text.replace("T", " ").replace(".000Z", "Z")
