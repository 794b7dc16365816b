"""Power loss (the WAL's unsynced tail lost or torn after every process is killed): with
durability "full" no committed step is lost; with "normal" only the last commits (those
since the last checkpoint), as the README says; either way the journal recovers intact and
what it keeps is a prefix of what was committed. See `powerloss.py`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from faultshim import build_shim, needs_shim  # noqa: F401 (build_shim: the `shim` fixture)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from powerloss import power_cut  # noqa: E402

pytestmark = needs_shim


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_power_loss_keeps_every_committed_step_with_full_durability(shim, tmp_path, durability):
    report = power_cut(tmp_path / "proj", shim, durability)
    # The cut came mid-workload, with steps in flight.
    assert 0 < report["returned_steps"] < report["steps_in_workload"], report
    for name, variant in report["variants"].items():
        assert variant["integrity"] == "ok", (name, variant)
        assert variant["prefix"], (name, variant)  # nothing lost from the middle
    if durability == "full":
        assert report["wal_fsyncs"] > report["returned_steps"] / 2  # a sync per result commit
        for name, variant in report["variants"].items():
            # Every step whose `step.run` returned (its commit was acknowledged) survives.
            assert variant["returned_steps_lost"] == 0, (name, variant)
            # At most the one commit in flight when the power went (written, its fsync not
            # done, so never acknowledged): one writer at a time holds the journal's lock.
            assert variant["completed_steps_lost"] <= 1, (name, variant)
    else:
        # "normal" does not sync the WAL at commit (only before a checkpoint)...
        assert report["wal_fsyncs"] < report["returned_steps"] / 4, report
        # ...so a clean cut loses exactly the commits written since the WAL's last sync, and
        # the harness sees it. Usually there are some; a cut landing between a checkpoint's
        # WAL sync and the next commit leaves none (seen once in CI under load), and then the
        # journal must come back whole.
        cut = report["variants"]["cut"]
        assert cut["state_lost"] == (report["unsynced_commits"] > 0), report
