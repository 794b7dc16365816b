"""The dashboard's keys, focus and wording (issue 12, items 9-17, and waking a run).

Driven with Textual's pilot over the same real journal as test_dashboard.py (real workers
ran real tasks once per module; each test gets its own copy of the file).
"""

from __future__ import annotations

import pytest
import test_dashboard as base
from test_dashboard import RealJournal, drive, make_app, table_ids, until
from textual import events
from textual.pilot import Pilot
from textual.widgets import Input, Select

from sylphrun.dashboard.screens.trigger import TriggerScreen
from sylphrun.dashboard.widgets.runs_table import RunsTable

real_journal = base.real_journal  # the fixtures, shared with test_dashboard.py
journal = base.journal


async def type_at_once(pilot: Pilot, *keys: str) -> None:
    """Keys queued together, as a busy machine delivers them: no pause between them for
    the app to catch up (Pilot.press waits for the app to go idle after each key)."""
    app = pilot.app
    for key in keys:
        char = {"slash": "/"}.get(key, key if len(key) == 1 else None)
        event = events.Key(key, char)
        event.set_sender(app)
        app._driver.send_message(event)
    await pilot.pause(0.2)


def test_ctrl_c_quits_the_dashboard(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("slash")  # even from the search box (Input binds ctrl+c to copy)
        await pilot.press("ctrl+c")
        await until(pilot, lambda: app._exit, what="the app to quit")

    drive(app, scenario)
    assert app.return_code == 0


def test_title_says_which_journal_and_durability_are_in_force(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        title = str(app.screen.query_one("#topbar").render())
        assert "journal " in title and "journal.db" in title
        assert "durability normal" in title

    drive(app, scenario)


def test_keys_typed_right_after_slash_go_into_the_search_box(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        await type_at_once(pilot, "slash", "t", "a", "s", "h")
        assert not isinstance(app.screen, TriggerScreen)  # `t` did not open the dialog
        assert app.screen.query_one("#search", Input).value == "tash"
        assert app.screen.query_one("#task-filter", Select).is_blank()  # `a` did not cycle it
        assert app.screen.query_one("#status-filter", Select).is_blank()  # nor `s`
        await pilot.press("slash", "x")  # in the box, `/` is text too
        assert app.screen.query_one("#search", Input).value == "tash/x"

    drive(app, scenario)


def test_escape_clears_every_filter_when_they_leave_the_list_empty(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        app.screen.query_one("#status-filter", Select).value = "cancelled"
        app.screen.query_one("#task-filter", Select).value = "chain"
        await until(pilot, lambda: table_ids(app) == [], what="an empty list")
        table = app.screen.query_one("#runs-table")
        assert "escape clears them" in table.render_line(2).text
        await pilot.press("escape")
        await until(pilot, lambda: len(table_ids(app)) == 5, what="every run again")
        assert app.screen.query_one("#status-filter", Select).is_blank()
        assert app.screen.query_one("#task-filter", Select).is_blank()

    drive(app, scenario)


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_error_column_has_room_at_common_widths(journal: RealJournal, width: int) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        table = app.screen.query_one("#runs-table", RunsTable)
        header = table.render_line(0).text
        assert "ERROR" in header and "CHILDREN" in header  # the fan-out has children
        saga = table.render_line(1 + table_ids(app).index(journal.ids["saga"])).text
        assert "ValueError: carrier down" in saga
        app.screen.query_one("#status-filter", Select).value = "failed"  # no children shown
        await until(pilot, lambda: len(table_ids(app)) == 2, what="the failed runs")
        await pilot.pause()
        header = table.render_line(0).text
        assert "ERROR" in header and "CHILDREN" not in header
        error_width = len(header) - header.index("ERROR")
        assert error_width >= min(40, width // 3)

    drive(app, scenario, size=(width, 30))
