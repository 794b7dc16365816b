"""Flow control through the journal interface: priority, per-key concurrency, rate
limits, debounce, and why a queued run is held (time injected)."""

from __future__ import annotations

from journal.helpers import LEASE, finish, terms
from sylphrun import model
from sylphrun.journal import RunSpec
from sylphrun.journal.types import Debouncing, TaskTerms


def claim(journal, worker="w1", limit=100, *, now, known):
    return journal.claim_runs(worker, limit, lease_seconds=LEASE, known_tasks=known, now=now)[0]


def enqueue(journal, *specs, now):
    return [c.run_id for c in journal.enqueue_runs(list(specs), now)]


def register(journal, task_id, options, now=0.0):
    journal.register_tasks(
        [model.TaskRecord(task_id, options, "f.py", 1, "fp")],
        registered_by="test",
        project_dir=None,
        now=now,
    )


# -- priority ---------------------------------------------------------------------------


def test_higher_priority_is_claimed_first_and_fifo_within_a_priority(journal):
    low = enqueue(journal, *[RunSpec("t", "{}") for _ in range(3)], now=1)
    high = enqueue(journal, RunSpec("t", "{}", priority=5), RunSpec("t", "{}", priority=5), now=2)
    mid = enqueue(journal, RunSpec("t", "{}", priority=1), now=3)
    order = [c.run_id for c in claim(journal, limit=4, now=10, known=terms("t"))]
    assert order == [*high, *mid, low[0]]
    assert [c.run_id for c in claim(journal, now=11, known=terms("t"))] == low[1:]


def test_a_busy_low_priority_backlog_does_not_starve_a_high_priority_run(journal):
    enqueue(journal, *[RunSpec("t", "{}") for _ in range(500)], now=1)
    [urgent] = enqueue(journal, RunSpec("t", "{}", priority=1), now=9)
    assert [c.run_id for c in claim(journal, limit=1, now=10, known=terms("t"))] == [urgent]


# -- concurrency per key ----------------------------------------------------------------


def keyed(limit):
    return {"k": TaskTerms(key_concurrency=limit)}


def test_concurrency_per_key_caps_running_runs_of_each_key(journal):
    a = enqueue(journal, *[RunSpec("k", "{}", concurrency_key="a") for _ in range(3)], now=1)
    b = enqueue(journal, *[RunSpec("k", "{}", concurrency_key="b") for _ in range(2)], now=2)
    got = claim(journal, now=10, known=keyed(2))
    assert sorted(c.run_id for c in got) == sorted(a[:2] + b)
    assert claim(journal, "w2", now=11, known=keyed(2)) == []
    # A finished run frees its key's slot, and only that key's.
    finish(journal, got[0], now=12)
    assert [c.run_id for c in claim(journal, "w2", now=13, known=keyed(2))] == [a[2]]


def test_a_full_key_does_not_starve_the_runs_of_other_keys_behind_it(journal):
    # 50 queued runs of one key ahead of one run of another: limit 1 per key, claims
    # of 10 at a time. The run of the free key must still be found.
    busy = enqueue(journal, *[RunSpec("k", "{}", concurrency_key="busy") for _ in range(50)], now=1)
    [other] = enqueue(journal, RunSpec("k", "{}", concurrency_key="other"), now=2)
    got = claim(journal, limit=10, now=10, known=keyed(1))
    assert sorted(c.run_id for c in got) == sorted([busy[0], other])
    assert claim(journal, "w2", limit=10, now=11, known=keyed(1)) == []


def test_a_parked_run_holds_no_slot_of_its_key(journal):
    [first, second] = enqueue(journal, *[RunSpec("k", "{}", concurrency_key="a")] * 2, now=1)
    [c] = claim(journal, now=10, known=keyed(1))
    journal.suspend_run(c.run_id, c.epoch, children=[], wake_at=20, now=11)
    assert [x.run_id for x in claim(journal, now=12, known=keyed(1))] == [second]
    # The sleeper's time comes while its key is full: it waits for the slot.
    assert claim(journal, now=21, known=keyed(1)) == []
    assert journal.held_by(first, now=21) is None  # no registry entry: limits unknown


def test_an_expired_lease_holds_no_slot(journal):
    [a, b] = enqueue(journal, *[RunSpec("k", "{}", concurrency_key="a")] * 2, now=1)
    assert [c.run_id for c in claim(journal, now=10, known=keyed(1))] == [a]
    # The frozen holder's slot is free: one of the two runs is claimed (the queued one
    # first), the other waits for that slot.
    later = claim(journal, "w2", now=10 + LEASE + 1, known=keyed(1))
    assert [c.run_id for c in later] == [b]


def test_a_replay_keeps_the_priority_and_keys_of_its_original(journal):
    [a] = enqueue(journal, RunSpec("k", "{}", priority=3, concurrency_key="a"), now=1)
    [c] = claim(journal, now=10, known=keyed(1))
    finish(journal, c, now=11)
    [holder] = enqueue(journal, RunSpec("k", "{}", concurrency_key="a"), now=12)
    assert [x.run_id for x in claim(journal, now=13, known=keyed(1))] == [holder]
    replay = journal.replay_run(a, from_step=None, now=14)
    assert claim(journal, now=15, known=keyed(1)) == []  # key "a" is full
    low = enqueue(journal, RunSpec("k", "{}", concurrency_key="b"), now=15)
    [c2] = claim(journal, limit=1, now=16, known={"k": TaskTerms()})
    assert c2.run_id == replay and low  # priority 3 first, once limits allow


# -- rate limits ------------------------------------------------------------------------


def rated(limit, period):
    return {"r": TaskTerms(rate_limit=limit, rate_period=period)}


def test_a_rate_limit_caps_starts_per_window_per_key_and_drops_none(journal):
    x = enqueue(journal, *[RunSpec("r", "{}", rate_key="x") for _ in range(5)], now=1)
    [y] = enqueue(journal, RunSpec("r", "{}", rate_key="y"), now=2)
    got = claim(journal, now=10, known=rated(2, 60))
    assert sorted(c.run_id for c in got) == sorted(x[:2] + [y])
    for c in got:
        finish(journal, c, now=11)
    # Finished or not, the window counts starts: nothing more of x until t=70.
    assert claim(journal, now=69, known=rated(2, 60)) == []
    again = claim(journal, now=70.5, known=rated(2, 60))
    assert [c.run_id for c in again] == x[2:4]
    for c in again:
        finish(journal, c, now=71)
    assert [c.run_id for c in claim(journal, now=131, known=rated(2, 60))] == [x[4]]


def test_a_spent_rate_window_does_not_starve_the_keys_behind_it(journal):
    x = enqueue(journal, *[RunSpec("r", "{}", rate_key="x") for _ in range(50)], now=1)
    [y] = enqueue(journal, RunSpec("r", "{}", rate_key="y"), now=2)
    got = claim(journal, limit=10, now=10, known=rated(1, 60))
    assert sorted(c.run_id for c in got) == sorted([x[0], y])


def test_a_resumed_run_is_not_a_new_start(journal):
    [a, b] = enqueue(journal, *[RunSpec("r", "{}", rate_key="")] * 2, now=1)
    [c] = claim(journal, limit=1, now=10, known=rated(1, 60))
    journal.suspend_run(c.run_id, c.epoch, children=[], wake_at=20, now=11)
    assert [x.run_id for x in claim(journal, now=21, known=rated(1, 60))] == [a]
    assert journal.get_run(b).status == model.QUEUED


def test_held_by_says_when_a_rate_window_frees_up(journal):
    register(journal, "r", {"rate_limit": {"limit": 1, "period": 60, "key": "acct"}})
    [a, b] = enqueue(journal, *[RunSpec("r", "{}", rate_key="7")] * 2, now=1)
    claim(journal, now=10, known=rated(1, 60))
    hold = journal.held_by(b, now=20)
    assert (hold.kind, hold.until) == ("rate_limit", 70)
    assert hold.detail.startswith("acct=7 (1/1")
    assert journal.held_by(b, now=71) is None
    assert journal.held_by(a, now=20) is None  # running


def test_held_by_names_the_full_key(journal):
    register(journal, "k", {"concurrency_per_key": {"limit": 2, "key": "user_id"}})
    ids = enqueue(journal, *[RunSpec("k", "{}", concurrency_key="7")] * 3, now=1)
    claim(journal, now=10, known=keyed(2))
    hold = journal.held_by(ids[2], now=11)
    assert (hold.kind, hold.detail, hold.until) == ("concurrency", "user_id=7 (2/2)", None)


# -- debounce ---------------------------------------------------------------------------


def debounced(payload, *, key="", period=5.0, max_wait=None):
    return RunSpec("d", payload, debounce=Debouncing(key, period, max_wait))


def test_quick_triggers_collapse_into_one_run_with_the_last_payload(journal):
    [first] = enqueue(journal, debounced('{"n": 1}'), now=100)
    assert journal.held_by(first, now=101) == ("debounce", "", 105)
    assert enqueue(journal, debounced('{"n": 2}'), now=103) == [first]
    assert enqueue(journal, debounced('{"n": 3}'), now=107) == [first]
    assert claim(journal, now=111.9, known=terms("d")) == []
    [c] = claim(journal, now=112, known=terms("d"))
    assert (c.run_id, c.payload) == (first, '{"n": 3}')
    # After it started, the next trigger is a new run.
    [second] = enqueue(journal, debounced('{"n": 4}'), now=113)
    assert second != first


def test_debounce_is_per_key(journal):
    [a] = enqueue(journal, debounced("{}", key="a"), now=1)
    [b] = enqueue(journal, debounced("{}", key="b"), now=2)
    assert a != b and enqueue(journal, debounced("{}", key="a"), now=3) == [a]


def test_max_wait_bounds_the_delay_of_a_steady_stream(journal):
    [first] = enqueue(journal, debounced("{}", period=5, max_wait=12), now=0)
    for t in (4, 8, 11):
        assert enqueue(journal, debounced(f'{{"t": {t}}}', period=5, max_wait=12), now=t) == [first]
    [c] = claim(journal, now=12, known=terms("d"))
    assert c.payload == '{"t": 11}'
    # The stream goes on: a new run, not the started one.
    assert enqueue(journal, debounced("{}", period=5, max_wait=12), now=12.5) != [first]


def test_a_run_past_its_debounce_is_not_collapsed_into(journal):
    [first] = enqueue(journal, debounced("{}"), now=0)
    assert enqueue(journal, debounced("{}"), now=6) != [first]
