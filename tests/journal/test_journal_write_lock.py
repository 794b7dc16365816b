"""The write lock as the supervisor's watchdog sees it (`write_lock_holder`,
`write_progress`): asked from another handle, never waiting on the journal."""

from __future__ import annotations

import os

from sylphrun.journal.types import RunSpec


def test_the_lock_is_free_between_writes(journal):
    journal.enqueue_runs([RunSpec("t", "{}")], now=1)
    assert journal.write_lock_holder() is None


def test_a_writer_inside_its_transaction_is_named_by_pid(journal, backend, claimed):
    parent = claimed(now=10)
    other = backend.open()
    seen = []

    def output_of(ids):  # called inside the trigger step's one transaction
        seen.append(other.write_lock_holder())
        return "{}"

    try:
        journal.record_trigger_step(
            parent.run_id,
            parent.epoch,
            key="trigger:t",
            name="trigger:t",
            seq=1,
            run_attempt=1,
            specs=[RunSpec("t", "{}")],
            output_of=output_of,
            now=11,
        )
    finally:
        other.close()
    # A backend whose writers are not local processes says None (the contract allows it).
    assert seen == [os.getpid() if backend.name == "sqlite" else None]


def test_progress_moves_with_each_commit_and_only_then(journal, backend):
    other = backend.open()
    try:
        journal.enqueue_runs([RunSpec("t", "{}")], now=1)
        before = other.write_progress()
        assert other.write_progress() == before
        journal.enqueue_runs([RunSpec("t", "{}")], now=2)
        after = other.write_progress()
    finally:
        other.close()
    if backend.name == "sqlite":
        assert before is not None
    assert after != before or after is None
