"""Helpers shared by the peer scripts (bench/peers/*_bench.py).

The peer scripts run in the bench venv (bench/.venv-peers, made by bench/setup_peers.sh),
each in its own process, and print ONE JSON line on stdout: the figures of one scenario.
Nothing here imports sylphrun: a peer's process holds only the peer.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); bench/common.py uses this one too."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def scratch(name: str) -> Path:
    """A fresh folder for one measurement, on the disk $BENCH_TMPDIR names (as the
    sylphrun journals are)."""
    base = os.environ.get("BENCH_TMPDIR") or tempfile.gettempdir()
    return Path(tempfile.mkdtemp(prefix=f"sylphrun-peer-{name}-", dir=base))


def cleanup(folder: Path) -> None:
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(folder, ignore_errors=True)


def vm_hwm(pid: int) -> int | None:
    """Peak resident set size (bytes) of a live process (Linux VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def tree_pids(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc (no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def peak_rss_mib(pids: Iterable[int]) -> float:
    """Sum of the peak RSS of the given live processes, MiB."""
    return sum(v for v in (vm_hwm(p) for p in pids) if v) / 2**20


def wait_for(predicate, timeout: float, interval: float = 0.001) -> float:
    """Poll `predicate` until true; returns time.time() when it was seen true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.time()
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def ledger_lines(path: Path) -> list[str]:
    try:
        return [x for x in path.read_text().splitlines() if x]
    except FileNotFoundError:
        return []


def record(path: Path | str, line: str) -> None:
    """Append a line to a side-effect ledger, fsynced: a SIGKILL right after keeps it."""
    fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def emit(figures: dict) -> None:
    """The one JSON line the harness reads (the last line of stdout)."""
    sys.stdout.flush()
    print(json.dumps(figures), flush=True)


def scenario_arg(choices: Sequence[str]) -> str:
    if len(sys.argv) < 2 or sys.argv[1] not in choices:
        sys.exit(f"usage: {Path(sys.argv[0]).name} {{{','.join(choices)}}}")
    return sys.argv[1]


def json_line(stdout: str) -> dict:
    """The last line of a peer's stdout that parses as a JSON object."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise ValueError(f"no JSON line in output: {stdout[-500:]!r}")


def end_children(grace: float = 5.0) -> None:
    """SIGTERM this process's descendants (servers a peer started for us), then SIGKILL
    whatever is left after `grace` seconds."""
    import signal

    kids = [p for p in tree_pids(os.getpid()) if p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in kids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in kids):
            for pid in kids:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            time.sleep(0.05)
