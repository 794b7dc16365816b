"""Which worker is on which host (issue 17): `sylphrun workers [--json]`, and the
dashboard's Workers view (`W`), the run heading's "held by" and the status line's hosts.
Other hosts are pretended: a worker registered through the journal interface with another
host name, as a `sylphrun worker` on that machine would register itself."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from rich.text import Text
from textual.widgets import DataTable, Static

from sylphrun.config import load_config
from sylphrun.dashboard.app import DashboardApp
from sylphrun.dashboard.screens.run import RunScreen
from sylphrun.dashboard.screens.workers import WorkersScreen
from sylphrun.dashboard.widgets.run_panels import RunHeading
from sylphrun.dashboard.widgets.status_line import StatusLine
from sylphrun.journal import RunSpec, open_journal
from sylphrun.journal.types import TaskTerms

LEASE = 60.0


def pretend_workers(location, now: float) -> str:
    """Three workers on two hosts; w-alpha-1 holds one running run (its id returned)."""
    journal = open_journal(location)
    try:
        for worker_id, host, pid in (
            ("w-alpha-1", "alpha", 101),
            ("w-alpha-2", "alpha", 102),
            ("w-beta-1", "beta", 201),
        ):
            journal.register_worker(
                worker_id, pid=pid, host=host, supervisor_pid=1, wake_addr=None, now=now
            )
        [(run_id, _)] = journal.enqueue_runs([RunSpec("hello", "{}", None)], now)
        journal.claim_runs(
            "w-alpha-1", 1, lease_seconds=LEASE, known_tasks={"hello": TaskTerms()}, now=now
        )
        return run_id
    finally:
        journal.close()


@pytest.fixture(params=["sqlite", "postgres"])
def journal_location(request, project):
    if request.param == "sqlite":
        return str(project.config().journal)
    return request.getfixturevalue("postgres_url")


def test_workers_json_lists_each_worker_with_its_host_and_runs(project, journal_location):
    run_id = pretend_workers(journal_location, time.time())
    done = project.cli("workers", "--json", "--journal", journal_location)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [(w["worker_id"], w["host"], w["pid"], w["runs"]) for w in doc] == [
        ("w-alpha-1", "alpha", 101, [run_id]),
        ("w-alpha-2", "alpha", 102, []),
        ("w-beta-1", "beta", 201, []),
    ]
    assert set(doc[0]) == {"worker_id", "host", "pid", "started_at", "heartbeat_at", "runs"}
    assert doc[0]["started_at"].endswith("Z") and doc[0]["heartbeat_at"].endswith("Z")


def test_workers_prints_a_table_and_says_when_there_are_none(project):
    none = project.cli("workers")
    assert none.returncode == 0 and "no workers: start `sylphrun worker`" in none.stdout
    assert project.cli("workers", "--json").stdout.strip() == "[]"
    run_id = pretend_workers(project.config().journal, time.time())
    table = project.cli("workers").stdout
    assert "HOST" in table and "beta" in table
    assert f"1  {run_id}" in table


# -- the dashboard ------------------------------------------------------------------------

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: the workers' heartbeats and the app's clock


def dashboard_over(root: Path, location: str, clock_at: float = T0 + 2):
    """A dashboard on the journal at `location`, its clock fixed just after the workers'
    last heartbeat (so they stay live however slow the machine is)."""
    (root / "sylphrun.toml").write_text(f'tasks = ["tasks"]\njournal = "{location}"\n')
    return DashboardApp(load_config(root), tasks={"hello": "hello"}, clock=lambda: clock_at)


async def until(pilot, predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def test_the_workers_view_shows_each_workers_host_and_opens_its_run(
    tmp_path: Path, journal_location
) -> None:
    run_id = pretend_workers(journal_location, T0)
    app = dashboard_over(tmp_path, journal_location)

    def cells(row: int) -> list[str]:
        return [str(c) for c in app.screen.query_one(DataTable).get_row_at(row)]

    async def scenario() -> None:
        async with app.run_test(size=(130, 30)) as pilot:
            await until(pilot, lambda: app.loaded and app.worker_places.hosts, "the journal")
            status = str(app.screen.query_one(StatusLine).render())
            assert "3 workers on 2 hosts" in status
            await pilot.press("W")
            await until(
                pilot,
                lambda: isinstance(app.screen, WorkersScreen) and app.screen.loaded,
                "the workers view",
            )
            assert cells(0)[:3] == ["w-alpha-1", "alpha", "101"]
            assert cells(0)[4] == "2s ago" and cells(0)[5] == f"1  {run_id}"
            assert [cells(n)[:2] for n in (1, 2)] == [["w-alpha-2", "alpha"], ["w-beta-1", "beta"]]
            note = str(app.screen.query_one("#workers-note", Static).render())
            assert note == "3 workers on 2 hosts, 1 run running"
            await pilot.press("enter")  # the cursor on w-alpha-1: opens the run it holds
            await until(
                pilot,
                lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None,
                "the held run to open",
            )
            heading = str(app.screen.query_one(RunHeading).render())
            assert app.screen.run_id == run_id
            assert "on host alpha, worker w-alpha-1 (pid 101)" in heading

    asyncio.run(scenario())


def test_one_host_is_not_named_in_the_status_line(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "journal.db")
    for n in (1, 2):
        journal.register_worker(
            f"w{n}", pid=n, host="solo", supervisor_pid=1, wake_addr=None, now=T0
        )
    journal.close()
    app = dashboard_over(tmp_path, str(tmp_path / "journal.db"))

    async def scenario() -> None:
        async with app.run_test(size=(130, 30)) as pilot:
            await until(pilot, lambda: app.loaded and app.workers_alive, "the workers")
            await pilot.pause(0.1)
            status = str(app.screen.query_one(StatusLine).render())
            assert "2 workers" in status and "hosts" not in status

    asyncio.run(scenario())


def test_snapshot_workers_view(snap_compare, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    counter = iter(range(1, 100))
    monkeypatch.setattr("sylphrun.journal.ids.new_run_id", lambda: f"run_{next(counter):04d}snap")
    location = str(tmp_path / "journal.db")
    pretend_workers(location, T0)
    journal = open_journal(location)
    journal.heartbeat("w-beta-1", {}, lease_seconds=LEASE, now=T0 - 1)  # a late one
    journal.close()

    class SnapshotApp(DashboardApp):
        def title_text(self) -> Text:  # the temp folder's path would change every run
            return Text("sylphrun  /srv/shop  journal .sylphrun/journal.db")

    (tmp_path / "sylphrun.toml").write_text(f'tasks = ["tasks"]\njournal = "{location}"\n')
    app = SnapshotApp(load_config(tmp_path), tasks={"hello": "hello"}, clock=lambda: T0 + 4)

    async def run_before(pilot) -> None:
        await until(pilot, lambda: app.loaded and app.worker_places.hosts, "the journal")
        await pilot.press("W")
        await until(
            pilot,
            lambda: isinstance(app.screen, WorkersScreen) and app.screen.loaded,
            "the workers view",
        )
        await pilot.pause(0.3)

    try:
        assert snap_compare(app, terminal_size=(120, 30), run_before=run_before)
    finally:
        monkeypatch.undo()
        time.tzset()
