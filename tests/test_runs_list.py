"""`sylphrun runs` lists the runs a user triggered, each with a summary of its children;
`--all` and `--parent RUN` show children (issue 12, item 4)."""

from __future__ import annotations

import json

TASKS = """
from sylphrun import task

@task(id="item")
async def item(payload, ctx):
    if payload.get("fail"):
        raise RuntimeError("bad item")
    return payload

@task(id="batch")
async def batch(payload, ctx):
    handles = await item.batch_trigger([{"n": 1}, {"n": 2}, {"fail": True}])
    async def collect():
        return [await h.wait_for_completion() for h in handles.runs]
    return await ctx.step.run("collect", collect)

@task(id="alone")
async def alone(payload, ctx):
    return 1
"""


def test_runs_shows_top_level_runs_with_a_children_summary(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory(workers=1).start()
    parent = eng.run("batch", timeout=60)
    assert parent.ok, parent.error
    alone = eng.run("alone")
    rows = json.loads(project.cli("runs", "--json").stdout)
    assert [r["run_id"] for r in rows] == [alone.run_id, parent.run_id]
    assert all("parent_run_id" in r and r["parent_run_id"] is None for r in rows)
    assert rows[1]["children"] == {"total": 3, "done": 3, "failed": 1, "cancelled": 0}
    text = project.cli("runs").stdout
    assert "CHILDREN" in text and "3: 2 ok, 1 failed" in text
    assert "item" not in text

    every = json.loads(project.cli("runs", "--all", "--json").stdout)
    assert len(every) == 5
    assert sum(1 for r in every if r["parent_run_id"] == parent.run_id) == 3

    children = json.loads(project.cli("runs", "--parent", parent.run_id[:14], "--json").stdout)
    assert len(children) == 3 and {r["task_id"] for r in children} == {"item"}
    assert {r["parent_run_id"] for r in children} == {parent.run_id}
    failed = json.loads(
        project.cli("runs", "--parent", parent.run_id, "--status", "failed", "--json").stdout
    )
    assert len(failed) == 1


def test_runs_parent_that_does_not_exist_is_one_line(project):
    project.write_tasks(TASKS)
    for _ in range(2):  # without a journal, then with one
        result = project.cli("runs", "--parent", "run_nope")
        assert result.returncode == 2 and result.stderr.startswith("error: no run")
        assert len(result.stderr.strip().splitlines()) == 1
        project.cli("trigger", "alone")
