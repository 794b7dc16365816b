"""The change feed's exact cursor: `changes_since` pages and `step_changes` per run, each
change once, in order, however the writes and the reads interleave. No clock involved:
every write below happens at the same `now`."""

from __future__ import annotations

from journal.helpers import LEASE, complete_step, finish, start_step, terms
from sylphrun import model
from sylphrun.journal import RunSpec

NOW = 10.0


def _result(journal, claim, key, *, notify=False):
    journal.record_step_result(claim.run_id, claim.epoch, key=key, output="1", now=NOW,
                               notify=notify)


def _silent_start(journal, claim, key, *, seq):
    journal.record_step_start(claim.run_id, claim.epoch, key=key, name=key, kind=model.STEP,
                              seq=seq, run_attempt=1, now=NOW, notify=False)


def _keys(steps):
    return [(s.key, s.status) for s in steps]


def test_changes_since_reads_every_change_once_page_after_page(journal):
    cursor = journal.feed_cursor()
    ids = [c.run_id for c in journal.enqueue_runs([RunSpec("t", "{}")] * 5, now=NOW)]
    seen = []
    while True:
        page = journal.changes_since(cursor, limit=2)
        seen += [(c.run_id, c.kind) for c in page.changes]
        assert page.more == (len(page.changes) == 2)
        cursor = page.cursor
        if not page.more:
            break
    assert seen == [(rid, "run.queued") for rid in ids]
    assert journal.changes_since(cursor).changes == []
    # From the start: the same changes again; from a change's own cursor: those after it.
    every = journal.changes_since(journal.feed_cursor(from_start=True)).changes
    assert [c.run_id for c in every] == ids
    assert [c.run_id for c in journal.changes_since(every[1].cursor).changes] == ids[2:]


def test_silent_step_writes_are_read_through_their_run_once_each(journal, claimed):
    c = claimed(now=NOW)
    after = journal.feed_cursor()
    start_step(journal, c, "a", seq=1, now=NOW)  # announced: a change of its own
    _result(journal, c, "a")
    _silent_start(journal, c, "b", seq=2)
    [announced] = journal.changes_since(after).changes
    assert (announced.kind, announced.step_key) == ("step.running", "a")
    # Before that change, "a" was running; it has changed since: left for a later read.
    steps, after = journal.step_changes(c.run_id, after, until=announced.cursor)
    assert steps == []
    journal.note_step_change(c.run_id, c.epoch, key="b", status=model.STEP_RUNNING, now=NOW)
    [note] = journal.changes_since(announced.cursor).changes
    steps, after = journal.step_changes(c.run_id, after, until=note.cursor)
    assert _keys(steps) == [("a", model.STEP_COMPLETED), ("b", model.STEP_RUNNING)]
    assert journal.step_changes(c.run_id, after, until=note.cursor)[0] == []
    assert journal.step_changes(c.run_id, after)[0] == []


def test_a_write_after_the_newest_change_waits_for_the_next_one(journal, claimed):
    c = claimed(now=NOW)
    after = journal.feed_cursor()
    _silent_start(journal, c, "a", seq=1)
    # Nothing committed after it yet: another write could still land at its place.
    steps, after = journal.step_changes(c.run_id, after)
    assert steps == []
    journal.enqueue_runs([RunSpec("other", "{}")], now=NOW)  # any later change seals it
    steps, after = journal.step_changes(c.run_id, after)
    assert _keys(steps) == [("a", model.STEP_RUNNING)]
    assert journal.step_changes(c.run_id, after)[0] == []


def test_rare_step_changes_come_before_their_own_change(journal, claimed):
    c = claimed(now=NOW)
    after = journal.feed_cursor()
    _silent_start(journal, c, "a", seq=1)
    journal.record_step_failure(c.run_id, c.epoch, key="a", error="E", traceback=None,
                                retry_at=NOW + 1, now=NOW)
    [retrying] = journal.changes_since(after).changes
    assert retrying.kind == "step.retrying"
    steps, after = journal.step_changes(c.run_id, after, until=retrying.cursor)
    assert [(s.key, s.status, s.attempts) for s in steps] == [("a", model.STEP_RETRYING, 1)]
    _silent_start(journal, c, "a", seq=1)
    _result(journal, c, "a")
    journal.suspend_run(c.run_id, c.epoch, children=[], wake_at=NOW + 5, now=NOW)
    [parked] = journal.changes_since(retrying.cursor).changes
    assert parked.kind == "run.waiting"
    steps, after = journal.step_changes(c.run_id, after, until=parked.cursor)
    assert [(s.key, s.status, s.attempts) for s in steps] == [("a", model.STEP_COMPLETED, 2)]


def test_a_trigger_step_comes_before_the_children_it_queued(journal, claimed):
    c = claimed(now=NOW)
    after = journal.feed_cursor()
    journal.record_trigger_step(c.run_id, c.epoch, key="fan", name="fan", seq=1, run_attempt=1,
                                specs=[RunSpec("kid", "{}", parent_run_id=c.run_id)],
                                output_of=lambda ids: "[]", now=NOW)
    changes = journal.changes_since(after).changes
    assert [ch.kind for ch in changes] == ["step.completed", "run.queued"]
    steps, _ = journal.step_changes(c.run_id, after, until=changes[0].cursor)
    assert _keys(steps) == [("fan", model.STEP_COMPLETED)]


def test_state_changes_up_to_a_cursor(journal, claimed):
    c = claimed(now=NOW)
    journal.suspend_run(c.run_id, c.epoch, children=[], wake_at=NOW + 5, now=NOW + 1)
    until = journal.feed_cursor()
    journal.cancel_run(c.run_id, now=NOW + 2)
    assert [ch.kind for ch in journal.run_state_changes_until(c.run_id, until)] == [
        "run.queued", "run.running", "run.waiting"]
    later = journal.changes_since(until).changes
    assert [ch.kind for ch in later if ch.run_id == c.run_id] == ["run.cancelled"]


def test_steps_journaled_before_the_feed_had_a_cursor_read_as_oldest(backend):
    if backend.latest_version <= 5:
        return
    backend.build_at_version(5, run_id="run_old", task_id="t", payload="{}", step_output="1")
    journal = backend.open()
    try:
        now = journal.feed_cursor()
        start = journal.feed_cursor(from_start=True)
        assert _keys(journal.step_changes("run_old", start)[0]) == [("a", model.STEP_COMPLETED)]
        assert journal.step_changes("run_old", now)[0] == []
        [claim], _ = journal.claim_runs("w1", 1, lease_seconds=LEASE, known_tasks=terms("t"),
                                        now=NOW)
        complete_step(journal, claim, "b", seq=2, now=NOW)
        finish(journal, claim, now=NOW)
        assert _keys(journal.step_changes("run_old", now)[0]) == [("b", model.STEP_COMPLETED)]
    finally:
        journal.close()
