"""Output as a pipe or a file receives it (issue 12 item 5, issue 11 item 7's escaping):
no wrapping and no truncation when stdout is not a terminal, one line per record, user
text with newlines escaped so it cannot print a fake line, and the divergence warning in
`dev --no-tui` in the same line format as the rest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from sylphrun.journal import queries
from tests.conftest import wait_until
from tests.test_dev import DevProcess

LONG_ID = "report-" + "x" * 120

TASKS = f"""
from sylphrun import task

@task(id={LONG_ID!r})
async def long_task(payload, ctx):
    return await ctx.step.run("step-" + "y" * 150, lambda: "z" * 300)

@task(id="newline-step")
async def newline_step(payload, ctx):
    ctx.log.warning("first line\\n12:00:00 INFO    forged")
    await ctx.step.run("real\\n12:00:00   ✓ run_fake forged completed", lambda: 1)
    await ctx.step.run("fails", lambda: (_ for _ in ()).throw(ValueError("line one\\nline two")))
"""

# A time-stamped record of `dev --no-tui`: "HH:MM:SS <symbol> run_..."
RECORD = re.compile(r"^\d\d:\d\d:\d\d +\S+ run_\w+ ")


def _cli(project, *args: str) -> subprocess.CompletedProcess:
    # No COLUMNS: a pipe's width is Rich's default (80) unless we lift it.
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-m", "sylphrun", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "NO_COLOR": "1"},
    )


def _run_to_end(project, worker, task_id: str) -> str:
    out = _cli(project, "trigger", task_id, "--wait", "--json", "--timeout", "60")
    return json.loads(out.stdout)["run_id"]


def test_runs_and_show_through_a_pipe_are_neither_cut_nor_wrapped(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    run_id = eng.trigger(LONG_ID)
    assert eng.wait(run_id).ok
    runs = _cli(project, "runs")
    assert runs.returncode == 0, runs.stderr
    [row] = [line for line in runs.stdout.splitlines() if line.startswith(run_id)]
    assert LONG_ID in row and "completed" in row, runs.stdout
    assert "…" not in runs.stdout
    show = _cli(project, "show", run_id)
    assert show.returncode == 0, show.stderr
    [step] = [line for line in show.stdout.splitlines() if "step-" in line and "completed" in line]
    assert "step-" + "y" * 150 in step
    [output] = [line for line in show.stdout.splitlines() if line.startswith("output: ")]
    assert "z" * 300 in output


def test_a_step_name_with_a_newline_prints_no_fake_line(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    run_id = eng.trigger("newline-step")
    assert eng.wait(run_id).status == "failed"
    show = _cli(project, "show", run_id).stdout
    assert "real\\n12:00:00   ✓ run_fake forged completed" in show
    assert all("real\\n" in line for line in show.splitlines() if "run_fake" in line)
    assert "line one\\nline two" in show and "\nline two" not in show
    # A log message keeps its lines (a traceback stays readable), indented under it.
    assert "\n" + " " * 19 + "12:00:00 INFO    forged" in show, show


def test_dev_no_tui_into_a_pipe_prints_one_line_per_record(project):
    project.write_tasks(
        TASKS
        + """
@task(id="warns")
async def warns(payload, ctx):
    ctx.log.warning("disk almost full\\nsecond line")
    return 1
"""
    )
    dev = DevProcess(project.root)
    try:
        dev.wait_for("watching")
        conn = project.journal()
        ids = [
            _cli(project, "trigger", t).stdout.strip() for t in (LONG_ID, "newline-step", "warns")
        ]
        wait_until(
            lambda: all(queries.get_run(conn, i).finished for i in ids),
            timeout=90,  # a loaded CI machine: dev's import check, workers, 3 CLI starts
            message="runs finished",
        )
        conn.close()
        dev.wait_for(f"{ids[2]} warns completed")
        dev.wait_for("warning: disk almost full")
    finally:
        dev.stop()
    records = [line for line in dev.lines if " run_" in line]
    assert all(RECORD.match(line) for line in records), [r for r in records if not RECORD.match(r)]
    [long_step] = [line for line in records if "step-" in line and "completed" in line]
    assert "step-" + "y" * 150 in long_step
    assert any(LONG_ID in line for line in records)
    assert any("real\\n12:00:00   ✓ run_fake forged completed" in line for line in records)
    assert any("line one\\nline two" in line for line in records)
    [warning] = [line for line in records if "disk almost full" in line]
    assert f"! {ids[2]} warning: disk almost full\\nsecond line" in warning
    assert not any(line.startswith(("line two", "second line")) for line in dev.lines)


def test_the_divergence_warning_in_dev_no_tui_is_a_line_like_the_others(project):
    from tests.test_dev import SLEEPY

    source = project.write_tasks(SLEEPY)
    dev = DevProcess(project.root)
    try:
        dev.wait_for("watching")
        run_id = _cli(project, "trigger", "sleepy", "--payload", '{"pause": 2.5}').stdout.strip()
        conn = project.journal()
        wait_until(lambda: queries.get_run(conn, run_id).status == "waiting", message="asleep")
        renamed = source.with_suffix(".tmp")
        renamed.write_text(
            source.read_text().replace('ctx.step.run("before"', 'ctx.step.run("before-renamed"')
        )
        os.replace(renamed, source)
        dev.wait_for("reloaded")
        line = dev.wait_for("code changed under this run", timeout=30)
        conn.close()
    finally:
        dev.stop()
    assert RECORD.match(line) and f"! {run_id} warning: code changed" in line, line
    assert sum("code changed under this run" in x for x in dev.lines) == 1, dev.lines
