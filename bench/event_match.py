"""event-match: the cost of a send while many runs wait on the same event name, each for
its own key (`match={"n": i}`), straight on the journal (no workers): the sender has to
find the one wait its data matches among WAITS open ones (one send per wait, in turn).

    python bench/event_match.py [--waits 10 100 1000]

Then each woken run takes its event (`take_event`) among the WAITS events of the name.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import percentile, print_facts  # noqa: E402

from sylphrun.journal import RunSpec, open_journal  # noqa: E402
from sylphrun.journal.types import TaskTerms  # noqa: E402


def measure(waits: int, folder: Path) -> dict[str, float]:
    journal = open_journal(folder / "journal.db")
    try:
        ids = journal.enqueue_runs(
            [RunSpec("t", json.dumps({"n": i}), None) for i in range(waits)], 1.0
        )
        claims, _ = journal.claim_runs(
            "w", waits, lease_seconds=3600, known_tasks={"t": TaskTerms()}, now=2.0
        )
        assert len(claims) == waits == len(ids)
        # Each run waits for its own n (the payload order is the enqueue order).
        by_run = {rid: i for i, (rid, _) in enumerate(ids)}
        for c in claims:
            journal.take_event(
                c.run_id,
                c.epoch,
                key="go",
                name="go",
                seq=1,
                run_attempt=c.attempt,
                event="go",
                match={"n": by_run[c.run_id]},
                timeout_at=None,
                now=3.0,
            )
            journal.suspend_run(c.run_id, c.epoch, children=[], wake_at=None, now=3.0)
        times = []
        for n in range(waits):
            t0 = time.perf_counter()
            sent = journal.send_event(event_id=None, name="go", data=json.dumps({"n": n}), now=4.0)
            times.append(time.perf_counter() - t0)
            assert len(sent.matched_runs) == 1, sent
        # The woken runs take their event: each looks among the events of the name sent
        # since it was triggered (all of them here) for its own.
        claims, _ = journal.claim_runs(
            "w2", waits, lease_seconds=3600, known_tasks={"t": TaskTerms()}, now=5.0
        )
        takes = []
        for c in claims:
            t0 = time.perf_counter()
            taken = journal.take_event(
                c.run_id,
                c.epoch,
                key="go",
                name="go",
                seq=1,
                run_attempt=c.attempt,
                event="go",
                match={"n": by_run[c.run_id]},
                timeout_at=None,
                now=6.0,
            )
            takes.append(time.perf_counter() - t0)
            assert taken.outcome == "received", taken
        return {
            "p50": percentile(times, 50),
            "p90": percentile(times, 90),
            "mean": statistics.fmean(times),
            "take_p50": percentile(takes, 50),
            "take_p90": percentile(takes, 90),
        }
    finally:
        journal.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waits", type=int, nargs="*", default=[10, 100, 1000])
    args = parser.parse_args()
    print_facts()
    print(
        f"{'open waits':>10}  {'send p50':>10}  {'send p90':>10}  {'take p50':>10}  "
        f"{'take p90':>10}  (events of the name: as many as waits)"
    )
    for waits in args.waits:
        with tempfile.TemporaryDirectory() as tmp:
            r = measure(waits, Path(tmp))
        print(
            f"{waits:>10}  {r['p50'] * 1e3:>8.2f}ms  {r['p90'] * 1e3:>8.2f}ms  "
            f"{r['take_p50'] * 1e3:>8.2f}ms  {r['take_p90'] * 1e3:>8.2f}ms"
        )


if __name__ == "__main__":
    main()
