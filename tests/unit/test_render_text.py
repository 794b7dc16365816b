"""Text for humans, in the CLI and the dashboard: durations, countdowns, children, tables."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from sylphrun import model, render
from sylphrun.dashboard import text as fmt


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (-1.0, "0ms"),
        (0.0123, "12ms"),
        (3.44, "3.4s"),
        (125.0, "2m05s"),
        (3725.0, "1h02m"),
    ],
)
def test_seconds_reads_as_a_human_duration(value, shown):
    assert fmt.seconds(value) == shown


def test_span_countdown_and_until():
    assert fmt.span(None, 5.0, 9.0) == ""
    assert fmt.span(1.0, None, 3.5) == "2.5s"
    assert fmt.countdown(10.0, 10.0) == "retrying now"
    assert fmt.countdown(10.5, 10.0) == "retry in 0.5s"
    assert fmt.countdown(100.0, 10.0) == "retry in 1m30s"
    assert render.until(10.0 + 7265, 10.0) == "in 2h01m"
    assert render.until(13.4, 10.0) == "in 3.4s"
    # A reader's clock can pass the wake time before a worker claims the run.
    assert render.until(5.0, 10.0) == "now"


def test_first_line_and_one_line():
    assert fmt.first_line("boom\nat line 2") == "boom"
    assert fmt.first_line(None) == ""
    assert "\n" not in render.one_line("a\nb\r\nc")


def test_children_summary_leaves_out_zero_counts():
    run = model.Run(
        "r",
        "t",
        model.WAITING,
        {},
        None,
        None,
        1,
        None,
        None,
        0.0,
        None,
        None,
        None,
        children_total=1000,
        children_done=998,
        children_failed=8,
        children_cancelled=2,
    )
    assert render.children_summary(run) == "1000: 988 ok, 8 failed, 2 cancelled, 2 pending"


def test_progress_bar_fills_its_width_in_proportion():
    bar = fmt.progress_bar(done=5, failed=0, total=10, width=20)
    assert len(bar.plain) == 20
    assert fmt.progress_bar(done=10, failed=0, total=10, width=20).plain != bar.plain


def test_runs_table_lays_out_one_row_per_run_under_fixed_columns():
    runs = [
        model.Run(
            f"run_{n}",
            "mail[red]",
            model.FAILED,
            {},
            None,
            "e",
            2,
            None,
            None,
            100.0,
            100.0,
            103.5,
            None,
        )
        for n in range(3)
    ]
    table = render.runs_table(runs)
    assert [c.header for c in table.columns] == [
        "RUN",
        "TASK",
        "STATUS",
        "ATTEMPT",
        "STARTED",
        "DURATION",
        "CHILDREN",
    ]
    assert table.row_count == 3
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(table)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "RUN",
        "TASK",
        "STATUS",
        "ATTEMPT",
        "STARTED",
        "DURATION",
        "CHILDREN",
    ]
    assert "mail[red]" in lines[1] and "3.5s" in lines[1]  # markup shown literally
