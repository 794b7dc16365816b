"""The change feed and the reads that follow it: cursors that only move forward, a cheap
"anything new?" across handles, and the reads the CLI and the dashboard list runs with."""

from __future__ import annotations

import pytest

from journal.helpers import complete_step, finish
from sylphrun import model
from sylphrun.errors import UnknownRun
from sylphrun.journal import RunSpec


def test_the_feed_gives_what_changed_after_a_cursor_in_order(journal, claimed):
    assert journal.last_event_id() == 0 and journal.events_since(0) == []
    c = claimed(now=10)
    events = journal.events_since(0)
    assert [(e.run_id, e.kind) for e in events] == [
        (c.run_id, "run.queued"),
        (c.run_id, "run.running"),
    ]
    cursor = journal.last_event_id()
    assert cursor == events[-1].id and [e.id for e in events] == sorted({e.id for e in events})
    journal.append_log(c.run_id, level="INFO", message="hi", step_key="s", now=11, epoch=c.epoch)
    # A step's start and result are silent unless the worker asks (notify); a failure is not.
    journal.record_step_start(
        c.run_id,
        c.epoch,
        key="s",
        name="s",
        kind=model.STEP,
        seq=1,
        run_attempt=1,
        now=12,
        notify=False,
    )
    journal.record_step_failure(
        c.run_id, c.epoch, key="s", error="E", traceback=None, retry_at=13, now=12
    )
    journal.record_step_start(
        c.run_id,
        c.epoch,
        key="s",
        name="s",
        kind=model.STEP,
        seq=1,
        run_attempt=1,
        now=13,
        notify=False,
    )
    journal.record_step_result(c.run_id, c.epoch, key="s", output="1", now=14, notify=False)
    journal.note_step_change(c.run_id, c.epoch, key="s", status=model.STEP_COMPLETED, now=14)
    finish(journal, c, now=15)
    new = journal.events_since(cursor)
    assert [(e.kind, e.step_key) for e in new] == [
        ("log", "s"),
        ("step.retrying", "s"),
        ("step.completed", "s"),
        ("run.completed", None),
    ]
    assert new[-1].at == 15 and new[0].id > cursor
    assert journal.events_since(journal.last_event_id()) == []
    assert [e.kind for e in journal.events_since(cursor, limit=2)] == ["log", "step.retrying"]


def test_a_step_announced_with_its_write(journal, claimed):
    c = claimed(now=10)
    cursor = journal.last_event_id()
    complete_step(journal, c, "a", seq=1, now=11)
    assert [e.kind for e in journal.events_since(cursor)] == ["step.running", "step.completed"]


def test_a_stale_note_announces_nothing(journal, claimed):
    c = claimed(now=10)
    journal.release_run(c.run_id, c.epoch, now=11)
    cursor = journal.last_event_id()
    journal.note_step_change(c.run_id, c.epoch, key="s", status=model.STEP_COMPLETED, now=12)
    assert journal.events_since(cursor) == []


def test_a_runs_state_changes_up_to_an_event(journal, claimed):
    c = claimed(now=10)
    journal.suspend_run(c.run_id, c.epoch, children=[], wake_at=50, now=11)
    up_to = journal.last_event_id()
    journal.cancel_run(c.run_id, now=12)
    changes = journal.run_state_changes(c.run_id, up_to=up_to)
    assert [(ch.kind, ch.at) for ch in changes] == [
        ("run.queued", 10),
        ("run.running", 10),
        ("run.waiting", 11),
    ]
    assert changes[-1].event_id <= up_to


def test_the_change_token_moves_when_another_handle_commits(backend, journal):
    other = backend.open()
    try:
        before = journal.change_token()
        assert journal.change_token() == before
        other.enqueue_runs([RunSpec("t", "{}")], now=1)
        assert journal.change_token() != before
        assert journal.status_counts() == {model.QUEUED: 1}
    finally:
        other.close()


def test_notable_logs_across_runs_after_a_cursor(journal, claimed):
    a, b = claimed(now=10), claimed(now=10)
    assert journal.last_log_id() == 0
    journal.append_log(a.run_id, level="INFO", message="quiet", step_key=None, now=11)
    journal.append_log(a.run_id, level="WARNING", message="careful", step_key=None, now=12)
    journal.append_log(b.run_id, level="ERROR", message="broke", step_key="x", now=13)
    notable = journal.notable_logs_since(0)
    assert [(r.run_id, r.level, r.message) for r in notable] == [
        (a.run_id, "WARNING", "careful"),
        (b.run_id, "ERROR", "broke"),
    ]
    assert journal.notable_logs_since(notable[0].id) == notable[1:]
    assert journal.last_log_id() == notable[-1].id


def test_lists_and_summaries_newest_first_with_filters(journal, claimed):
    top = claimed("t", '{"Name": "Alice"}', now=10)
    [kid] = journal.enqueue_children(
        top.run_id, top.epoch, [RunSpec("u", '{"name": "bob"}', parent_run_id=top.run_id)], 11
    )
    [other] = journal.enqueue_runs([RunSpec("u", '{"x": "100%_"}')], now=12)
    finish(journal, top, model.FAILED, output=None, error="E" * 600, now=13)
    assert [r.id for r in journal.list_runs()][0] == other.run_id
    assert {r.id for r in journal.list_runs(task_id="u")} == {kid.run_id, other.run_id}
    assert [r.id for r in journal.list_runs(status=model.FAILED)] == [top.run_id]
    assert [r.id for r in journal.list_runs(parent_run_id=top.run_id)] == [kid.run_id]
    assert kid.run_id not in {r.id for r in journal.list_runs(top_level_only=True)}
    assert len(journal.list_runs(limit=1)) == 1
    summaries = {s.id: s for s in journal.run_summaries()}
    assert set(summaries) == {top.run_id, kid.run_id, other.run_id}
    assert len(summaries[top.run_id].error) == 500
    assert [s.id for s in journal.run_summaries(parent_run_id=top.run_id)] == [kid.run_id]
    assert {s.id for s in journal.run_summaries_by_ids([top.run_id, "run_nope"])} == {top.run_id}
    assert journal.get_run(top.run_id).error == "E" * 600
    # Payload search ignores ASCII case and takes its text literally.
    assert set(journal.runs_with_payload_text("ALICE")) == {top.run_id}
    assert set(journal.runs_with_payload_text("name")) == {top.run_id, kid.run_id}
    assert journal.runs_with_payload_text("0%_") == [other.run_id]
    assert journal.runs_with_payload_text("%") == [other.run_id]
    assert journal.runs_with_payload_text("name", run_ids=[kid.run_id]) == [kid.run_id]
    assert journal.run_fields(top.run_id) == (1, model.FAILED)


def test_run_ids_resolve_from_a_unique_prefix(journal):
    ids = [r.run_id for r in journal.enqueue_runs([RunSpec("t", "{}")] * 2, now=1)]
    for rid in ids:
        assert journal.resolve_run_id(rid) == rid
    common = len(ids[0])
    while ids[0][:common] != ids[1][:common]:
        common -= 1
    assert journal.resolve_run_id(ids[0][: common + 1]) == ids[0]
    with pytest.raises(UnknownRun, match="ambiguous"):
        journal.resolve_run_id(ids[0][:common])
    for bad in ("run_zzzz", "  "):
        with pytest.raises(UnknownRun):
            journal.resolve_run_id(bad)
    with pytest.raises(UnknownRun):
        journal.get_run("run_zzzz")
    with pytest.raises(UnknownRun):
        journal.run_fields("run_zzzz")
