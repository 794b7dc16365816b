"""sylphrun's fanout-1000 in a process of its own, so its peak memory is a whole process
tree like the peers' (the supervisor, which is this process, plus its 2 workers).
Runs bench/fanout1000.py's `measure` and prints one JSON line.

    python bench/peers/sylphrun_fanout.py [normal|full] [repeat]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fanout1000  # noqa: E402
import peerlib  # noqa: E402


def main() -> None:
    durability = sys.argv[1] if len(sys.argv) > 1 else "normal"
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    result = fanout1000.measure(durability, repeat)
    workers = sum(result["rss"].values()) / 2**20
    supervisor = (peerlib.vm_hwm(os.getpid()) or 0) / 2**20
    peerlib.emit(
        {
            "tool": "sylphrun",
            "durability": durability,
            "runs_per_s": [r["runs_per_s"] for r in result["runs"]],
            "peak_rss_mib": workers + supervisor,
            "workers_rss_mib": workers,
            "supervisor_rss_mib": supervisor,
            "fanout1000": {**result, "rss": {str(k): v for k, v in result["rss"].items()}},
        }
    )


if __name__ == "__main__":
    main()
