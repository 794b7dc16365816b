"""The dashboard, driven with Textual's pilot against real journals.

Most tests read a journal filled once by REAL runs (real workers, real tasks: a chain with
parallel steps, a fan-out with failing children, a saga that compensates, a step waiting
on its retry, a task whose outputs are full of markup). Each test gets its own copy of
that journal file, so actions (retry, replay, cancel, trigger) cannot leak between tests.
Snapshot tests use a journal written through `store` with fixed ids and times, and an app
with a fixed clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from conftest import Engine, Project, wait_until
from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, RichLog, Select, Static, TextArea

from sylphrun import actions, model
from sylphrun.config import Config
from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.app import DashboardApp
from sylphrun.dashboard.screens.confirm import ConfirmScreen
from sylphrun.dashboard.screens.help import HelpScreen, help_renderable
from sylphrun.dashboard.screens.run import RunScreen
from sylphrun.dashboard.screens.runs import RunsScreen
from sylphrun.dashboard.screens.trigger import TriggerScreen
from sylphrun.dashboard.status import ReloadStatus
from sylphrun.dashboard.widgets.run_panels import RunHeading, StepDetail
from sylphrun.dashboard.widgets.runs_table import RunsTable
from sylphrun.dashboard.widgets.status_line import StatusLine
from sylphrun.dashboard.widgets.step_tree import StepTree
from sylphrun.dashboard.widgets.tasks_panel import TasksPanel
from sylphrun.dashboard.widgets.timeline import Timeline
from sylphrun.journal import Connection, RunSpec, queries, store

MARKUP = "[red]not red[/red] [/ [0] [link=https://example.com]link[/link] [@click=app.quit]quit[/]"

TASKS = (
    f"MARKUP = {MARKUP!r}\n"
    + """
import asyncio
from sylphrun import task, Retry

def value(v):
    return v

def boom(message):
    raise ValueError(message)

@task(id="chain")
async def chain(payload, ctx):
    ctx.log.info("chain for order %s [bold]", payload.get("order", 1))
    await ctx.step.run("validate", value, {"order": payload.get("order", 1)})
    await asyncio.gather(ctx.step.run("reserve", value, 2), ctx.step.run("charge", value, 3))
    await ctx.step.run("ship", value, {"tracking": "T-1"})
    return {"shipped": True}

@task(id="item")
async def item(payload, ctx):
    # Children take a moment, so the fan-in finds them unfinished and parks even when a
    # loaded machine runs them before their parent reaches `collect` (the timeline test
    # draws that parked stretch; once in a loaded full-suite run, there was none).
    await asyncio.sleep(0.3)
    i = payload["i"]
    if i % 4 == 3:
        await ctx.step.run("work", boom, f"item {i} is broken")
    return await ctx.step.run("work", value, {"i": i})

@task(id="fanout")
async def fanout(payload, ctx):
    handles = await item.batch_trigger([{"i": i} for i in range(8)])
    async def collect():
        return await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))
    results = await ctx.step.run("collect", collect)
    return {"ok": sum(1 for r in results if r["ok"]), "total": len(results)}

@task(id="saga")
async def saga(payload, ctx):
    try:
        await ctx.step.run("reserve", value, {"reservation": 1})
        await ctx.step.run("charge", value, {"payment": 2})
        await ctx.step.run("ship", boom, "carrier down")
    except Exception:
        await ctx.step.run("refund", value, {"refunded": 2})
        await ctx.step.run("release", value, {"released": 1})
        raise

@task(id="flaky")
async def flaky(payload, ctx):
    retry = Retry(max_attempts=3, min_delay=600, max_delay=600, jitter=0)
    await ctx.step.run("fetch", boom, "upstream timed out", retry=retry)

@task(id="markup")
async def markup(payload, ctx):
    ctx.log.warning(MARKUP + " \\x1b[31m")
    await ctx.step.run("[bold]step[/bold]", value, {"text": MARKUP, "list": [0, "[0]"]})
    await ctx.step.run("explode", boom, MARKUP)
"""
)


@dataclasses.dataclass
class RealJournal:
    root: Path
    config: Config
    tasks: dict
    ids: dict[str, str]


@pytest.fixture(scope="module")
def real_journal(tmp_path_factory: pytest.TempPathFactory) -> RealJournal:
    root = tmp_path_factory.mktemp("dash") / "proj"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        project = Project(root)
        project.write_tasks(TASKS)
        eng = Engine(project).start()
        try:
            ids = {
                name: eng.trigger(name) for name in ("chain", "fanout", "saga", "markup", "flaky")
            }
            for name in ("chain", "fanout", "saga", "markup"):
                eng.wait(ids[name])
            wait_until(
                lambda: any(s.status == model.STEP_RETRYING for s in eng.steps(ids["flaky"])),
                message="flaky's step to be retrying",
            )
            wait_until(
                lambda: eng.run_record(ids["flaky"]).status == model.WAITING,
                message="flaky to park",
            )
            tasks = dict(eng.tasks)
        finally:
            eng.stop()
    config = project.config()
    return RealJournal(root, config, tasks, ids)


@pytest.fixture
def journal(real_journal: RealJournal, tmp_path: Path) -> RealJournal:
    """This test's own copy of the real journal."""
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(real_journal.config.journal) + suffix)
        if src.exists():
            shutil.copy(src, tmp_path / f"journal.db{suffix}")
    config = dataclasses.replace(real_journal.config, journal=tmp_path / "journal.db")
    return dataclasses.replace(real_journal, config=config)


def make_app(j: RealJournal, **kwargs) -> DashboardApp:
    kwargs.setdefault("tasks", j.tasks)
    return DashboardApp(j.config, **kwargs)


async def until(
    pilot: Pilot,
    predicate: Callable[[], object],
    timeout: float = 10.0,
    what: str = "the dashboard",
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def drive(
    app: DashboardApp,
    scenario: Callable[[Pilot], Awaitable[None]],
    size: tuple[int, int] = (120, 35),
) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await until(
                pilot,
                lambda: app.loaded and isinstance(app.screen, RunsScreen),
                what="the first read of the journal",
            )
            await scenario(pilot)

    asyncio.run(main())


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
        what=f"run {run_id} to open",
    )
    await pilot.pause()
    return app.screen


def tree_lines(tree: StepTree) -> list[str]:
    out = []

    def walk(node, depth):
        for child in node.children:
            out.append("  " * depth + child.label.plain)
            if child.is_expanded:
                walk(child, depth + 1)

    walk(tree.root, 0)
    return out


def table_ids(app: DashboardApp) -> list[str]:
    return [r.id for r in app.screen.query_one("#runs-table", RunsTable).rows]


# -- runs list -------------------------------------------------------------------------


def test_runs_list_shows_top_level_runs_newest_first(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        conn = Connection(journal.config.journal)
        expected = [r.id for r in queries.list_runs(conn, top_level_only=True, limit=1000)]
        conn.close()
        assert table_ids(app) == expected
        assert set(expected) == set(journal.ids.values())  # the fan-out's children are hidden
        table = app.screen.query_one("#runs-table", RunsTable)
        first = table.render_line(1).text
        assert "flaky" in first and "waiting" in first
        fanout_line = table.render_line(1 + expected.index(journal.ids["fanout"])).text
        assert "8/8 2✗" in fanout_line  # children done/total, failed

    drive(app, scenario)


def test_filters_by_status_task_and_search(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("s", "s", "s", "s", "s")  # any -> queued -> ... -> failed
        select = app.screen.query_one("#status-filter", Select)
        assert select.value == model.FAILED
        await pilot.pause()
        assert set(table_ids(app)) == {journal.ids["saga"], journal.ids["markup"]}

        select.clear()
        await pilot.pause()
        app.screen.query_one("#task-filter", Select).value = "item"
        await pilot.pause()
        rows = app.screen.query_one("#runs-table", RunsTable).rows
        assert len(rows) == 8 and all(r.task_id == "item" for r in rows)  # children, by task

        app.screen.query_one("#task-filter", Select).clear()
        await pilot.press("slash", *"broken")
        await pilot.pause()
        rows = app.screen.query_one("#runs-table", RunsTable).rows
        assert sorted(r.error for r in rows) == [
            "ValueError: item 3 is broken",
            "ValueError: item 7 is broken",
        ]
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.query_one("#search", Input).value == ""
        assert len(table_ids(app)) == 5

    drive(app, scenario)


def test_search_finds_runs_by_payload_text(journal: RealJournal) -> None:
    conn = Connection(journal.config.journal)
    wanted, _ = actions.trigger_run(conn, journal.tasks, "chain", {"order_id": "order-42"})
    actions.trigger_run(conn, journal.tasks, "chain", {"order_id": "order-7", "note": "[red]x"})
    conn.close()
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("slash", *"ORDER-42")  # case does not matter
        await until(pilot, lambda: table_ids(app) == [wanted], what="the payload match")
        # A run triggered while the search is on shows up when its payload matches.
        conn = Connection(journal.config.journal)
        later, _ = actions.trigger_run(conn, journal.tasks, "saga", {"order": "order-42"})
        actions.trigger_run(conn, journal.tasks, "saga", {"order": "order-8"})
        conn.close()
        await until(pilot, lambda: table_ids(app) == [later, wanted], what="the new match")
        # Markup in a search or a payload is just text.
        search = app.screen.query_one("#search", Input)
        search.value = "[red]x"
        await until(pilot, lambda: len(table_ids(app)) == 1, what="the markup match")
        assert app.runs.by_id[table_ids(app)[0]].task_id == "chain"
        search.value = "order-"
        await until(pilot, lambda: len(table_ids(app)) == 4, what="all four orders")
        await pilot.press("escape")
        await until(pilot, lambda: len(table_ids(app)) == 5 + 4, what="the search cleared")

    drive(app, scenario)


def test_payload_search_query_is_literal_and_limited(journal: RealJournal) -> None:
    conn = Connection(journal.config.journal)
    try:
        for n in range(5):
            actions.trigger_run(conn, journal.tasks, "chain", {"code": f"A_{n}%"})
        actions.trigger_run(conn, journal.tasks, "chain", {"code": "AB0x"})
        found = queries.runs_with_payload_text(conn, "a_", limit=100)
        assert len(found) == 5  # "_" and "%" are not wildcards; ASCII case is ignored
        assert len(queries.runs_with_payload_text(conn, "%", limit=100)) == 5
        newest = queries.runs_with_payload_text(conn, "A_", limit=2)
        assert newest == found[:2]
        assert queries.runs_with_payload_text(conn, "A_", run_ids=[found[0], "nope"]) == [found[0]]
    finally:
        conn.close()


def test_child_runs_toggle_shows_children_in_the_list(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        assert len(table_ids(app)) == 5
        await pilot.press("h")
        await pilot.pause()
        assert len(table_ids(app)) == 5 + 8
        table = app.screen.query_one("#runs-table", RunsTable)
        child_rows = [i for i, r in enumerate(table.rows) if r.parent_run_id]
        assert "↳" in table.render_line(1 + child_rows[0]).text

    drive(app, scenario)


# -- one run ---------------------------------------------------------------------------


def test_enter_opens_the_run_and_escape_goes_back(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        table = app.screen.query_one("#runs-table", RunsTable)
        table.select_id(journal.ids["chain"])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail)
        heading = app.screen.query_one(RunHeading).detail
        assert heading.run.id == journal.ids["chain"]
        lines = tree_lines(app.screen.query_one(StepTree))
        assert [line.split()[1] for line in lines] == ["validate", "reserve", "charge", "ship"]
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert app.screen.query_one("#runs-table", RunsTable).cursor_id == journal.ids["chain"]

    drive(app, scenario)


def test_expanding_a_step_shows_its_output_as_pretty_json(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["chain"])
        tree = screen.query_one(StepTree)
        assert tree.cursor_node.data == ("step", "validate")
        await pilot.press("enter")  # expand
        await pilot.pause()
        lines = tree_lines(tree)
        assert lines[1:5] == ["  output", "  {", '    "order": 1', "  }"]
        pane = screen.query_one("#step-body", Static).render()
        assert '"order": 1' in str(pane)

    drive(app, scenario)


def test_failed_step_shows_error_and_the_users_traceback(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["saga"])
        tree = screen.query_one(StepTree)
        lines = tree_lines(tree)
        ship = next(i for i, line in enumerate(lines) if " ship " in line)
        assert "failed" in lines[ship]
        assert "attempt 1 ✗ failed" in lines[ship + 1]
        assert "ValueError: carrier down" in lines[ship + 1]
        # The attempt that failed the step is open on its traceback, which names the
        # user's function.
        text = "\n".join(tree_lines(tree))
        assert "in boom" in text and "raise ValueError(message)" in text
        assert "/sylphrun/runtime/" not in text  # sylphrun's own frames are left out
        tree.select_ref(("step", "ship"))
        await pilot.pause()
        pane = str(screen.query_one("#step-body", Static).render())
        assert "in boom" in pane

    drive(app, scenario)


def test_compensation_steps_are_drawn_as_a_compensation_trace(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["saga"])
        tree = screen.query_one(StepTree)
        top = [node for node in tree.root.children if node.data != ("attempts", "")]
        labels = [n.label.plain for n in top]
        heading = next(i for i, label in enumerate(labels) if label.startswith("↩ compensating"))
        assert [label.split()[2] for label in labels[heading + 1 :]] == ["refund", "release"]
        assert all(label.startswith("↩") for label in labels[heading:])
        assert not any(label.startswith("↩") for label in labels[:heading])
        refund = top[heading + 1].label
        assert any("magenta" in str(span.style) for span in refund.spans)
        await pilot.press("2")
        timeline = screen.query_one(Timeline)
        rows = [timeline.render_line(y).text for y in range(1, 1 + len(timeline.steps))]
        assert rows[-1].lstrip().startswith("↩ release")

    drive(app, scenario)


def test_retrying_step_shows_failed_attempts_and_a_live_countdown(journal: RealJournal) -> None:
    # The clock starts 9m30s before the retry: the module's journal may have been built
    # minutes ago (a loaded machine, parallel test workers), so no "now" of the test's own.
    conn = Connection(journal.config.journal)
    try:
        [fetch] = queries.steps_of(conn, journal.ids["flaky"])
    finally:
        conn.close()
    now = [fetch.retry_at - 570]
    app = make_app(journal, clock=lambda: now[0])

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["flaky"])
        tree = screen.query_one(StepTree)
        step = tree.steps["fetch"]
        assert step.status == model.STEP_RETRYING
        lines = tree_lines(tree)
        assert lines[0].startswith("↻ fetch") and "retrying" in lines[0]
        countdown = next(line for line in lines if "(attempt 2 next)" in line)
        assert "retry in 9m30s" in countdown
        assert any("attempt 1 ✗ failed" in line and "upstream timed out" in line for line in lines)
        now[0] = step.retry_at - 3.5
        await until(  # the tick (a fixed pause of 0.4 s missed it on a loaded machine)
            pilot,
            lambda: any("↻ retry in 3.5s (attempt 2 next)" in line for line in tree_lines(tree)),
            what="the countdown to tick",
        )
        assert "↻ retrying at " in str(screen.query_one(RunHeading).render())
        assert "(in 3.5s) (w wakes it now)" in str(screen.query_one(RunHeading).render())

    drive(app, scenario)


def test_fanout_step_shows_progress_and_opens_its_children(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["fanout"])
        tree = screen.query_one(StepTree)
        trigger = next(s for s in tree.steps.values() if s.kind == model.TRIGGER)
        assert len(trigger.child_run_ids) == 8
        lines = tree_lines(tree)
        progress = next(line for line in lines if "completed," in line)
        assert "6 completed, 2 failed, 0 pending of 8" in progress
        failed_children = [
            line for line in lines if "item 3 is broken" in line or "item 7 is broken" in line
        ]
        assert len(failed_children) == 2
        # The pane lists every child too, and Enter on a child in the tree opens it.
        tree.select_ref(("step", trigger.key))
        await pilot.pause()
        children_table = screen.query_one("#step-children", RunsTable)
        assert [r.id for r in children_table.rows] == trigger.child_run_ids
        node = next(
            n
            for n in tree._step_nodes[trigger.key].children
            if n.data == ("child", trigger.child_run_ids[3])
        )
        tree.move_cursor(node)
        await pilot.press("enter")
        await until(
            pilot,
            lambda: (
                screen.run_id == trigger.child_run_ids[3]
                and screen.detail
                and screen.detail.run.id == trigger.child_run_ids[3]
            ),
        )
        assert "child of " + journal.ids["fanout"] in str(screen.query_one(RunHeading).render())
        await pilot.press("escape")
        await until(pilot, lambda: screen.run_id == journal.ids["fanout"])
        assert isinstance(app.screen, RunScreen)
        await pilot.press("4")  # Children tab: all of them
        await pilot.pause()
        table = screen.query_one("#children-table", RunsTable)
        assert sorted(r.id for r in table.rows) == sorted(trigger.child_run_ids)

    drive(app, scenario)


def test_timeline_draws_parallel_steps_side_by_side(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["chain"])
        await pilot.press("2")
        await pilot.pause()
        timeline = screen.query_one(Timeline)
        assert [s.key for s in timeline.steps] == ["validate", "reserve", "charge", "ship"]
        assert "│0ms" in timeline.render_line(0).text
        rows = {s.key: timeline.render_line(1 + i).text for i, s in enumerate(timeline.steps)}
        bars = {k: (v.index("█"), v.rindex("█")) for k, v in rows.items()}
        assert bars["validate"][0] <= bars["reserve"][0] <= bars["ship"][0]
        assert bars["ship"][1] >= bars["reserve"][1]
        assert timeline.suspended == []  # never parked: no suspended line

    drive(app, scenario)


def timeline_rows(timeline: Timeline) -> dict[str, str]:
    """The suspended line (if any) and each step's line, by name."""
    rows = {"◐ suspended": timeline.render_line(1).text} if timeline.lanes else {}
    for i, step in enumerate(timeline.steps):
        rows[step.key] = timeline.render_line(1 + timeline.lanes + i).text
    return rows


def test_timeline_draws_the_time_a_fan_in_waited_for_its_children(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["fanout"])
        await pilot.press("2")
        await pilot.pause()
        timeline = screen.query_one(Timeline)
        # The parent parked once its children were triggered, and resumed when they were
        # done: a stretch no step covers (collect's row restarts when it is replayed).
        assert [b.reason for b in timeline.suspended] == ["waiting"]
        band = timeline.suspended[0]
        assert band.step_keys == ("collect",) and band.end is not None
        collect = next(s for s in timeline.steps if s.key == "collect")
        assert band.start < collect.started_at and band.end <= collect.started_at
        rows = timeline_rows(timeline)
        assert rows["◐ suspended"].lstrip().startswith("◐ suspended")
        for name in ("◐ suspended", "collect"):
            assert "░" in rows[name]
        # On collect's line the band comes before its bar (the replayed execution).
        assert rows["collect"].index("░") < rows["collect"].index("█")

    drive(app, scenario)


def test_timeline_draws_a_retry_wait_that_grows_with_the_clock(journal: RealJournal) -> None:
    now = [time.time()]
    app = make_app(journal, clock=lambda: now[0])

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["flaky"])
        await pilot.press("2")
        await pilot.pause()
        timeline = screen.query_one(Timeline)
        [band] = timeline.suspended
        assert band.reason == "retry" and band.end is None  # parked until the retry time
        fetch = timeline.steps[0]
        now[0] = fetch.finished_at + 60
        grown = " " + fmt.seconds(now[0] - band.start)
        await until(  # the tick redraws it
            pilot,
            lambda: timeline_rows(timeline)["◐ suspended"].rstrip().endswith(grown),
            what="the timeline to redraw",
        )
        rows = timeline_rows(timeline)
        assert "░ retry ░" in rows["◐ suspended"] and "░ retry ░" in rows["fetch"]

    drive(app, scenario)


def test_logs_tab_shows_the_runs_journaled_lines(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["chain"])
        await until(pilot, lambda: screen.log_count == 1)
        await pilot.press("3")
        await pilot.pause()
        log = screen.query_one(RichLog)
        text = "\n".join(strip.text for strip in log.lines)
        assert "INFO" in text and "chain for order 1 [bold]" in text
        assert screen.query_one("#run-tabs").get_tab("logs").label.plain == "Logs (1)"

    drive(app, scenario)


def test_markup_in_step_output_names_errors_and_logs_is_shown_literally(
    journal: RealJournal,
) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["markup"])
        tree = screen.query_one(StepTree)
        tree.select_ref(("step", "[bold]step[/bold]"))
        await pilot.press("enter")
        await pilot.pause()
        shown = "\n".join(tree_lines(tree))
        assert "[bold]step[/bold]" in shown
        assert json.dumps(MARKUP)[1:-1] in shown  # the output, as JSON text
        assert '"[0]"' in shown
        assert f"ValueError: {MARKUP}" in shown
        pane = screen.query_one("#step-body", Static).render()
        assert json.dumps(MARKUP)[1:-1] in pane.plain
        heading = str(screen.query_one(RunHeading).render())
        assert MARKUP in heading
        await until(pilot, lambda: screen.log_count == 1)
        await pilot.press("3")
        await pilot.pause()
        log_text = " ".join(" ".join(s.text for s in screen.query_one(RichLog).lines).split())
        assert MARKUP in log_text
        assert "\\x1b[31m" in log_text and "\x1b" not in log_text  # escapes made visible
        # The whole screen renders; nothing was interpreted as a link or an action.
        svg = app.export_screenshot()
        assert "app.quit" in svg or "quit" in svg
        assert isinstance(app.screen, RunScreen)

    drive(app, scenario)


# -- actions -----------------------------------------------------------------------------


def journal_run(j: RealJournal, run_id: str) -> model.Run:
    conn = Connection(j.config.journal)
    try:
        return queries.get_run(conn, run_id)
    finally:
        conn.close()


def test_trigger_dialog_validates_the_payload_before_sending(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        app.screen.query_one("#runs-table", RunsTable).select_id(journal.ids["chain"])
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TriggerScreen))
        dialog = app.screen
        assert dialog.task_id == "chain"  # the selected run's task
        editor = dialog.query_one(TextArea)
        editor.load_text('{"order": 42')
        await pilot.pause()
        error = str(dialog.query_one("#payload-error", Static).render())
        assert "not valid JSON" in error
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is dialog  # refused: nothing sent
        editor.load_text("[1, 2]")
        await pilot.pause()
        assert "must be a JSON object" in str(dialog.query_one("#payload-error", Static).render())
        editor.load_text('{"order": 42}')
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        await until(pilot, lambda: len(app.runs.by_id) == 14, what="the new run to show")
        new = max(app.runs.by_id.values(), key=lambda r: r.created_at)
        assert new.task_id == "chain" and new.status == model.QUEUED
        assert journal_run(journal, new.id).payload == {"order": 42}
        await until(
            pilot, lambda: app.screen.query_one("#runs-table", RunsTable).cursor_id == new.id
        )

    drive(app, scenario)


def test_retry_a_failed_run_queues_it_again(journal: RealJournal) -> None:
    app = make_app(journal)
    failed_child = None

    async def scenario(pilot: Pilot) -> None:
        nonlocal failed_child
        await pilot.press("h")
        child = next(
            r for r in app.runs.by_id.values() if r.task_id == "item" and r.status == "failed"
        )
        failed_child = child.id
        app.screen.query_one("#runs-table", RunsTable).select_id(child.id)
        await pilot.press("r")
        await until(
            pilot,
            lambda: app.runs.by_id[child.id].status == model.QUEUED,
            what="the retried run to show as queued",
        )
        assert app.runs.by_id[child.id].attempt == 2

    drive(app, scenario)
    run = journal_run(journal, failed_child)
    assert run.status == model.QUEUED and run.attempt == 2


def test_retry_refused_is_explained_not_crashed(journal: RealJournal) -> None:
    app = make_app(journal)
    messages: list[str] = []

    async def scenario(pilot: Pilot) -> None:
        original = app.notify
        app.notify = lambda message, **kw: (messages.append(message), original(message, **kw))
        app.screen.query_one("#runs-table", RunsTable).select_id(journal.ids["chain"])
        await pilot.press("r")
        await until(pilot, lambda: messages, what="a notification")
        await pilot.pause()
        assert "only a failed or cancelled run can be retried" in messages[0]

    drive(app, scenario)
    assert journal_run(journal, journal.ids["chain"]).status == model.COMPLETED


def test_replay_and_replay_from_the_selected_step(journal: RealJournal) -> None:
    app = make_app(journal)
    new_ids: list[str] = []

    async def scenario(pilot: Pilot) -> None:
        app.screen.query_one("#runs-table", RunsTable).select_id(journal.ids["chain"])
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: len(app.runs.by_id) == 14)
        new_ids.append(max(app.runs.by_id.values(), key=lambda r: r.created_at).id)

        screen = await open_run(pilot, journal.ids["chain"])
        screen.query_one(StepTree).select_ref(("step", "charge"))
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(
            pilot, lambda: screen.run_id not in (journal.ids["chain"],), what="the replay to open"
        )
        new_ids.append(screen.run_id)

    drive(app, scenario)
    whole, partial = (journal_run(journal, i) for i in new_ids)
    assert whole.replay_of == partial.replay_of == journal.ids["chain"]
    conn = Connection(journal.config.journal)
    try:
        assert [s.key for s in queries.steps_of(conn, whole.id)] == []
        copied = queries.steps_of(conn, partial.id)
    finally:
        conn.close()
    assert [s.key for s in copied] == ["validate", "reserve"]  # the steps before "charge"


def test_cancel_asks_first_then_cancels(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        app.screen.query_one("#runs-table", RunsTable).select_id(journal.ids["flaky"])
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "flaky" in str(app.screen.query_one("#confirm-question", Static).render())
        await pilot.press("n")
        await pilot.pause(0.2)
        assert journal_run(journal, journal.ids["flaky"]).status == model.WAITING
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: app.runs.by_id[journal.ids["flaky"]].status == model.CANCELLED)

    drive(app, scenario)
    assert journal_run(journal, journal.ids["flaky"]).status == model.CANCELLED


def test_copy_run_id(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        app.screen.query_one("#runs-table", RunsTable).select_id(journal.ids["saga"])
        await pilot.press("c")
        assert app.clipboard == journal.ids["saga"]
        screen = await open_run(pilot, journal.ids["chain"])
        await pilot.press("c")
        assert app.clipboard == screen.run_id == journal.ids["chain"]

    drive(app, scenario)


# -- live, tasks, help ---------------------------------------------------------------------


def test_runs_triggered_by_another_process_show_up_live(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["flaky"])
        # Another process (the CLI in another terminal) writes the journal.
        conn = Connection(journal.config.journal)
        run_id, _ = actions.trigger_run(conn, journal.tasks, "chain", {"order": 7})
        conn.close()
        await until(pilot, lambda: run_id in app.runs.by_id, timeout=5, what="the new run")
        conn = Connection(journal.config.journal)
        actions.cancel_run(conn, journal.ids["flaky"])
        conn.close()
        await until(
            pilot,
            lambda: screen.detail.run.status == model.CANCELLED,
            timeout=5,
            what="the open run's new state",
        )
        assert "cancelled" in str(screen.query_one(RunHeading).render())
        await pilot.press("escape")
        await pilot.pause()
        assert table_ids(app)[0] == run_id

    drive(app, scenario)


def test_tasks_tab_shows_reload_status_and_import_errors(journal: RealJournal) -> None:
    status = [ReloadStatus(at=time.time(), duration=0.21, error=None, task_ids=("chain", "saga"))]
    app = DashboardApp(journal.config, reload_status=lambda: status[0])

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("2")
        panel = app.screen.query_one(TasksPanel)
        await until(pilot, lambda: "reloaded at" in str(panel.query_one("#reload-status").render()))
        assert "in 210ms" in str(panel.query_one("#reload-status").render())
        assert panel.query_one("DataTable").row_count == 2
        status[0] = ReloadStatus(
            at=None,
            duration=None,
            task_ids=("chain", "saga"),
            error="cannot import task module tasks.main (tasks/main.py:3): "
            "NameError: name '[x]' is not defined",
        )
        await until(
            pilot, lambda: "reload failed" in str(panel.query_one("#reload-status").render())
        )
        assert "NameError: name '[x]' is not defined" in str(
            panel.query_one("#reload-status").render()
        )
        assert "reload failed" in str(app.screen.query_one(StatusLine).render())

    drive(app, scenario)


def test_dashboard_alone_discovers_the_tasks(journal: RealJournal) -> None:
    app = DashboardApp(journal.config)  # what `sylphrun dashboard` does

    async def scenario(pilot: Pilot) -> None:
        await until(pilot, lambda: app.tasks, what="discovery")
        assert sorted(app.tasks) == ["chain", "fanout", "flaky", "item", "markup", "saga"]
        await pilot.press("2")
        await pilot.pause()
        assert app.screen.query_one(TasksPanel).query_one("DataTable").row_count == 6

    drive(app, scenario)


def test_help_screen_lists_the_keys(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(help_renderable())
        text = console.export_text()
        for words in (
            "trigger a task",
            "retry a failed",
            "replay from the step",
            "copy the run id",
            "tab / shift+tab",
            "ctrl+c",
            "wake: end the run's sleep",
            "the payload and the output",
            "open the run this one replays",
        ):
            assert words in text
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))

    drive(app, scenario)


def test_small_terminal_hides_the_step_pane_until_asked(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        screen = await open_run(pilot, journal.ids["saga"])
        assert screen.has_class("-narrow")
        assert not screen.query_one(StepDetail).display
        await pilot.press("d")
        await pilot.pause()
        assert screen.query_one(StepDetail).display

    drive(app, scenario, size=(80, 24))


# -- snapshots: a journal with fixed ids and times ------------------------------------------

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
NOW = T0 + 95


class FixedJournal:
    """Runs written through `store` with fixed ids and timestamps (no workers)."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        counter = itertools.count(1)
        monkeypatch.setattr(
            "sylphrun.journal.ids.new_run_id", lambda: f"run_{next(counter):04d}snapshot"
        )
        self.conn = Connection(path)
        self.seq: dict[str, dict[str, int]] = {}  # run id -> step key -> seq

    def start(
        self, task_id: str, at: float, payload: dict | None = None, claim: bool = True
    ) -> store.Claim | str:
        [(run_id, _)] = store.enqueue_runs(
            self.conn, [RunSpec(task_id, json.dumps(payload or {}))], at
        )
        if not claim:
            return run_id
        return self._claim(task_id, at)[0]

    def _claim(self, task_id: str, at: float, limit: int = 1) -> list[store.Claim]:
        claims, unknown = store.claim_runs(
            self.conn,
            "w-snap",
            limit,
            lease_seconds=1e9,
            known_tasks={task_id: store.TaskTerms()},
            now=at,
        )
        assert claims and not unknown
        return claims

    def step(
        self,
        c: store.Claim,
        key: str,
        start: float,
        end: float | None,
        output=None,
        kind: str = "step",
        error: str | None = None,
        traceback: str | None = None,
        retry_at: float | None = None,
    ) -> None:
        keys = self.seq.setdefault(c.run_id, {})
        seq = keys.setdefault(key, len(keys) + 1)
        store.record_step_start(
            self.conn,
            c.run_id,
            c.epoch,
            key=key,
            name=key,
            kind=kind,
            seq=seq,
            run_attempt=c.attempt,
            now=start,
        )
        if end is None:
            return
        if error is not None:
            store.record_step_failure(
                self.conn,
                c.run_id,
                c.epoch,
                key=key,
                error=error,
                traceback=traceback,
                retry_at=retry_at,
                now=end,
            )
        else:
            store.record_step_result(
                self.conn, c.run_id, c.epoch, key=key, output=json.dumps(output), now=end
            )

    def finish(
        self,
        c: store.Claim,
        at: float,
        status: str = "completed",
        output=None,
        error: str | None = None,
    ) -> None:
        store.finish_run(
            self.conn,
            c.run_id,
            c.epoch,
            status=status,
            output=None if status != "completed" else json.dumps(output),
            error=error,
            traceback=None,
            now=at,
        )


TRACEBACK = (
    '  File "/srv/shop/tasks/orders.py", line 41, in create_shipment\n'
    '    raise CarrierError(f"carrier rejected {order_id}")\n'
    "CarrierError: carrier rejected 42 [/]\n"
)


@pytest.fixture
def snapshot_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    j = FixedJournal(tmp_path / "journal.db", monkeypatch)
    # A completed chain with two parallel steps and markup in its output.
    c = j.start("process-order", T0)
    j.step(c, "validate", T0 + 0.01, T0 + 0.3, {"order_id": 42, "items": ["[red]mug[/red]", "[0]"]})
    j.step(c, "reserve-inventory", T0 + 0.31, T0 + 1.1, {"reservation": "res_1"})
    j.step(c, "charge-payment", T0 + 0.31, T0 + 0.9, {"payment": "[link=https://x]pay_1[/link]"})
    j.step(c, "send-confirmation", T0 + 1.12, T0 + 1.5, {"sent": True})
    store.append_log(
        j.conn,
        c.run_id,
        level="INFO",
        message="order 42 [bold]paid[/bold]",
        step_key="charge-payment",
        now=T0 + 0.8,
    )
    j.finish(c, T0 + 1.6, output={"order_id": 42, "note": "[@click=app.quit]x"})
    # A saga that failed and compensated.
    s = j.start("order-saga", T0 + 10)
    j.step(s, "reserve-inventory", T0 + 10.1, T0 + 10.4, {"id": "res_2"})
    j.step(s, "charge-payment", T0 + 10.4, T0 + 10.9, {"id": "pay_2"})
    j.step(
        s,
        "create-shipment",
        T0 + 10.9,
        T0 + 11.3,
        error="CarrierError: carrier rejected 42 [/]",
        traceback=TRACEBACK,
    )
    j.step(s, "refund-payment", T0 + 11.3, T0 + 11.6, {"refunded": "pay_2"}, kind="compensation")
    j.step(s, "release-inventory", T0 + 11.6, T0 + 11.7, {"released": "res_2"}, kind="compensation")
    j.finish(s, T0 + 11.8, status="failed", error="CarrierError: carrier rejected 42 [/]")
    # A fan-out of 12 children, still running: 7 done, 2 failed, 3 to go.
    p = j.start("batch-process", T0 + 20, {"items": 12})
    j.step(p, "prepare", T0 + 20.1, T0 + 20.3, {"batch": 7})
    child_ids, _ = store.record_trigger_step(
        j.conn,
        p.run_id,
        p.epoch,
        key="batch-trigger:process-item",
        name="batch-trigger:process-item",
        seq=2,
        run_attempt=1,
        specs=[
            RunSpec(
                "process-item",
                json.dumps({"item": i}),
                None,
                p.run_id,
                "batch-trigger:process-item",
            )
            for i in range(12)
        ],
        output_of=lambda ids: json.dumps({"run_ids": ids}),
        now=T0 + 20.4,
    )
    j.seq[p.run_id]["batch-trigger:process-item"] = 2
    kids = j._claim("process-item", T0 + 20.5, limit=12)
    by_id = {k.run_id: k for k in kids}
    for n, rid in enumerate(child_ids[:9]):
        failed = n in (3, 7)
        j.finish(
            by_id[rid],
            T0 + 21 + n,
            status="failed" if failed else "completed",
            output={"item": n},
            error=f"ValueError: item {n} is broken" if failed else None,
        )
    j.step(p, "collect", T0 + 20.5, None)
    # A step waiting for its retry, two failed attempts behind it.
    r = j.start("sync-inventory", T0 + 40)
    for attempt in range(2):
        j.step(
            r,
            "fetch-stock",
            T0 + 40.1 + attempt * 10,
            T0 + 40.5 + attempt * 10,
            error="ConnectionError: upstream timed out",
            traceback=TRACEBACK,
            retry_at=T0 + 50 if attempt == 0 else NOW + 42,
        )
    store.suspend_run(j.conn, r.run_id, r.epoch, children=(), wake_at=NOW + 42, now=T0 + 50.5)
    # A queued run and a cancelled one.
    j.start("send-email", T0 + 60, claim=False)
    e = j.start("send-email", T0 + 70)
    j.finish(e, T0 + 71, status="cancelled", error="cancelled")
    ids = {"chain": c.run_id, "saga": s.run_id, "fanout": p.run_id, "retry": r.run_id}
    j.conn.close()

    class SnapshotApp(DashboardApp):
        def title_text(self) -> Text:  # the temp folder's path would change every run
            return Text("sylphrun  /srv/shop  journal .sylphrun/journal.db")

    config = Config(
        project_dir=tmp_path, source=None, tasks=["tasks"], journal=tmp_path / "journal.db"
    )
    tasks = {
        t: t
        for t in ("process-order", "order-saga", "batch-process", "sync-inventory", "send-email")
    }

    def make() -> DashboardApp:
        return SnapshotApp(config, tasks=tasks, clock=lambda: NOW)

    yield make, ids
    monkeypatch.undo()
    time.tzset()


def loaded(open_id: str | None = None, keys: tuple[str, ...] = ()):
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await until(pilot, lambda: app.loaded and app.workers_alive is not None)
        if open_id is not None:
            await open_run(pilot, open_id)
        if keys:
            await pilot.press(*keys)
        await pilot.pause(0.3)

    return run_before


def test_snapshot_runs_list(snap_compare, snapshot_app) -> None:
    make, _ = snapshot_app
    assert snap_compare(make(), terminal_size=(120, 30), run_before=loaded())


def test_snapshot_runs_list_80x24(snap_compare, snapshot_app) -> None:
    make, _ = snapshot_app
    assert snap_compare(make(), terminal_size=(80, 24), run_before=loaded(keys=("h",)))


def test_snapshot_fanout_run(snap_compare, snapshot_app) -> None:
    make, ids = snapshot_app
    assert snap_compare(
        make(), terminal_size=(120, 35), run_before=loaded(ids["fanout"], keys=("down",))
    )


def test_snapshot_saga_compensation(snap_compare, snapshot_app) -> None:
    make, ids = snapshot_app
    assert snap_compare(
        make(), terminal_size=(120, 30), run_before=loaded(ids["saga"], keys=("down", "down"))
    )


def test_snapshot_retry_countdown(snap_compare, snapshot_app) -> None:
    make, ids = snapshot_app
    assert snap_compare(make(), terminal_size=(120, 30), run_before=loaded(ids["retry"]))


def test_snapshot_timeline_with_parallel_steps(snap_compare, snapshot_app) -> None:
    make, ids = snapshot_app
    assert snap_compare(
        make(), terminal_size=(100, 24), run_before=loaded(ids["chain"], keys=("2",))
    )


def suspended_journal(path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """One finished run that spent most of its time suspended: a durable sleep, a fan-in
    parked on its children, and a step's retry back-off. Returns its id."""
    j = FixedJournal(path, monkeypatch)
    t = T0 + 200
    c = j.start("nightly-sync", t)
    j.step(c, "export", t + 0.1, t + 1.0, {"rows": 120})
    store.record_step_waiting(
        j.conn,
        c.run_id,
        c.epoch,
        key="cool-down",
        name="cool-down",
        kind="sleep",
        seq=2,
        run_attempt=1,
        output=json.dumps({"wake_at": t + 11}),
        now=t + 1.0,
    )
    j.seq[c.run_id]["cool-down"] = 2
    store.suspend_run(j.conn, c.run_id, c.epoch, children=(), wake_at=t + 11, now=t + 1.05)
    c = j._claim("nightly-sync", t + 11.02)[0]
    store.record_step_result(
        j.conn,
        c.run_id,
        c.epoch,
        key="cool-down",
        output=json.dumps({"wake_at": t + 11}),
        now=t + 11.03,
    )
    kids, _ = store.record_trigger_step(
        j.conn,
        c.run_id,
        c.epoch,
        key="batch-trigger:sync-shard",
        name="batch-trigger:sync-shard",
        seq=3,
        run_attempt=1,
        specs=[
            RunSpec(
                "sync-shard", json.dumps({"shard": i}), None, c.run_id, "batch-trigger:sync-shard"
            )
            for i in range(3)
        ],
        output_of=lambda ids: json.dumps({"run_ids": ids}),
        now=t + 11.1,
    )
    j.seq[c.run_id]["batch-trigger:sync-shard"] = 3
    j.step(c, "collect", t + 11.2, None)
    store.suspend_run(j.conn, c.run_id, c.epoch, children=kids, wake_at=None, now=t + 11.25)
    for n, kid in enumerate(j._claim("sync-shard", t + 12, limit=3)):
        j.finish(kid, t + 14 + 2 * n, output={"shard": n})
    c = j._claim("nightly-sync", t + 18.5)[0]
    j.step(c, "collect", t + 18.5, t + 18.6, [{"ok": True}] * 3)
    j.step(
        c,
        "publish",
        t + 18.7,
        t + 19.0,
        error="ConnectionError: [cdn] refused",
        traceback=TRACEBACK,
        retry_at=t + 24,
    )
    store.suspend_run(j.conn, c.run_id, c.epoch, children=(), wake_at=t + 24, now=t + 19.05)
    c = j._claim("nightly-sync", t + 24.0)[0]
    j.step(c, "publish", t + 24.01, t + 24.5, {"published": True})
    j.finish(c, t + 24.6, output={"ok": True})
    j.conn.close()
    return c.run_id


def test_snapshot_timeline_with_suspended_time(
    snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    run_id = suspended_journal(tmp_path / "journal.db", monkeypatch)
    config = Config(
        project_dir=tmp_path, source=None, tasks=["tasks"], journal=tmp_path / "journal.db"
    )
    app = DashboardApp(config, tasks={"nightly-sync": 1, "sync-shard": 1}, clock=lambda: T0 + 300)
    app.title_text = lambda: Text("sylphrun  /srv/shop  journal .sylphrun/journal.db")

    async def check(pilot: Pilot) -> None:
        await loaded(run_id, keys=("2",))(pilot)
        timeline = pilot.app.screen.query_one(Timeline)
        bands = [
            (b.reason, round(b.start - T0 - 200, 2), round(b.end - T0 - 200, 2))
            for b in timeline.suspended
        ]
        assert bands == [
            ("sleeping", 1.05, 11.02),
            ("waiting", 11.25, 18.5),
            ("retry", 19.05, 24.0),
        ]
        rows = timeline_rows(timeline)
        assert rows["◐ suspended"].rstrip().endswith("22.2s")  # of 24.6s
        for reason in ("sleeping", "waiting", "retry"):
            assert f" {reason} " in rows["◐ suspended"]
        assert " sleeping " in rows["cool-down"] and "█" not in rows["cool-down"]
        assert " waiting " in rows["collect"] and " retry " in rows["publish"]

    try:
        assert snap_compare(app, terminal_size=(110, 24), run_before=check)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_snapshot_trigger_dialog(snap_compare, snapshot_app) -> None:
    make, _ = snapshot_app
    assert snap_compare(make(), terminal_size=(100, 30), run_before=loaded(keys=("t",)))


def test_a_project_without_a_journal_yet_says_how_to_start(tmp_path: Path) -> None:
    config = Config(
        project_dir=tmp_path, source=None, tasks=[], journal=tmp_path / ".sylphrun/j.db"
    )
    app = DashboardApp(config, tasks={})

    async def scenario(pilot: Pilot) -> None:
        table = app.screen.query_one("#runs-table", RunsTable)
        assert "no runs yet: press t to trigger a task" in table.render_line(2).text
        await until(pilot, lambda: app.workers_alive == 0)
        assert "no workers: start `sylphrun worker`" in str(
            app.screen.query_one(StatusLine).render()
        )

    drive(app, scenario)


def test_double_click_opens_a_run(journal: RealJournal) -> None:
    app = make_app(journal)

    async def scenario(pilot: Pilot) -> None:
        row = table_ids(app).index(journal.ids["saga"])
        await pilot.click("#runs-table", offset=(30, 1 + row), times=2)
        await until(
            pilot,
            lambda: isinstance(app.screen, RunScreen) and app.screen.run_id == journal.ids["saga"],
        )

    drive(app, scenario)
