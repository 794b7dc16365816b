"""The Tasks tab: the discovered tasks, and the last reload or the error that blocks it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.status import ReloadStatus


def reload_text(
    reload: ReloadStatus | None,
    *,
    discovery_error: str | None,
    dev: bool,
    now: float,
    project: str,
) -> Text:
    if reload is not None and reload.error:
        out = Text(
            "✗ reload failed: the workers keep running the previous code until this "
            "is fixed and saved\n\n",
            style="bold red",
        )
        out.append_text(fmt.block(reload.error, "red"))
        return out
    if discovery_error:
        out = Text(
            "✗ cannot import the project's tasks (triggering is off until this is "
            "fixed; restart the dashboard after)\n\n",
            style="bold red",
        )
        out.append_text(fmt.block(discovery_error, "red"))
        return out
    if reload is not None and reload.at is not None:
        out = Text("✓ ", style="green")
        out.append(f"reloaded at {fmt.clock_time(reload.at, now)}")
        if reload.duration is not None:
            out.append(f" in {fmt.seconds(reload.duration)}")
        out.append(" · saving a task file reloads it", style="dim")
        return out
    if dev:
        out = Text("✓ ", style="green")
        out.append("tasks loaded at start")
        out.append(" · saving a task file reloads them", style="dim")
        return out
    out = Text("tasks found in ", style="dim")
    out.append_text(fmt.literal(project, "dim"))
    out.append(" (no hot reload here: `sylphrun dev` reloads on save)", style="dim")
    return out


class TasksPanel(Vertical):
    DEFAULT_CSS = """
    TasksPanel { height: 1fr; }
    TasksPanel > #reload-scroll { height: auto; max-height: 50%; padding: 0 1; }
    TasksPanel > #tasks-table { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="reload-scroll"):
            yield Static(Text("looking for tasks…", style="dim"), id="reload-status")
        table: DataTable = DataTable(id="tasks-table", cursor_type="row", zebra_stripes=False)
        yield table

    ready = False

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for title in ("TASK", "RUNS", "FAILED", "RETRIES", "TIMEOUT", "SOURCE"):
            table.add_column(title, key=title.lower())
        self.ready = True
        self.app.refresh_tasks()

    def show(
        self,
        task_ids: list[str],
        tasks: Mapping[str, Any],
        run_counts: dict[str, tuple[int, int]],
        status: Text,
        project_dir: str,
    ) -> None:
        if not self.ready:
            return
        self.query_one("#reload-status", Static).update(status)
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        for task_id in task_ids:
            task = tasks.get(task_id)
            runs, failed = run_counts.get(task_id, (0, 0))
            retries = timeout = source = Text("-", style="dim")
            if task is not None and hasattr(task, "retry"):
                retries = Text(str(task.retry.max_attempts - 1))
                timeout = Text(f"{task.timeout:g}s" if task.timeout else "-")
                try:
                    where = os.path.relpath(task.source_file, project_dir)
                except ValueError:
                    where = str(task.source_file)
                source = fmt.literal(f"{where}:{task.source_line}", "dim")
            table.add_row(
                fmt.literal(task_id, "bold"),
                Text(f"{runs:,}"),
                Text(f"{failed:,}", style="red" if failed else "dim"),
                retries,
                timeout,
                source,
                key=task_id,
            )
        if task_ids:
            table.move_cursor(row=min(cursor, len(task_ids) - 1))

    def selected_task(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return key.value
