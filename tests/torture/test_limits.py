"""Limits of what a step can journal (issue 11 item 7), through real workers: a result
too large, nested too deeply to read back, or with keys that collide as JSON fails its
step at once, naming the step, and is never retried; the config key that sets the size
limit is validated."""

from __future__ import annotations

import pytest

from sylphrun import codec, model
from sylphrun.config import load_config
from sylphrun.errors import ConfigError, NotJSONSerializable, ValueTooLarge

TASKS = """
from ledger_helper import record
from sylphrun import task, Retry

AGAIN = Retry(max_attempts=3, min_delay=0.05, max_delay=0.05)

def nested(depth):
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value

def counted(line, value):
    record(LEDGER, line)
    return value

@task(id="too-large", retry=AGAIN)
async def too_large(payload, ctx):
    return await ctx.step.run("big", counted, "big", "x" * payload["size"])

@task(id="too-deep", retry=AGAIN)
async def too_deep(payload, ctx):
    return await ctx.step.run("deep", counted, "deep", nested(payload["depth"]))

@task(id="deep-then-nap")
async def deep_then_nap(payload, ctx):
    value = await ctx.step.run("deep", nested, payload["depth"])
    await ctx.step.sleep("nap", 0.1)  # the resumed execution reads "deep" back
    return value == nested(payload["depth"])

@task(id="colliding-keys", retry=AGAIN)
async def colliding_keys(payload, ctx):
    return await ctx.step.run("keys", counted, "keys", {1: "int", "1": "str"})

@task(id="large-output", retry=AGAIN)
async def large_output(payload, ctx):
    record(LEDGER, "body")
    return "y" * 5000
"""


def _failed_once(eng, run_id: str, ledger_line: str | None, project) -> str:
    result = eng.wait(run_id)
    assert result.status == model.FAILED, result
    # Not retried, though the task allows 3 attempts: the same value would be refused again.
    assert eng.run_record(run_id).attempt == 1
    if ledger_line is not None:
        assert project.ledger_lines().count(ledger_line) == 1
    return result.error


def test_a_step_result_over_the_limit_fails_at_once_naming_the_step(project, engine_factory):
    project.write_config('max_step_output = "4KB"\n')
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    run_id = eng.trigger("too-large", {"size": 10_000})
    error = _failed_once(eng, run_id, "big", project)
    assert "step 'big' result is 10,002 bytes as JSON; the limit is 4,096" in error
    [step] = eng.steps(run_id)
    assert (step.status, step.attempts) == (model.STEP_FAILED, 1)
    ok = eng.run("too-large", {"size": 4000})
    assert ok.ok and len(ok.output) == 4000


def test_a_task_output_over_the_limit_fails_the_run_once(project, engine_factory):
    project.write_config("max_step_output = 4096\n")
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    error = _failed_once(eng, eng.trigger("large-output"), "body", project)
    assert "the output of task 'large-output' is 5,002 bytes as JSON" in error


def test_a_result_nested_too_deeply_to_read_back_is_refused_at_encode(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    error = _failed_once(eng, eng.trigger("too-deep", {"depth": 975}), "deep", project)
    assert "step 'deep' result is nested more than 512 levels deep" in error
    # The deepest value accepted is read back by a resumed run.
    ok = eng.run("deep-then-nap", {"depth": 512})
    assert ok.ok and ok.output is True, ok.error


def test_keys_that_collide_as_json_are_refused_naming_them(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory().start()
    error = _failed_once(eng, eng.trigger("colliding-keys"), "keys", project)
    assert "step 'keys' result has keys 1 and '1'" in error


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({1: "a", "1": "b"}, "keys 1 and '1'"),
        ([{"x": {True: 1, "true": 2}}], "keys True and 'true'"),
        (({None: 1, "null": 2},), "keys None and 'null'"),
        ({1.5: 1, "1.5": 2}, "keys 1.5 and '1.5'"),
    ],
)
def test_codec_refuses_colliding_keys(value, fragment):
    with pytest.raises(NotJSONSerializable, match="same key"):
        codec.dumps(value, what="step 'k' result")
    with pytest.raises(NotJSONSerializable) as info:
        codec.dumps(value)
    assert fragment in str(info.value)


def test_codec_keeps_what_it_can_read_back():
    # Non-str keys that do not collide, brackets inside strings, exactly MAX_DEPTH levels.
    assert codec.dumps({1: "a", 2: "b", "x": {3: []}}) == '{"1":"a","2":"b","x":{"3":[]}}'
    assert codec.loads(codec.dumps(["[" * 5000, {']]\\"': "{{" * 800}]))
    deepest = []
    for _ in range(codec.MAX_DEPTH - 1):
        deepest = [deepest]
    assert codec.loads(codec.dumps(deepest)) == deepest
    with pytest.raises(NotJSONSerializable, match="nested more than 512 levels"):
        codec.dumps([deepest])
    with pytest.raises(ValueTooLarge, match="is 1,026 bytes as JSON; the limit is 1,024"):
        codec.dumps("é" * 512, limit=1024)
    assert codec.dumps("é" * 511, limit=1024)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ('"16MB"', 16 * 1024 * 1024),
        ('"512kb"', 512 * 1024),
        ("2048", 2048),
        ('"1 GB"', None),
        ('"lots"', None),
        ("100", None),
        ("true", None),
        ('"2048B"', 2048),
    ],
)
def test_max_step_output_setting(tmp_path, setting, expected):
    (tmp_path / "sylphrun.toml").write_text(f'tasks = ["tasks"]\nmax_step_output = {setting}\n')
    if expected is None:
        with pytest.raises(ConfigError, match="max_step_output"):
            load_config(tmp_path)
    else:
        assert load_config(tmp_path).max_step_output == expected


def test_the_default_step_output_limit_is_16_mb(tmp_path):
    (tmp_path / "sylphrun.toml").write_text('tasks = ["tasks"]\n')
    assert load_config(tmp_path).max_step_output == 16 * 1024 * 1024
