"""The dashboard's journal feed, without the app: what each poll reads."""

from __future__ import annotations

import time

from sylphrun.dashboard.feed import EVENT_BATCH, JournalFeed
from sylphrun.journal import Connection, RunSpec, store


def test_a_burst_of_more_events_than_one_batch_is_read_without_another_commit(tmp_path):
    path = tmp_path / "j.db"
    writer = Connection(path, create=True)
    feed = JournalFeed(path)
    feed.open()
    try:
        while feed.poll().more:  # the first page, then the whole (empty) list
            pass
        burst = EVENT_BATCH + 500
        ids = {rid for rid, _ in store.enqueue_runs(
            writer, [RunSpec("t", "{}") for _ in range(burst)], time.time())}
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
