"""`Journal.work_listener` (issue 17): the journal's own wake-ups, where it has them."""

from __future__ import annotations

from sylphrun.journal import RunSpec


def test_work_listener_wakes_on_a_claimable_run_or_is_none(backend, journal):
    listener = journal.work_listener()
    if backend.name == "sqlite":
        assert listener is None  # SQLite's workers are woken by datagrams
        return
    other = backend.open()
    try:
        assert listener.wait(0) is False
        other.enqueue_runs([RunSpec("t", "{}")], now=1)
        assert listener.wait(30) is True
        assert listener.wait(0) is False  # consumed
    finally:
        listener.close()
        other.close()
