"""The change feed's exact cursor: `changes_since` pages and `step_changes` per run, each
change once, in order, however the writes and the reads interleave. No clock involved:
every write below happens at the same `now`."""

from __future__ import annotations

from journal.helpers import LEASE, complete_step, finish, start_step, terms
from sylphrun import model
from sylphrun.journal import RunSpec

NOW = 10.0


def _result(journal, claim, key, *, notify=False):
    journal.record_step_result(
        claim.run_id, claim.epoch, key=key, output="1", now=NOW, notify=notify
    )


def _silent_start(journal, claim, key, *, seq):
    journal.record_step_start(
        claim.run_id,
        claim.epoch,
        key=key,
        name=key,
        kind=model.STEP,
        seq=seq,
        run_attempt=1,
        now=NOW,
        notify=False,
    )


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
    journal.record_step_failure(
        c.run_id, c.epoch, key="a", error="E", traceback=None, retry_at=NOW + 1, now=NOW
    )
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
    journal.record_trigger_step(
        c.run_id,
        c.epoch,
        key="fan",
        name="fan",
        seq=1,
        run_attempt=1,
        specs=[RunSpec("kid", "{}", parent_run_id=c.run_id)],
        output_of=lambda ids: "[]",
        now=NOW,
    )
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
        "run.queued",
        "run.running",
        "run.waiting",
    ]
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
        [claim], _ = journal.claim_runs(
            "w1", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=NOW
        )
        complete_step(journal, claim, "b", seq=2, now=NOW)
        finish(journal, claim, now=NOW)
        assert _keys(journal.step_changes("run_old", now)[0]) == [("b", model.STEP_COMPLETED)]
    finally:
        journal.close()


def test_a_reader_polling_between_random_writes_sees_each_step_state_once_in_order(journal):
    """Writers and a reader interleaved at random (seeded): what the reader gets of each step
    is its history in order, each state at most once (changes between two looks merge into
    the last), and always its final state."""
    import random

    rng = random.Random(13)
    runs = [r.run_id for r in journal.enqueue_runs([RunSpec("t", "{}")] * 3, now=NOW)]
    claims, _ = journal.claim_runs("w1", 3, lease_seconds=LEASE, known_tasks=terms("t"), now=NOW)
    history: dict[tuple[str, str], list[tuple[str, int]]] = {}
    seen: dict[tuple[str, str], list[tuple[str, int]]] = {}
    reader = _Reader(journal, seen)
    for _ in range(400):
        c = rng.choice(claims)
        key = f"s{rng.randrange(6)}"
        state = journal.replay_state(c.run_id).get(key)
        if state is None or state.status in (model.STEP_COMPLETED, model.STEP_RETRYING):
            journal.record_step_start(
                c.run_id,
                c.epoch,
                key=key,
                name=key,
                kind=model.STEP,
                seq=int(key[1:]),
                run_attempt=1,
                now=NOW,
                notify=rng.random() < 0.2,
            )
        elif rng.random() < 0.7:
            _result(journal, c, key, notify=rng.random() < 0.2)
        else:
            journal.record_step_failure(
                c.run_id, c.epoch, key=key, error="E", traceback=None, retry_at=NOW, now=NOW
            )
        step = journal.replay_state(c.run_id)[key]
        history.setdefault((c.run_id, key), []).append((step.status, step.attempts))
        if rng.random() < 0.1:
            journal.note_step_change(c.run_id, c.epoch, key=key, status=step.status, now=NOW)
        if rng.random() < 0.3:
            reader.poll()
    for c in claims:
        journal.suspend_run(c.run_id, c.epoch, children=[], wake_at=NOW + 60, now=NOW)
        for key, step in journal.replay_state(c.run_id).items():
            if history[(c.run_id, key)][-1] != (step.status, step.attempts):
                history[(c.run_id, key)].append((step.status, step.attempts))  # parked
    reader.poll()
    reader.poll()
    assert set(seen) == set(history) and {r for r, _ in seen} == set(runs)
    for step, states in history.items():
        got = seen[step]
        assert got[-1] == states[-1], step
        assert all(a != b for a, b in zip(got, got[1:], strict=False)), (step, got)
        rest = iter(states)
        assert all(any(s == h for h in rest) for s in got), (step, got, states)


class _Reader:
    """A follower as `dev --no-tui` is one: each change, then the steps its run changed
    before it; at the end of a page, the rest up to the page's end."""

    def __init__(self, journal, seen) -> None:
        self.journal, self.seen = journal, seen
        self.cursor = journal.feed_cursor()
        self.floors: dict = {}

    def poll(self) -> None:
        page = self.journal.changes_since(self.cursor)
        for change in page.changes:
            self._steps(change.run_id, change.cursor)
        for run_id in list(self.floors):
            self._steps(run_id, page.cursor)
        self.cursor = page.cursor

    def _steps(self, run_id, until) -> None:
        steps, self.floors[run_id] = self.journal.step_changes(
            run_id, self.floors.get(run_id, self.cursor), until=until
        )
        for s in steps:
            self.seen.setdefault((run_id, s.key), []).append((s.status, s.attempts))
