"""A journal written by an older sylphrun opens migrated forward, its runs intact and
usable; one written by a newer sylphrun is refused, untouched."""

from __future__ import annotations

import pytest

from journal.helpers import LEASE, finish, terms
from sylphrun import model
from sylphrun.errors import JournalError


@pytest.mark.parametrize("version", [1, 2, 4])
def test_an_older_journal_is_migrated_and_its_runs_go_on(backend, version):
    if version >= backend.latest_version:
        pytest.skip("not older than this backend's schema")
    backend.build_at_version(
        version, run_id="run_old", task_id="t", payload='{"n": 1}', step_output='"kept"'
    )
    journal = backend.open()
    try:
        assert journal.schema_version() == backend.latest_version
        run = journal.get_run("run_old")
        assert (run.status, run.payload, run.children_cancelled) == (model.QUEUED, {"n": 1}, 0)
        [step] = journal.steps_of("run_old")
        assert (step.output, step.fn, step.copied) == ("kept", None, False)
        assert journal.replay_state("run_old")["a"].output == '"kept"'
        [claim], _ = journal.claim_runs(
            "w1", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=10
        )
        assert claim.run_id == "run_old"
        finish(journal, claim, now=11)
        assert journal.get_run("run_old").status == model.COMPLETED
        assert journal.registered_tasks() == {}
        assert journal.check_integrity() == "ok"
    finally:
        journal.close()
    # Opening again finds it current: nothing to migrate twice.
    again = backend.open()
    try:
        assert again.schema_version() == backend.latest_version
        assert again.get_run("run_old").status == model.COMPLETED
    finally:
        again.close()


def test_a_journal_from_a_newer_sylphrun_is_refused(backend):
    backend.build_at_version(
        backend.latest_version + 1, run_id="run_new", task_id="t", payload="{}", step_output="1"
    )
    with pytest.raises(JournalError, match="newer sylphrun"):
        backend.open()
