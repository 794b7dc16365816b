"""The dashboard's Schedules view (`S`): rows from the registry and the schedules' state,
read through the journal interface; `p` pauses and resumes; `enter` opens the last run.
In process over a journal written through the interface (no workers needed)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from textual.widgets import DataTable

from sylphrun import model
from sylphrun.config import load_config
from sylphrun.dashboard.app import DashboardApp
from sylphrun.dashboard.screens.run import RunScreen
from sylphrun.dashboard.screens.runs import RunsScreen
from sylphrun.dashboard.screens.schedules import SchedulesScreen
from sylphrun.journal import open_journal
from sylphrun.journal.types import ScheduleTick
from sylphrun.runtime.scheduler import tick_run
from sylphrun.schedules import parse_schedule


def scheduled_journal(root: Path):
    (root / "sylphrun.toml").write_text('tasks = ["tasks"]\n')
    config = load_config(root)
    journal = open_journal(config.journal)
    now = time.time()
    records = [
        model.TaskRecord(
            "nightly",
            {"schedule": parse_schedule("nightly", "0 3 * * *", tz="Europe/Paris").to_json()},
            "tasks/a.py",
            1,
            "f",
        ),
        model.TaskRecord(
            "[bold]every[/bold]",
            {"schedule": {"expression": 60, "tz": None, "catchup": "all"}},
            "tasks/a.py",
            9,
            "f",
        ),
        model.TaskRecord("plain", {}, "tasks/a.py", 20, "f"),
    ]
    journal.register_tasks(records, registered_by="test", project_dir=str(root), now=now)
    slot = 60 * (now // 60)
    [created] = journal.fire_schedule(
        "[bold]every[/bold]",
        [ScheduleTick(slot, tick_run("[bold]every[/bold]", slot))],
        settled_through=slot,
        now=now,
    )
    journal.close()
    return config, created.run_id


def test_the_schedules_view_lists_pauses_and_opens_the_last_run(tmp_path: Path) -> None:
    config, run_id = scheduled_journal(tmp_path)
    app = DashboardApp(config, tasks={})

    async def until(pilot, predicate, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await pilot.pause(0.02)

    def cells(row: int) -> list[str]:
        table = app.screen.query_one(DataTable)
        return [str(c) for c in table.get_row_at(row)]

    async def scenario() -> None:
        async with app.run_test(size=(130, 30)) as pilot:
            await until(pilot, lambda: app.loaded, "the journal")
            await pilot.press("S")
            await until(
                pilot,
                lambda: isinstance(app.screen, SchedulesScreen) and app.screen.loaded,
                "the schedules",
            )
            screen = app.screen
            assert list(screen.rows) == ["[bold]every[/bold]", "nightly"]  # not "plain"
            every, nightly = cells(0), cells(1)
            assert every[0] == "[bold]every[/bold]"  # markup shown as written
            assert every[1] == "every 60s, catchup=all" and run_id in every[3]
            assert "queued" in every[4]
            assert nightly[1] == "0 3 * * * (Europe/Paris)" and nightly[3] == "-"
            await pilot.press("down", "p")  # the cursor on "nightly"
            await until(pilot, lambda: screen.rows["nightly"]["paused"], "the pause")
            assert cells(1)[2] == "paused"
            journal = open_journal(config.journal, create=False)
            try:
                assert journal.schedule_states()["nightly"].paused
            finally:
                journal.close()
            await pilot.press("p")
            await until(pilot, lambda: not screen.rows["nightly"]["paused"], "the resume")
            await pilot.press("up", "enter")
            await until(
                pilot,
                lambda: isinstance(app.screen, RunScreen) and app.screen.run_id == run_id,
                "the last run to open",
            )
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, RunsScreen), "the runs list")

    asyncio.run(scenario())
