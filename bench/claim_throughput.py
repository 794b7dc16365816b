"""claims-1000: claim throughput with 1,000 queued runs over 100 keys, at a per-key
concurrency limit of 1 vs no limits (issue 15: within 2x).

In process, through the journal interface: two workers take turns claiming up to 32 runs
(a worker's default slots); each keeps its batch "running" until its next turn, then
finishes it, so the claim always meets runs of keys that are full. Timed: the
`claim_runs` calls only. Two queue layouts: keys interleaved (k0 k1 ... k99 k0 ...) and
grouped (ten runs of k0, then ten of k1 ...: a batch meets many runs of one full key, the
case the query's key filter and the claim's extra rounds are for).

    python bench/claim_throughput.py [--runs 1000] [--keys 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import bench_tmpdir, print_facts, print_table

from sylphrun.journal import RunSpec, open_journal
from sylphrun.journal.types import TaskTerms

SLOTS = 32
LEASE = 60.0


def drain(runs: int, keys: int, *, limited: bool, grouped: bool) -> tuple[float, int]:
    """(seconds spent in claim_runs, claim calls) to claim every run once."""
    folder = Path(tempfile.mkdtemp(prefix="sylphrun-bench-claims-", dir=bench_tmpdir()))
    journal = open_journal(folder / "journal.db")
    try:
        per_key = runs // keys
        key_of = (lambda i: f"k{i // per_key}") if grouped else (lambda i: f"k{i % keys}")
        journal.enqueue_runs(
            [RunSpec("t", "{}", concurrency_key=key_of(i)) for i in range(runs)], now=1.0
        )
        known = {"t": TaskTerms(key_concurrency=1 if limited else None)}
        held: dict[str, list] = {"w1": [], "w2": []}
        spent, calls, claimed, now = 0.0, 0, 0, 10.0
        while claimed < runs:
            for worker in held:
                for c in held[worker]:
                    journal.finish_run(
                        c.run_id,
                        c.epoch,
                        status="completed",
                        output="null",
                        error=None,
                        traceback=None,
                        now=now,
                    )
                t0 = time.perf_counter()
                held[worker], _ = journal.claim_runs(
                    worker, SLOTS, lease_seconds=LEASE, known_tasks=known, now=now
                )
                spent += time.perf_counter() - t0
                calls += 1
                claimed += len(held[worker])
                now += 0.001
            if calls > 100 * runs:
                raise RuntimeError("claims stopped making progress")
        return spent, calls
    finally:
        journal.close()
        if not os.environ.get("BENCH_KEEP"):
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()


def measure(runs: int = 1000, keys: int = 100, repeat: int = 3) -> dict:
    """Runs claimed per second of claim time, median of `repeat`, per case."""
    out: dict = {}
    for grouped in (False, True):
        layout = "grouped" if grouped else "interleaved"
        for limited in (False, True):
            rates, calls = [], 0
            for _ in range(repeat):
                spent, calls = drain(runs, keys, limited=limited, grouped=grouped)
                rates.append(runs / spent)
            out[f"{layout}/{'limit 1' if limited else 'no limit'}"] = {
                "runs_per_s": statistics.median(rates),
                "claim_calls": calls,
            }
        base = out[f"{layout}/no limit"]["runs_per_s"]
        out[f"{layout}/limit 1"]["slowdown"] = base / out[f"{layout}/limit 1"]["runs_per_s"]
    return out


def print_results(res: dict, runs: int = 1000, keys: int = 100) -> None:
    rows = []
    for case, r in res.items():
        slow = r.get("slowdown")
        rows.append(
            [
                case,
                f"{r['runs_per_s']:,.0f}",
                r["claim_calls"],
                "" if slow is None else f"{slow:.2f}x",
                "" if slow is None else ("met" if slow <= 2 else "MISSED"),
            ]
        )
    print_table(
        f"claims: {runs:,} queued runs over {keys} keys, 2 workers x {SLOTS} slots",
        [
            "queue / per-key limit",
            "runs claimed/s",
            "claim calls",
            "slower than no limit",
            "within 2x",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_facts()
    print_results(measure(args.runs, args.keys, args.repeat), args.runs, args.keys)
    print(f"load avg: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
