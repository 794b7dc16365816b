"""Replay checking: `sylph.check_replay` / `assert_replays` and `sylphrun check-replay`
re-execute recorded runs on the current code without calling a step function. Fast: the
CLI runs in process (typer's CliRunner)."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from sylphrun import Retry, task
from sylphrun.define import Task

CALLS: list[str] = []


def step_fn(name: str) -> str:
    CALLS.append(name)
    return name


async def v1(payload: dict, ctx) -> list:
    a = await ctx.step.run("validate", step_fn, "validate")
    b = await ctx.step.run("charge", step_fn, "charge")
    c = await ctx.step.run("ship", step_fn, "ship")
    return [a, b, c]


replayed = task(id="plugin-replayed", run=v1)


async def v2_inserted(payload: dict, ctx) -> list:
    a = await ctx.step.run("validate", step_fn, "validate")
    await ctx.step.run("audit", step_fn, "audit")  # new: the run never ran it
    b = await ctx.step.run("charge", step_fn, "charge")
    c = await ctx.step.run("ship", step_fn, "ship")
    return [a, b, c]


async def v2_other_args(payload: dict, ctx) -> list:
    a = await ctx.step.run("validate", step_fn, "validate")
    b = await ctx.step.run("charge", step_fn, "charge twice")
    c = await ctx.step.run("ship", step_fn, "ship")
    return [a, b, c]


async def v2_removed(payload: dict, ctx) -> list:
    a = await ctx.step.run("validate", step_fn, "validate")
    c = await ctx.step.run("ship", step_fn, "ship")
    return [a, c]


async def v2_swapped(payload: dict, ctx) -> list:
    a = await ctx.step.run("validate", step_fn, "validate")
    c = await ctx.step.run("ship", step_fn, "ship")
    b = await ctx.step.run("charge", step_fn, "charge")
    return [a, b, c]


@task(id="plugin-replayed-nap", retry=Retry(max_attempts=1))
async def nap(payload: dict, ctx) -> str:
    await ctx.step.run("before", step_fn, "before")
    await ctx.step.sleep("nap", 3600)
    return await ctx.step.run("after", step_fn, "after")


def new_code(fn) -> dict[str, Task]:
    # Task(...) directly: a second version of the task without touching the registry.
    return {"plugin-replayed": Task("plugin-replayed", fn)}


@pytest.fixture
def recorded(sylph):
    result = sylph.run(replayed)
    assert result.ok
    CALLS.clear()
    return result.run_id


def test_runs_replay_cleanly_on_unchanged_code(sylph, recorded):
    sylph.assert_replays()
    assert CALLS == []  # no step function was called


def test_a_new_step_before_journaled_ones_is_the_divergence(sylph, recorded):
    [d] = sylph.check_replay(tasks=new_code(v2_inserted))

    assert d.run_id == recorded
    assert "expected step 'charge' next, but the code called 'audit' at" in d.message
    assert "test_plugin_replay.py:" in d.message
    assert CALLS == []


def test_other_arguments_are_the_runtimes_divergence(sylph, recorded):
    [d] = sylph.check_replay(tasks=new_code(v2_other_args))

    assert "step 'charge' was recorded as" in d.message and "test_plugin_replay.py:" in d.message


def test_a_removed_step_and_a_swap_are_divergences(sylph, recorded):
    [removed] = sylph.check_replay(tasks=new_code(v2_removed))
    [swapped] = sylph.check_replay(tasks=new_code(v2_swapped))

    assert "expected step 'charge' next, but the code called 'ship'" in removed.message
    assert "steps out of order" in swapped.message


def test_an_unfinished_run_replays_up_to_where_it_stopped(sylph):
    handle = sylph.trigger(nap)
    sylph.advance(0)
    assert handle.status == "waiting"
    CALLS.clear()

    sylph.assert_replays(handle.run_id)
    assert CALLS == []


def test_assert_replays_names_the_divergence(sylph, recorded):
    with pytest.raises(AssertionError, match=f"{recorded} \\(plugin-replayed\\): expected step"):
        sylph.assert_replays(tasks=new_code(v2_inserted))


# -- the command ----------------------------------------------------------------------


def test_check_replay_command_exit_codes(tmp_path, monkeypatch):
    from sylphrun.cli import app
    from sylphrun.testing import Sylph

    project = tmp_path / "proj"
    project.mkdir()
    (project / "sylphrun.toml").write_text('tasks = ["replay_cli_tasks.py"]\n')
    source = textwrap.dedent("""
        from sylphrun import task

        def fetch(n):
            return n

        @task(id="replay-cli")
        async def replay_cli(payload, ctx):
            first = await ctx.step.run("fetch", fetch, 1)
            {extra}
            return await ctx.step.run("fetch", fetch, 2) + first
    """)
    module = project / "replay_cli_tasks.py"
    module.write_text(source.format(extra=""))
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.chdir(project)
    import replay_cli_tasks  # the project's module, written above

    journal = tmp_path / "recorded.db"
    recorder = Sylph(journal)
    try:
        assert recorder.run(replay_cli_tasks.replay_cli).ok
    finally:
        recorder.close()

    runner = CliRunner()
    clean = runner.invoke(app, ["check-replay", str(journal)])
    assert clean.exit_code == 0, clean.output
    assert "1 run(s) replay cleanly" in clean.output

    # One more fetch(...) call shifts the keys: fetch#2 would meet fetch(2)'s result.
    module.write_text(source.format(extra='await ctx.step.run("fetch", fetch, 99)'))
    diverged = runner.invoke(app, ["check-replay", str(journal)])
    assert diverged.exit_code == 1, diverged.output
    assert "DIVERGED" in diverged.output and "replay_cli_tasks.py:" in diverged.output
    assert "1 run(s) checked, 1 diverged" in diverged.output

    missing = runner.invoke(app, ["check-replay", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and "no journal at" in missing.output
