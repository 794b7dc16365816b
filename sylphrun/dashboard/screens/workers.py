"""`W`: the Workers view: one row per live worker, with the host it runs on, its pid,
when it started, how long since its last heartbeat, and the runs it holds now; `enter`
opens the first of them. With a PostgreSQL journal, workers on several machines share the
queue: this is where to see which machine is doing what.

It reads the journal through the interface (`worker_loads`), in a thread worker of its
own, once a second (the heartbeat ages move with the clock). The UI thread never reads.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.screens.journal_views import follow_journal, sync_rows
from sylphrun.journal import JournalReader
from sylphrun.journal.types import WorkerLoad

REFRESH_SECONDS = 1.0
COLUMNS = ("worker", "host", "pid", "started", "heartbeat", "runs")
# A heartbeat older than this is drawn yellow: the worker is busy or going (a worker is
# listed until its heartbeat is `WORKER_STALE_AFTER` old).
LATE_HEARTBEAT = 3.0


class WorkersScreen(ModalScreen[None]):
    # Here, not in dashboard.tcss: the view is one file, registered by one binding.
    DEFAULT_CSS = """
    WorkersScreen { align: center middle; }
    #workers-dialog {
        width: 90%; max-width: 130; height: 70%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    #workers-table { height: 1fr; }
    #workers-note { height: auto; }
    """
    BINDINGS = [Binding("escape,q,W", "dismiss(None)", "Close")]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, WorkerLoad] = {}
        self.error: str | None = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Vertical(id="workers-dialog") as box:
            box.border_title = "Workers  enter opens a run it holds · esc closes"
            table: DataTable = DataTable(id="workers-table", cursor_type="row")
            for col in COLUMNS:
                table.add_column(col, key=col)
            yield table
            yield Static("", id="workers-note")

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._follow_workers()

    @work(thread=True, exclusive=True, group="workers", exit_on_error=False)
    def _follow_workers(self) -> None:
        from sylphrun.trigger import WORKER_STALE_AFTER

        def read(journal: JournalReader) -> tuple[list[WorkerLoad], float]:
            now = self.app.clock()
            return journal.worker_loads(now=now, stale_after=WORKER_STALE_AFTER), now

        follow_journal(self, read, self.show_rows, every=REFRESH_SECONDS)

    def show_rows(self, found: tuple[list[WorkerLoad], float] | None, error: str | None) -> None:
        """Update the table in place, by worker id (the cursor stays on its row)."""
        self.error = error
        if found is not None:
            loads, now = found
            fresh = {w.worker_id: w for w in loads}
            sync_rows(
                self.query_one(DataTable), self.rows, fresh, lambda w: worker_cells(w, now), COLUMNS
            )
            self.rows = fresh
            self.loaded = True
        self.query_one("#workers-note", Static).update(self._note())

    def _note(self) -> Text:
        if self.error:
            return fmt.literal(self.error, "red")
        if not self.rows:
            return Text("no workers: start `sylphrun worker` on this journal", style="bold yellow")
        hosts = len({w.host for w in self.rows.values()})
        held = sum(len(w.runs) for w in self.rows.values())
        n = len(self.rows)
        return Text(
            f"{n} worker{'s' if n != 1 else ''} on {hosts} host{'s' if hosts != 1 else ''},"
            f" {held} run{'s' if held != 1 else ''} running",
            style="dim",
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """`enter` (the table's own key): open the first run the worker holds."""
        event.stop()
        load = self.rows.get(event.row_key.value)
        if load is not None and load.runs:
            self.dismiss(None)
            self.app.open_run(load.runs[0])


def worker_cells(load: WorkerLoad, now: float) -> tuple[Text, Text, Text, Text, Text, Text]:
    """One row's cells; user text (worker ids, host names) as `Text`, never markup."""
    age = max(0.0, now - load.heartbeat_at)
    # Whole seconds: heartbeats come every second, so "343ms ago" would only flicker.
    ago = f"{int(age)}s" if age < 60 else fmt.seconds(age)
    heartbeat = Text(f"{ago} ago", style="yellow" if age > LATE_HEARTBEAT else "")
    runs = Text(str(len(load.runs)), style="bold" if load.runs else "dim")
    if load.runs:
        shown = ", ".join(load.runs[:2]) + (f" +{len(load.runs) - 2}" if len(load.runs) > 2 else "")
        runs.append(f"  {shown}", style="")
    return (
        fmt.literal(load.worker_id),
        fmt.literal(load.host, "bold"),
        Text(str(load.pid)),
        Text(fmt.clock_time(load.started_at, now)),
        heartbeat,
        runs,
    )
