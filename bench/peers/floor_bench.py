"""The floor without durability: `multiprocessing.Pool` with 2 worker processes. One
scenario per process, one JSON line on stdout.

    python bench/peers/floor_bench.py fanout|latency

fanout: `pool.map(trivial, range(1000), chunksize=1)` (one task per message, as one run
per child; the default chunking would batch 1,000 calls into a handful of messages).
latency: `pool.apply_async(stamp).get()` on an idle pool. Nothing is written anywhere:
a crash loses everything in flight. (The other floor, raw SQLite commits, is measured by
bench/steps100.py's `raw_commits` inside bench/compare.py.)
"""

from __future__ import annotations

import multiprocessing
import os
import time

import peerlib

SCENARIOS = ("fanout", "latency")


def trivial(i: int) -> int:
    return i


def stamp() -> float:
    return time.time()


def fanout(n: int = 1000, repeat: int = 3) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.map(trivial, range(50), chunksize=1)  # warm-up
        rates = []
        for _ in range(repeat):
            t0 = time.time()
            out = pool.map(trivial, range(n), chunksize=1)
            rates.append(n / (time.time() - t0))
            assert sum(out) == n * (n - 1) // 2
        rss = peerlib.peak_rss_mib(peerlib.tree_pids(os.getpid()))
    return {
        "durability": "none",
        "runs_per_s": rates,
        "peak_rss_mib": rss,
        "what": "Pool(2).map(chunksize=1), spawn",
    }


def latency(samples: int = 100, pause: float = 0.02) -> dict:
    ctx = multiprocessing.get_context("spawn")
    body, seen = [], []
    with ctx.Pool(2) as pool:
        for i in range(10 + samples):
            t0 = time.time()
            b = pool.apply_async(stamp).get()
            s = time.time()
            if i >= 10:
                body.append((b - t0) * 1e3)
                seen.append((s - t0) * 1e3)
            time.sleep(pause)
    return {"durability": "none", "body_ms": body, "seen_ms": seen}


def main() -> None:
    scenario = peerlib.scenario_arg(SCENARIOS)
    started = time.time()
    figures = fanout() if scenario == "fanout" else latency()
    figures.update(tool="multiprocessing.Pool", version="stdlib", seconds=time.time() - started)
    peerlib.emit(figures)


if __name__ == "__main__":
    main()
