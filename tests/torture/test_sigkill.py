"""SIGKILL torture, the fast version CI runs: about 50 random kills of workers, the
supervisor and a CLI mid-trigger during a mixed workload, invariants checked after every
kill (see `harness.py`). `bench/torture.py` runs the long version (1,000 kills).

SYLPHRUN_TORTURE_SEED and SYLPHRUN_TORTURE_KILLS reproduce or lengthen a run.
"""

from __future__ import annotations

import os

from harness import Torture

SEED = int(os.environ.get("SYLPHRUN_TORTURE_SEED", "7"))
KILLS = int(os.environ.get("SYLPHRUN_TORTURE_KILLS", "50"))


def test_random_sigkills_lose_nothing_and_rerun_only_the_in_flight_step(tmp_path):
    torture = Torture(tmp_path / "proj", seed=SEED)
    try:
        figures = torture.run(KILLS, initial_runs=20, runs_per_kill=1.5, pause=(0.0, 0.25))
    finally:
        torture.close()
    # The invariants are asserted inside run() after every kill and at the end; these
    # check that the torture tortured.
    assert sum(figures.kills.values()) == KILLS, figures.kills
    assert figures.kills["worker"] and figures.kills["supervisor"] and figures.kills["cli trigger"]
    assert figures.checks == KILLS + 1
    last = figures.last
    assert last["interrupted"] > 0, "no kill landed inside a step"
    assert last["outcomes"]["completed"] > 0 and last["outcomes"]["failed (as asked)"] > 0
    # Parallel steps were in the mix, both ways, and a failed one compensated.
    assert last["by_task"]["gather-saga completed"] and last["by_task"]["gather-saga failed"]
    assert last["compensations"] > 0


def test_parallel_siblings_of_a_failing_step_finish_before_the_run_settles(tmp_path):
    """The workload's `gather-saga` without kills: `check` fails (for good, or once and the
    run retries) while `charge` and `reserve` still run. The final check asserts that each
    completed sibling of a failed run was undone, after its effect, and none ran twice."""
    torture = Torture(tmp_path / "proj")
    try:
        torture.start_supervisor()
        torture.wait_for_workers()
        torture.trigger_payloads(
            [
                ("gather-saga", {"mode": mode, "t": t})
                for mode in ("fail", "flaky", "ok")
                for t in (0.05, 0.5)
            ]
        )
        torture.finish(120)
    finally:
        torture.close()
    last = torture.figures.last
    assert last["outcomes"] == {"completed": 4, "failed (as asked)": 2}, last["outcomes"]
    assert last["compensations"] == 4
    # At least one sibling completed after `check` had failed (t=0.5 against a step that
    # fails at once): the case the drain exists for, compensated.
    assert last["late_siblings_undone"] > 0
