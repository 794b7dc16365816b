"""Run every benchmark scenario with durability "normal" and "full" and print the tables.

    python bench/run_all.py [--durability normal,full]
                            [--only steps,fanout,latency,writers,recovery] [--experiments]

About a minute on a 2-core machine. The step-path experiments (bench/experiments.py) are
not part of the default set; `--experiments` adds them.
"""

from __future__ import annotations

import argparse
import time

import experiments
import fanout1000
import latency1
import recovery
import steps100
import writers
from common import DURABILITIES, footer, header

SCENARIOS = ("steps", "fanout", "latency", "writers", "recovery")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--durability", default=",".join(DURABILITIES))
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--experiments", action="store_true")
    args = parser.parse_args()
    durabilities = [d.strip() for d in args.durability.split(",") if d.strip()]
    only = {s.strip() for s in args.only.split(",")}
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    header("all scenarios")
    started = time.monotonic()
    if "steps" in only:
        steps100.report([steps100.measure(d) for d in durabilities])
    if "fanout" in only:
        fanout1000.report([fanout1000.measure(d) for d in durabilities])
    if "latency" in only:
        latency1.report([latency1.measure(d) for d in durabilities])
    if "writers" in only:
        results = []
        for d in durabilities:
            results += writers.measure(d)
        writers.report(results)
    if "recovery" in only:
        recovery.report([recovery.measure(d) for d in durabilities])
    if args.experiments:
        experiments.main(["--durability", ",".join(durabilities)])
    print(f"(all scenarios took {time.monotonic() - started:.0f} s)")
    footer()


if __name__ == "__main__":
    main()
