"""An idempotency key names one run: reused with the same payload it hands that run back
(and says so), reused with another payload it is refused (issue 12, item 3)."""

from __future__ import annotations

import json
import time

import pytest

from sylphrun import IdempotencyConflict
from sylphrun.journal import RunSpec, queries, store

TASKS = """
from ledger_helper import record
from sylphrun import task, Retry

@task(id="hello")
async def hello(payload, ctx):
    return payload

@task(id="child")
async def child(payload, ctx):
    return payload

@task(id="reuses-a-key")
async def reuses_a_key(payload, ctx):
    await child.trigger({"n": 1}, idempotency_key="k-1")
    await child.trigger({"n": 2}, idempotency_key="k-1")

@task(id="retried-parent", retry=Retry(max_attempts=2, min_delay=0, max_delay=0, jitter=0))
async def retried_parent(payload, ctx):
    handle = await child.trigger({"attempt": ctx.attempt}, idempotency_key="per-parent")
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails after the trigger step")
    return handle.run_id

@task(id="step-makes-children")
async def step_makes_children(payload, ctx):
    async def make():
        # A derived key (no key given) with other data on the step's second try.
        await child.trigger({"try": len(open(LEDGER).read().splitlines())})
        record(LEDGER, "try")
        if len(open(LEDGER).read().splitlines()) == 1:
            raise RuntimeError("first try fails")
        return "made"
    return await ctx.step.run("make", make, retry=Retry(max_attempts=2, min_delay=0, jitter=0))
"""


def _one_line_error(result, text: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr


def test_cli_same_key_same_payload_is_the_existing_run_with_a_note_every_time(project):
    project.write_tasks(TASKS)
    first = project.cli(
        "trigger", "hello", "--idempotency-key", "order-42", "--payload", '{"a": 1, "b": [1, 2]}'
    )
    run_id = first.stdout.strip()
    assert first.returncode == 0 and "existing run" not in first.stderr
    # The same object with its keys in another order is the same payload.
    again = project.cli(
        "trigger", "hello", "--idempotency-key", "order-42", "--payload", '{"b": [1, 2], "a": 1}'
    )
    assert again.stdout.strip() == run_id
    assert f"note: idempotency key 'order-42': existing run {run_id}" in again.stderr
    waited = project.cli(
        "trigger",
        "hello",
        "--idempotency-key",
        "order-42",
        "--payload",
        '{"a": 1, "b": [1, 2]}',
        "--wait",
        "--timeout",
        "0.1",
        "--json",
    )
    assert json.loads(waited.stdout)["run_id"] == run_id
    assert f"idempotency key 'order-42': existing run {run_id}" in waited.stderr
    as_json = project.cli(
        "trigger",
        "hello",
        "--idempotency-key",
        "order-42",
        "--json",
        "--payload",
        '{"a": 1, "b": [1, 2]}',
    )
    assert json.loads(as_json.stdout)["created"] is False
    assert "existing run" in as_json.stderr


def test_cli_same_key_other_payload_is_exit_2_and_writes_nothing(project):
    project.write_tasks(TASKS)
    run_id = project.cli(
        "trigger", "hello", "--idempotency-key", "order-42", "--payload", '{"n": 1}'
    ).stdout.strip()
    for other in ('{"n": 2}', '{"n": 1.0}', "{}"):
        result = project.cli(
            "trigger", "hello", "--idempotency-key", "order-42", "--payload", other
        )
        _one_line_error(
            result,
            f"idempotency key 'order-42' belongs to run {run_id}, "
            "triggered with a different payload",
        )
        assert result.stdout == ""
    waited = project.cli(
        "trigger", "hello", "--idempotency-key", "order-42", "--payload", '{"n": 2}', "--wait"
    )
    _one_line_error(waited, "triggered with a different payload")
    assert len(json.loads(project.cli("runs", "--json").stdout)) == 1


def test_sdk_trigger_with_another_payload_raises(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory()  # no workers needed: triggering only enqueues
    first = eng.trigger("hello", {"n": 1}, idempotency_key="k")
    assert eng.trigger("hello", {"n": 1}, idempotency_key="k") == first
    with pytest.raises(IdempotencyConflict) as caught:
        eng.trigger("hello", {"n": 2}, idempotency_key="k")
    assert caught.value.run_id == first and caught.value.key == "k"


def test_a_batch_with_one_conflicting_key_writes_nothing(project):
    conn = project.journal()
    try:
        store.enqueue_runs(conn, [RunSpec("t", '{"n": 1}', "k")], time.time())
        with pytest.raises(IdempotencyConflict):
            store.enqueue_runs(
                conn, [RunSpec("t", '{"n": 9}', "new"), RunSpec("t", '{"n": 2}', "k")], time.time()
            )
        assert [r.idempotency_key for r in queries.list_runs(conn)] == ["k"]
    finally:
        conn.close()


def test_in_a_run_a_reused_key_fails_the_run_but_a_replayed_trigger_step_does_not(
    project, engine_factory
):
    project.write_tasks(TASKS)
    eng = engine_factory(workers=1).start()
    bad = eng.run("reuses-a-key")
    assert not bad.ok and "idempotency key 'k-1' belongs to run" in bad.error
    # Attempt 2 replays the journaled trigger step: same child, no conflict, although
    # the payload it would build now differs.
    retried = eng.run("retried-parent")
    assert retried.ok, retried.error
    assert eng.run_record(retried.output).payload == {"attempt": 1}
    # Children created inside a step carry sylphrun's own keys: a step re-executed with
    # other data is not a conflict.
    made = eng.run("step-makes-children")
    assert made.ok, made.error
