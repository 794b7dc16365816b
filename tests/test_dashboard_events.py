"""The dashboard's parts of events and flow control (issues 14, 15), driven with Textual's
pilot against a journal REAL workers keep writing to: a run waiting for an event says what
it waits for; a queued run held by its key's concurrency or by a debounce says so; `e`
sends an event (checked in the dialog, sent as `sylphrun send` sends it); `E` lists the
events and what each matched or triggered, and opens those runs.

One engine serves the module (starting workers costs seconds on a loaded machine); each
test uses its own runs (its own order ids), so the order of the tests does not matter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Engine, Project, wait_until
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, OptionList, Static, TextArea

from sylphrun import model
from sylphrun.config import Config
from sylphrun.dashboard.app import DashboardApp
from sylphrun.dashboard.screens.events import EventsScreen
from sylphrun.dashboard.screens.run import RunScreen
from sylphrun.dashboard.screens.runs import RunsScreen
from sylphrun.dashboard.screens.send_event import SendEventScreen
from sylphrun.dashboard.widgets.run_panels import RunHeading
from sylphrun.dashboard.widgets.runs_table import RunsTable, join_cells, row_cells
from sylphrun.dashboard.widgets.step_tree import StepTree
from sylphrun.journal import open_journal

TASKS = """
import asyncio
from sylphrun import task, Concurrency, Debounce, RateLimit

def value(v):
    return v

async def hold_the_slot():
    await asyncio.sleep(600)

@task(id="approval", on_event="order.created")
async def approval(payload, ctx):
    await ctx.step.run("reserve", value, payload["order_id"])
    decision = await ctx.step.wait_for_event(
        "approval", "order.approved", match={"order_id": payload["order_id"]}, timeout=86400)
    await ctx.step.run("ship", value, decision)
    return {"approved": decision}

@task(id="per-user", concurrency=Concurrency(limit=1, key="user_id"))
async def per_user(payload, ctx):
    await ctx.step.run("work", hold_the_slot)

@task(id="quiet", debounce=Debounce(period=3600))
async def quiet(payload, ctx):
    return payload

@task(id="hourly", rate_limit=RateLimit(limit=1, period=3600))
async def hourly(payload, ctx):
    return payload
"""


@dataclass
class Live:
    config: Config
    eng: Engine


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("dash-events") / "proj"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        project = Project(root)
        project.write_tasks(TASKS)
        eng = Engine(project).start()
        try:
            yield Live(project.config(), eng)
        finally:
            eng.stop()


def waiting_on_event(eng: Engine, run_id: str) -> bool:
    return any(s.key == "approval" and s.status == model.STEP_WAITING for s in eng.steps(run_id))


async def until(
    pilot: Pilot, predicate: Callable[[], object], what: str, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def drive(
    live: Live, scenario: Callable[[Pilot], Awaitable[None]], size: tuple[int, int] = (150, 35)
) -> None:
    app = DashboardApp(live.config, tasks=dict(live.eng.tasks))

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await until(
                pilot,
                lambda: app.loaded and isinstance(app.screen, RunsScreen),
                "the first read of the journal",
            )
            await scenario(pilot)

    asyncio.run(main())


def row_text(app: DashboardApp, run_id: str) -> str:
    """The runs list's line for a run, as drawn (with the app's notes)."""
    table = app.screen.query_one("#runs-table", RunsTable)
    run = next(r for r in table.rows if r.id == run_id)
    columns = table._layout()
    cells = row_cells(run, columns, app.clock(), note=app.notes.get(run_id))
    return join_cells(cells, columns).plain


async def open_run(pilot: Pilot, run_id: str) -> RunScreen:
    app = pilot.app
    app.open_run(run_id)
    await until(
        pilot,
        lambda: (
            isinstance(app.screen, RunScreen)
            and app.screen.detail is not None
            and app.screen.run_id == run_id
        ),
        f"run {run_id} to open",
    )
    return app.screen


def heading(app: DashboardApp) -> str:
    return str(app.screen.query_one(RunHeading).render())


def test_a_run_waiting_for_an_event_says_what_it_waits_for(live: Live) -> None:
    run_id = live.eng.trigger("approval", {"order_id": 42})
    wait_until(lambda: waiting_on_event(live.eng, run_id), message="the wait for order.approved")
    wanted = "waiting for event order.approved where order_id=42, times out in 2"

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await until(
            pilot,
            lambda: wanted in (row_text(app, run_id) if run_id in app.runs.by_id else ""),
            "the runs list's note",
        )
        header = app.screen.query_one("#runs-table", RunsTable).render_line(0).text
        assert "WAITING FOR" in header
        await open_run(pilot, run_id)
        await until(pilot, lambda: wanted in heading(app), "the run heading's line")
        tree = app.screen.query_one(StepTree)
        labels = [n.label.plain for n in tree.root.children]
        assert any("approval" in label and "◐ order.approved" in label for label in labels)

    drive(live, scenario)


def test_a_held_queued_run_says_why_it_is_not_starting(live: Live) -> None:
    first = live.eng.trigger("per-user", {"user_id": 7})
    wait_until(
        lambda: live.eng.run_record(first).status == model.RUNNING,
        message="the first per-user run to hold user 7's slot",
    )
    second = live.eng.trigger("per-user", {"user_id": 7})
    quiet = live.eng.trigger("quiet", {"n": 1})
    live.eng.wait(live.eng.trigger("hourly", {}))
    limited = live.eng.trigger("hourly", {})

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await until(
            pilot, lambda: second in app.runs.by_id and quiet in app.runs.by_id, "the queued runs"
        )
        await until(
            pilot,
            lambda: "held: concurrency user_id=7 (1/1)" in row_text(app, second),
            "the concurrency hold in the list",
        )
        await until(
            pilot,
            lambda: "debouncing, starts in 3" in row_text(app, quiet),
            "the debounce in the list",
        )
        await until(
            pilot,
            lambda: (
                limited in app.runs.by_id
                and "rate limited until " in row_text(app, limited)
                and "(1/1 per 3600s)" in row_text(app, limited)
            ),
            "the rate limit in the list",
        )
        assert app.runs.by_id[second].status == model.QUEUED
        await open_run(pilot, second)
        await until(
            pilot,
            lambda: "held: concurrency user_id=7 (1/1)" in heading(app),
            "the hold in the run heading",
        )
        # The slot frees (its run is cancelled): the hold goes, read again without a key.
        journal = open_journal(live.config.journal)
        try:
            from sylphrun import actions

            actions.cancel_run(journal, first)
        finally:
            journal.close()
        await until(pilot, lambda: "held:" not in heading(app), "the hold to go")

    drive(live, scenario)


def recent(live: Live, name: str):
    journal = open_journal(live.config.journal, create=False)
    try:
        return journal.recent_events(name=name)
    finally:
        journal.close()


def test_send_an_event_from_the_dialog(live: Live) -> None:
    run_id = live.eng.trigger("approval", {"order_id": 43})
    wait_until(lambda: waiting_on_event(live.eng, run_id), message="the wait for order.approved")

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, SendEventScreen), "the dialog")
        dialog = app.screen
        error = dialog.query_one("#event-error", Static)
        await pilot.press("ctrl+s")  # no name yet
        await pilot.pause()
        assert isinstance(app.screen, SendEventScreen)
        assert "type the event's name" in str(error.render())  # a hint, not an error
        dialog.query_one("#event-name", Input).value = "order.approved"
        editor = dialog.query_one("#event-data", TextArea)
        editor.load_text('{"order_id": 43,')  # bad JSON
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, SendEventScreen)
        assert "not valid JSON" in str(error.render())
        editor.load_text("[1, 2]")  # JSON, not an object
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, SendEventScreen)
        assert "must be a JSON object" in str(error.render())
        assert recent(live, "order.approved") == []  # nothing was sent
        editor.load_text('{"order_id": 43, "by": "[bold]ann[/bold]"}')
        await pilot.press("ctrl+s")
        await until(
            pilot, lambda: not isinstance(app.screen, SendEventScreen), "the dialog to close"
        )
        await until(
            pilot,
            lambda: any(f"matched {run_id}" in n.message for n in app._notifications),
            "the notification",
        )
        [sent] = recent(live, "order.approved")
        assert sent.matched_runs == [run_id]
        assert any(sent.event_id in n.message for n in app._notifications)

    drive(live, scenario)
    result = live.eng.wait(run_id)
    assert result.output == {"approved": {"order_id": 43, "by": "[bold]ann[/bold]"}}


def test_the_events_view_lists_events_and_opens_the_runs_they_touched(live: Live) -> None:
    journal = open_journal(live.config.journal)
    try:
        from sylphrun.events import deliver

        created = deliver(journal, "order.created", '{"order_id": 44}', None)
        nothing = deliver(journal, "order.noticed", '{"note": "[red]x[/red]"}', None)
    finally:
        journal.close()
    [triggered] = created.triggered_runs

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await pilot.press("E")
        await until(
            pilot,
            lambda: isinstance(app.screen, EventsScreen) and app.screen.loaded,
            "the events view",
        )
        screen = app.screen
        table = screen.query_one(DataTable)
        rows = {key.value: [str(c) for c in table.get_row(key)] for key in table.rows}
        assert rows[nothing.event_id][1] == "order.noticed"
        assert rows[nothing.event_id][2] == '{"note": "[red]x[/red]"}'  # shown as written
        assert rows[nothing.event_id][3] == "none"
        assert rows[created.event_id][3] == f"triggered {triggered}"
        await pilot.press("slash")
        await pilot.press(*"order.noticed", "enter")
        await until(pilot, lambda: list(screen.events) == [nothing.event_id], "the name filter")
        await pilot.press("slash", *["backspace"] * len("order.noticed"), "enter")
        await until(pilot, lambda: created.event_id in screen.events, "every event again")
        row = list(screen.events).index(created.event_id)
        table.move_cursor(row=row)
        await pilot.pause()
        runs = screen.query_one("#events-runs", OptionList)
        await until(pilot, lambda: runs.option_count == 1, "the event's runs below")
        await pilot.press("enter")
        await until(
            pilot,
            lambda: isinstance(app.screen, RunScreen) and app.screen.run_id == triggered,
            "the triggered run to open",
        )

    drive(live, scenario)


def test_help_names_the_event_keys() -> None:
    from sylphrun.dashboard.screens.help import KEYS

    keys = {key: what for _, section in KEYS for key, what in section}
    assert "events" in keys["E"] and "send an event" in keys["e"]


def test_readme_mentions_the_event_keys() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "`E`" in readme and "`e`" in readme


# -- snapshot ------------------------------------------------------------------------------

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.fixture
def events_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Events sent through the journal interface with fixed ids and times: one triggers
    an `on_event` task's run, one cancels it (`cancel_on`), one touches nothing; and an
    app with a fixed clock."""
    import itertools

    from rich.text import Text

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    counter = itertools.count(1)
    monkeypatch.setattr(
        "sylphrun.journal.ids.new_run_id", lambda: f"run_{next(counter):04d}snapshot"
    )
    journal = open_journal(tmp_path / "journal.db")
    options = {
        "on_event": ["order.created"],
        "cancel_on": [{"event": "order.cancelled", "match": "order_id"}],
    }
    journal.register_tasks(
        [model.TaskRecord("order-approval", options, "tasks/a.py", 1, "f")],
        registered_by="test",
        project_dir=str(tmp_path),
        now=T0,
    )
    for n, (event_id, name, data) in enumerate(
        [
            ("evt_0001", "order.created", '{"order_id": 42, "items": ["[red]mug[/red]"]}'),
            ("evt_0002", "order.noticed", '{"note": "[bold]not bold[/bold]"}'),
            ("evt_0003", "order.cancelled", '{"order_id": 42, "reason": "customer asked"}'),
        ]
    ):
        journal.send_event(event_id=event_id, name=name, data=data, now=T0 + 10 * n)
    journal.close()
    config = Config(
        project_dir=tmp_path, source=None, tasks=["tasks"], journal=tmp_path / "journal.db"
    )

    class SnapshotApp(DashboardApp):
        def title_text(self) -> Text:  # the temp folder's path would change every run
            return Text("sylphrun  /srv/shop  journal .sylphrun/journal.db")

    yield lambda: SnapshotApp(
        config, tasks={"order-approval": "order-approval"}, clock=lambda: T0 + 60
    )
    monkeypatch.undo()
    time.tzset()


def test_snapshot_events_view(snap_compare, events_app) -> None:
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await until(pilot, lambda: app.loaded and app.runs.by_id, "the journal")
        await pilot.press("E")
        await until(
            pilot,
            lambda: isinstance(app.screen, EventsScreen) and app.screen.loaded,
            "the events view",
        )
        await pilot.press("down", "down")  # the order.created event: its run below
        await until(
            pilot,
            lambda: app.screen.query_one("#events-runs", OptionList).option_count,
            "the event's runs",
        )
        await pilot.pause(0.3)

    assert snap_compare(events_app(), terminal_size=(120, 30), run_before=run_before)
