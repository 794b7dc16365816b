"""The dashboard's keys, focus and wording (issue 12, items 9-17, and waking a run).

Driven with Textual's pilot over the same real journal as test_dashboard.py (real workers
ran real tasks once per module; each test gets its own copy of the file).
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path

import pytest
import test_dashboard as base
from rich.console import Console
from test_dashboard import RealJournal, drive, make_app, open_run, table_ids, tree_lines, until
from textual import events
from textual.pilot import Pilot
from textual.widgets import Input, RichLog, Select, Static, TextArea

from sylphrun import actions
from sylphrun.config import Config
from sylphrun.dashboard import steps_view
from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.app import DashboardApp
from sylphrun.dashboard.screens.confirm import ConfirmScreen
from sylphrun.dashboard.screens.json_view import JsonScreen
from sylphrun.dashboard.screens.run import RunScreen
from sylphrun.dashboard.screens.trigger import TriggerScreen
from sylphrun.dashboard.widgets.run_panels import RunHeading
from sylphrun.dashboard.widgets.runs_table import RunsTable
from sylphrun.dashboard.widgets.step_tree import StepTree
from sylphrun.dashboard.widgets.timeline import Timeline
from sylphrun.journal import Connection, RunSpec, queries, store

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


def parked_journal(path: Path, monkeypatch: pytest.MonkeyPatch, t: float) -> dict[str, str]:
    """A run sleeping for 15 minutes from `t`, and a parent waiting on 3 children (1 done)."""
    j = base.FixedJournal(path, monkeypatch)
    c = j.start("nightly", t)
    j.step(c, "export", t + 0.1, t + 1.0, {"rows": 1})
    store.record_step_waiting(
        j.conn,
        c.run_id,
        c.epoch,
        key="cool-down",
        name="cool-down",
        kind="sleep",
        seq=2,
        run_attempt=1,
        output=json.dumps({"wake_at": t + 901}),
        now=t + 1.0,
    )
    store.suspend_run(j.conn, c.run_id, c.epoch, children=(), wake_at=t + 901, now=t + 1.05)
    p = j.start("fan", t)
    kids, _ = store.record_trigger_step(
        j.conn,
        p.run_id,
        p.epoch,
        key="spawn",
        name="spawn",
        seq=1,
        run_attempt=1,
        specs=[RunSpec("shard", "{}", None, p.run_id, "spawn") for _ in range(3)],
        output_of=lambda ids: json.dumps({"run_ids": ids}),
        now=t + 0.5,
    )
    j.step(p, "collect", t + 0.6, None)
    store.suspend_run(j.conn, p.run_id, p.epoch, children=kids, wake_at=None, now=t + 0.7)
    j.finish(j._claim("shard", t + 2)[0], t + 3, output=1)
    j.conn.close()
    return {"sleeper": c.run_id, "parent": p.run_id}


def parked_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, now: list[float]):
    ids = parked_journal(tmp_path / "journal.db", monkeypatch, now[0] - 1.0)
    config = Config(
        project_dir=tmp_path, source=None, tasks=["tasks"], journal=tmp_path / "journal.db"
    )
    app = DashboardApp(config, tasks={"nightly": 1, "fan": 1, "shard": 1}, clock=lambda: now[0])
    return app, ids, config


def test_a_sleep_says_until_when_its_time_moves_and_w_wakes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [time.time()]
    app, ids, config = parked_app(tmp_path, monkeypatch, now)
    messages: list[str] = []

    async def scenario(pilot: Pilot) -> None:
        original = app.notify
        app.notify = lambda message, **kw: (messages.append(message), original(message, **kw))
        screen = await open_run(pilot, ids["sleeper"])
        heading = str(screen.query_one(RunHeading).render())
        assert f"sleeping until {fmt.clock_time(now[0] + 900, now[0])} (in 15m00s)" in heading
        assert "runs again" not in heading
        tree = screen.query_one(StepTree)
        tree.select_ref(("step", "cool-down"))
        await pilot.press("enter")  # expand
        await pilot.pause()
        lines = tree_lines(tree)
        nap = next(line for line in lines if "cool-down" in line)
        assert "◐ 15m00s" in nap and " 0ms" in nap  # it just fell asleep
        assert any("sleeping until" in line and "(in 15m00s)" in line for line in lines)
        shown = "\n".join(lines) + str(screen.query_one("#step-body", Static).render())
        assert "wake_at" not in shown  # no raw journal field
        now[0] += 60
        await until(  # the tick
            pilot,
            lambda: "◐ 14m00s" in next(x for x in tree_lines(tree) if "cool-down" in x),
            what="the sleep's countdown to tick",
        )
        nap = next(line for line in tree_lines(tree) if "cool-down" in line)
        assert "◐ 14m00s" in nap and "1m00s" in nap  # the elapsed time moves too
        await pilot.press("w")
        await until(pilot, lambda: messages, what="the wake notice")
        assert messages[0] == f"{ids['sleeper']}: its sleep 'cool-down' ends now"
        await until(pilot, lambda: screen.log_count == 1, what="the journaled wake")

    drive(app, scenario)
    conn = Connection(config.journal)
    try:
        run = queries.get_run(conn, ids["sleeper"])
        nap = next(s for s in queries.steps_of(conn, ids["sleeper"]) if s.key == "cool-down")
        logs = [line.message for line in queries.logs_of(conn, ids["sleeper"])]
    finally:
        conn.close()
    assert run.ready_at <= time.time() and nap.output["wake_at"] == run.ready_at
    assert logs == ["woken by user: its sleep 'cool-down' ends now"]


def test_a_parent_says_how_many_children_it_waits_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [time.time()]
    app, ids, _ = parked_app(tmp_path, monkeypatch, now)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, ids["parent"])
        assert "◐ waiting for 2 of 3 children" in str(screen.query_one(RunHeading).render())

    drive(app, scenario)


def test_tracebacks_in_the_step_pane_wrap_between_a_frames_parts() -> None:
    frame = '  File "/home/dev/shop/tasks/orders/shipping.py", line 141, in create_shipment'
    lines = [
        steps_view.Line(fmt.literal(frame), hang=True),
        steps_view.Line(fmt.literal("    x = 1"), hang=True),
    ]
    console = Console(width=200)
    text = steps_view.flatten(lines, "    ", console=console, width=60).plain
    assert text.splitlines() == [
        '      File "/home/dev/shop/tasks/orders/shipping.py",',
        "        line 141, in create_shipment",
        "        x = 1",
    ]
    # Narrower than the path: only the path itself is folded.
    narrow = steps_view.flatten(lines[:1], "", console=console, width=30).plain.splitlines()
    assert (
        narrow[-1].strip() == "line 141, in create_shipment"
        or narrow[-1].strip() == "in create_shipment"
    )
    assert all(len(row) <= 30 for row in narrow)


def test_replay_asks_first_and_can_open_the_payload_to_edit(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        app.screen.query_one("#runs-table", RunsTable).select_id(journal.ids["chain"])
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        question = str(app.screen.query_one("#confirm-question", Static).render())
        assert "every step runs again" in question and "side effects" in question
        await pilot.press("n")
        await pilot.pause(0.2)
        assert len(app.runs.by_id) == 13  # nothing replayed
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, TriggerScreen))
        dialog = app.screen
        editor = dialog.query_one(TextArea)
        assert json.loads(editor.text) == {} and dialog.task_id == "chain"
        editor.load_text('{"order": 99}')
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(app.runs.by_id) == 14, what="the edited rerun")
        new = max(app.runs.by_id.values(), key=lambda r: r.created_at)
        assert base.journal_run(journal, new.id).payload == {"order": 99}

    drive(app, scenario)


def test_from_a_run_t_opens_its_payload_f_asks_and_o_opens_the_original(
    journal: RealJournal,
) -> None:
    conn = Connection(journal.config.journal)
    replayed = actions.replay_run(conn, journal.ids["saga"])
    conn.close()
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["chain"])
        await pilot.press("f")  # replay from the step under the cursor: asks first
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "from step validate" in str(
            app.screen.query_one("#confirm-question", Static).render()
        )
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TriggerScreen))
        assert app.screen.task_id == "chain"
        assert app.focused is app.screen.query_one(TextArea)  # ready to edit
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        screen.open(replayed)
        await until(pilot, lambda: screen.detail is not None and screen.detail.run.id == replayed)
        heading = str(screen.query_one(RunHeading).render())
        assert f"replay of {journal.ids['saga']} (o opens it)" in heading
        await pilot.press("o")
        await until(pilot, lambda: screen.run_id == journal.ids["saga"], what="the original")
        assert len(app.runs.by_id) == 14  # nothing was triggered or replayed by the keys

    drive(app, scenario)


def test_tab_keys_move_the_focus_to_what_they_show(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["fanout"])
        assert app.focused is screen.query_one(StepTree)
        await pilot.press("3")
        await until(pilot, lambda: app.focused is screen.query_one(RichLog), what="the log")
        await pilot.press("2")
        await until(pilot, lambda: app.focused is screen.query_one(Timeline), what="the timeline")
        await pilot.press("4")
        table = screen.query_one("#children-table", RunsTable)
        await until(pilot, lambda: app.focused is table, what="the children")
        last = table.rows[-1].id
        await pilot.press("end", "enter")  # at once: the keys reach the table
        await until(pilot, lambda: screen.run_id == last, what="the child to open")
        await pilot.press("escape")
        await until(pilot, lambda: screen.run_id == journal.ids["fanout"])
        await pilot.press("1")
        await until(pilot, lambda: app.focused is screen.query_one(StepTree), what="the tree")

    drive(app, scenario)


def test_v_shows_the_payload_and_output_whole(journal: RealJournal) -> None:
    conn = Connection(journal.config.journal)
    long = {"order": 1, "lines": [f"[bold]line {i}[/bold]" for i in range(60)]}
    run_id, _ = actions.trigger_run(conn, journal.tasks, "chain", long)
    conn.close()
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        await open_run(pilot, run_id)
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, JsonScreen))
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(app.screen.query_one("#json-body", Static).content)
        shown = console.export_text()
        assert '"[bold]line 59[/bold]"' in shown and "payload" in shown  # all of it, literally
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await open_run(pilot, journal.ids["chain"])
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, JsonScreen))
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(app.screen.query_one("#json-body", Static).content)
        assert '"shipped": true' in console.export_text()

    drive(app, scenario)


def test_an_error_raised_between_steps_shows_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = base.FixedJournal(tmp_path / "journal.db", monkeypatch)
    t = time.time() - 10
    c = j.start("import-feed", t)
    j.step(c, "download", t + 0.1, t + 0.5, {"rows": 3})
    body_tb = (
        '  File "/srv/app/tasks/feed.py", line 12, in import_feed\n'
        "    rows = parse(raw[\"rows\"])\nKeyError: 'rows' [/]\n"
    )
    store.schedule_retry(
        j.conn,
        c.run_id,
        c.epoch,
        error="KeyError: 'rows' [/]",
        traceback=body_tb,
        retry_at=t + 1,
        now=t + 0.6,
    )
    c = j._claim("import-feed", t + 1)[0]
    store.finish_run(
        j.conn,
        c.run_id,
        c.epoch,
        status="failed",
        output=None,
        error="KeyError: 'rows' [/]",
        traceback=body_tb.replace("line 12", "line 13"),
        now=t + 1.2,
    )
    j.conn.close()
    config = Config(
        project_dir=tmp_path, source=None, tasks=["tasks"], journal=tmp_path / "journal.db"
    )
    app = DashboardApp(config, tasks={"import-feed": 1})

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, c.run_id)
        tree = screen.query_one(StepTree)
        lines = tree_lines(tree)
        head = lines.index("run attempts: 2 failed")
        assert (
            lines[head + 1].strip().startswith("run attempt 1 ✗ failed")
            and "KeyError: 'rows' [/]" in lines[head + 1]
        )
        assert lines[head + 2].strip().startswith("run attempt 2 ✗ failed")  # the last one is open:
        assert 'File "/srv/app/tasks/feed.py", line 13, in import_feed' in "\n".join(
            lines[head + 3 :]
        )
        node = next(n for n in tree.root.children if n.data == ("attempts", ""))
        tree.move_cursor(node)
        await pilot.pause()
        pane = " ".join(str(screen.query_one("#step-body", Static).render()).split())
        assert "line 12, in import_feed" in pane and "line 13, in import_feed" in pane

    drive(app, scenario)


def test_a_reopened_run_is_drawn_as_last_seen_until_the_fresh_read(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["chain"])
        await pilot.press("escape")
        # What the dashboard holds says "running", but the run completed long ago.
        cached = app.details[journal.ids["chain"]]
        app.details[cached.run.id] = dataclasses.replace(
            cached, run=dataclasses.replace(cached.run, status="running", finished_at=None)
        )
        watch = app.feed_watch
        app.feed_watch = lambda *args, **kw: None  # the fresh read is late (a busy machine)
        app.open_run(journal.ids["chain"])
        await until(pilot, lambda: app.screen is screen and screen.detail is not None)
        heading = str(screen.query_one(RunHeading).render())
        assert heading.startswith("↻ loading… (below: as last seen)") and "running" in heading
        assert screen.has_class("-stale")
        app.feed_watch = watch
        app.feed_watch(journal.ids["chain"], reread=True)
        await until(pilot, lambda: not screen.has_class("-stale"), what="the fresh read")
        heading = str(screen.query_one(RunHeading).render())
        assert "loading" not in heading and "completed" in heading

    drive(app, scenario)
