"""Steps as the journal records them (start, result, failure and retry, sleep), fenced by
the run's lease, and what user actions do with them (wake, replay from a step)."""

from __future__ import annotations

import json

import pytest
from conftest import T0, claim, enqueue

from sylphrun import model
from sylphrun.errors import InvalidState
from sylphrun.journal import queries, store


def start(conn, run_id, epoch, key, seq, now, kind=model.STEP):
    store.record_step_start(
        conn, run_id, epoch, key=key, name=key, kind=kind, seq=seq, run_attempt=1, now=now
    )


def test_a_step_result_is_journaled_and_read_back_for_replay(conn):
    run_id = enqueue(conn)
    [c] = claim(conn)
    start(conn, run_id, c.epoch, "a", 0, T0 + 1)
    store.record_step_result(conn, run_id, c.epoch, key="a", output='{"n":1}', now=T0 + 2)
    [step] = queries.steps_of(conn, run_id)
    assert (step.key, step.status, step.output, step.started_at, step.finished_at) == (
        "a",
        model.STEP_COMPLETED,
        {"n": 1},
        T0 + 1,
        T0 + 2,
    )
    assert set(queries.replay_state(conn, run_id)) == {"a"}


def test_step_writes_of_a_fenced_out_worker_are_refused(conn):
    run_id = enqueue(conn)
    [c] = claim(conn)
    start(conn, run_id, c.epoch, "a", 0, T0 + 1)
    store.cancel_run(conn, run_id, now=T0 + 2)
    with pytest.raises(store.LeaseLost):
        store.record_step_result(conn, run_id, c.epoch, key="a", output="1", now=T0 + 3)
    [step] = queries.steps_of(conn, run_id)
    assert step.status != model.STEP_COMPLETED and step.output is None


def test_a_failed_step_with_a_retry_waits_and_wake_brings_it_forward(conn):
    run_id = enqueue(conn)
    [c] = claim(conn)
    start(conn, run_id, c.epoch, "fetch", 0, T0 + 1)
    store.record_step_failure(
        conn,
        run_id,
        c.epoch,
        key="fetch",
        error="ConnectionError: x",
        traceback=None,
        retry_at=T0 + 3600,
        now=T0 + 2,
    )
    store.suspend_run(conn, run_id, c.epoch, children=[], wake_at=T0 + 3600, now=T0 + 2)
    [step] = queries.steps_of(conn, run_id)
    assert (step.status, step.retry_at) == (model.STEP_RETRYING, T0 + 3600)
    assert [a.status for a in step.attempt_log] == [model.STEP_FAILED]
    assert store.wake_run(conn, run_id, now=T0 + 10) == "its step 'fetch' is retried now"
    assert queries.steps_of(conn, run_id)[0].retry_at == T0 + 10
    assert [x.run_id for x in claim(conn, now=T0 + 10)] == [run_id]
    assert "woken by user" in queries.logs_of(conn, run_id)[-1].message


def test_wake_ends_a_durable_sleep_in_the_step_and_the_run(conn):
    run_id = enqueue(conn)
    [c] = claim(conn)
    store.record_step_waiting(
        conn,
        run_id,
        c.epoch,
        key="nap",
        name="nap",
        kind=model.SLEEP,
        seq=0,
        run_attempt=1,
        output=json.dumps({"wake_at": T0 + 3600}),
        now=T0 + 1,
    )
    store.suspend_run(conn, run_id, c.epoch, children=[], wake_at=T0 + 3600, now=T0 + 1)
    assert store.wake_run(conn, run_id, now=T0 + 5) == "its sleep 'nap' ends now"
    assert queries.steps_of(conn, run_id)[0].output == {"wake_at": T0 + 5}
    assert queries.get_run(conn, run_id).ready_at == T0 + 5


def test_replay_from_a_step_copies_the_steps_before_it(conn):
    run_id = enqueue(conn, payload='{"order": 7}')
    [c] = claim(conn)
    for seq, key in enumerate(["a", "b", "c"]):
        start(conn, run_id, c.epoch, key, seq, T0 + seq)
        store.record_step_result(conn, run_id, c.epoch, key=key, output=str(seq), now=T0 + seq)
    store.finish_run(
        conn,
        run_id,
        c.epoch,
        status=model.COMPLETED,
        output="null",
        error=None,
        traceback=None,
        now=T0 + 5,
    )
    with pytest.raises(InvalidState, match="replay"):
        store.retry_run(conn, run_id, now=T0 + 6)
    new_id = store.replay_run(conn, run_id, from_step="b", now=T0 + 6)
    new = queries.get_run(conn, new_id)
    assert (new.status, new.payload, new.replay_of) == (model.QUEUED, {"order": 7}, run_id)
    copied = queries.steps_of(conn, new_id)
    assert [(s.key, s.output, s.copied) for s in copied] == [("a", 0, True)]
    assert queries.steps_of(conn, store.replay_run(conn, run_id, from_step=None, now=T0 + 7)) == []
