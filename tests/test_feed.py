"""The dashboard's journal feed, without the app: what each poll reads."""

from __future__ import annotations

import time

from sylphrun.dashboard.feed import EVENT_BATCH, JournalFeed
from sylphrun.journal import RunSpec, open_journal


def test_a_burst_of_more_events_than_one_batch_is_read_without_another_commit(tmp_path):
    path = tmp_path / "j.db"
    writer = open_journal(path)
    feed = JournalFeed(path)
    feed.open()
    try:
        while feed.poll().more:  # the first page, then the whole (empty) list
            pass
        burst = EVENT_BATCH + 500
        ids = {
            rid
            for rid, _ in writer.enqueue_runs(
                [RunSpec("t", "{}") for _ in range(burst)], time.time()
            )
        }
        seen: set[str] = set()
        update = feed.poll()
        seen |= {s.id for s in update.runs}
        assert update.more  # a full batch: the app polls again at once
        # No commit since: the rest of the burst is still read (it waited for the next
        # commit, which may never come).
        seen |= {s.id for s in feed.poll().runs}
        assert seen == ids
    finally:
        feed.close()
        writer.close()


def test_the_watched_runs_parking_history_is_read_once_then_followed(tmp_path):
    from sylphrun.journal.types import TaskTerms

    path = tmp_path / "j.db"
    writer = open_journal(path)
    feed = JournalFeed(path)
    feed.open()
    try:
        [(run_id, _)] = writer.enqueue_runs([RunSpec("t", "{}")], 10.0)
        [claim], _ = writer.claim_runs(
            "w", 1, lease_seconds=60, known_tasks={"t": TaskTerms()}, now=10.0
        )
        while feed.poll().more:
            pass
        feed.watch(run_id)
        kinds = [c[2] for c in feed.poll().detail.changes]
        assert kinds == ["run.queued", "run.running"]
        writer.suspend_run(run_id, claim.epoch, children=[], wake_at=20.0, now=11.0)
        writer.cancel_run(run_id, now=12.0)
        # Both committed before the poll: one poll reads them (the feed's cursor is exact).
        detail = feed.poll().detail
        assert detail.run.status == "cancelled"
        assert [c[2] for c in detail.changes] == [
            "run.queued",
            "run.running",
            "run.waiting",
            "run.cancelled",
        ]
    finally:
        feed.close()
        writer.close()
