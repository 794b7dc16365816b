"""Shared setup for the benchmarks: machine facts, temp projects, engine start/stop, stats.

Every measurement gets a fresh project folder (its own `sylphrun.toml` and journal) under
$BENCH_TMPDIR (default: the system temp folder), so the disk the journal lives on is the
one the temp folder is on: `machine_facts()` names it.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import platform
import shutil
import sqlite3
import tempfile
import textwrap
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil

# One percentile rule for sylphrun's figures and the peers' (peerlib imports no sylphrun,
# so the peer processes can use it too).
from peers.peerlib import percentile  # noqa: F401 - re-exported to the bench scripts

from sylphrun.config import Config, load_config
from sylphrun.journal import Connection
from sylphrun.model import RunResult
from sylphrun.runtime.supervisor import Supervisor
from sylphrun.trigger import trigger as _trigger
from sylphrun.trigger import wait_for_result

DURABILITIES = ("normal", "full")
REPO = Path(__file__).resolve().parent.parent

# -- machine facts --------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _filesystem_of(path: Path) -> str:
    """The mount (device and type) holding `path`: it decides what an fsync costs."""
    best = None
    for part in psutil.disk_partitions(all=True):
        if str(path).startswith(part.mountpoint) and (
            best is None or len(part.mountpoint) > len(best.mountpoint)
        ):
            best = part
    return f"{best.device} ({best.fstype}) at {best.mountpoint}" if best else "unknown"


def bench_tmpdir() -> Path:
    return Path(os.environ.get("BENCH_TMPDIR") or tempfile.gettempdir()).resolve()


def machine_facts() -> dict[str, str]:
    mem = psutil.virtual_memory()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {psutil.cpu_count(logical=False)} physical",
        "memory": f"{mem.total / 2**30:.1f} GiB",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "journal disk": _filesystem_of(bench_tmpdir()),
        "load avg at start": " ".join(f"{x:.2f}" for x in load),
    }


def print_facts(facts: dict[str, str] | None = None) -> None:
    facts = facts or machine_facts()
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        print(f"  {key:<{width}}  {value}")
    print()


# -- stats and tables ------------------------------------------------------------------


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}"


def ms(seconds: float, digits: int = 2) -> str:
    return f"{seconds * 1e3:,.{digits}f}"


def print_table(
    title: str, header: Sequence[str], rows: Iterable[Sequence[object]], left: int = 2
) -> None:
    """A plain-text table; the first `left` columns are labels (left-aligned), the rest
    numbers (right-aligned)."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    print(f"## {title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        print("  ".join(cells))
    print()


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# -- projects and the engine ------------------------------------------------------------


class BenchProject:
    """A throw-away project folder: `sylphrun.toml`, one task package, its journal."""

    def __init__(
        self,
        name: str,
        durability: str,
        tasks_source: str,
        *,
        workers: int = 2,
        extra_config: str = "",
    ) -> None:
        self.root = Path(
            tempfile.mkdtemp(prefix=f"sylphrun-bench-{name}-{durability}-", dir=bench_tmpdir())
        )
        # A package name of its own per project: workers import it fresh in every process.
        self.package = f"bench_tasks_{name.replace('-', '_')}_{durability}"
        (self.root / "sylphrun.toml").write_text(
            f'tasks = ["{self.package}"]\nworkers = {workers}\n'
            f'durability = "{durability}"\n{extra_config}'
        )
        pkg = self.root / self.package
        pkg.mkdir()
        (pkg / "__init__.py").write_text(textwrap.dedent(tasks_source))
        self.durability = durability
        self.config: Config = load_config(self.root)

    def connection(self) -> Connection:
        return Connection(self.config.journal, durability=self.durability)

    def cleanup(self) -> None:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)


class BenchEngine:
    """A real Supervisor with spawned workers, supervised from a background thread (the
    same shape as the `Engine` of tests/conftest.py). Triggers go through the public
    outside-a-run path (`sylphrun.trigger.trigger`), which finds the journal through
    $SYLPHRUN_JOURNAL, as a script of the user's would."""

    def __init__(self, project: BenchProject, *, workers: int = 2) -> None:
        self.project = project
        self.supervisor = Supervisor(project.config, workers=workers)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.conn: Connection | None = None
        self._old_journal_env = os.environ.get("SYLPHRUN_JOURNAL")

    def __enter__(self) -> BenchEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> BenchEngine:
        os.environ["SYLPHRUN_JOURNAL"] = str(self.project.config.journal)
        self.supervisor.start()
        if not self.supervisor.wait_ready(60):
            self.supervisor.stop(graceful=False)
            raise RuntimeError("workers did not register within 60 s")
        self._thread = threading.Thread(
            target=self.supervisor.serve, args=(self._stop,), daemon=True
        )
        self._thread.start()
        self.conn = self.project.connection()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.supervisor.stop(graceful=False)
        if self.conn is not None:
            self.conn.close()
        if self._old_journal_env is None:
            os.environ.pop("SYLPHRUN_JOURNAL", None)
        else:
            os.environ["SYLPHRUN_JOURNAL"] = self._old_journal_env

    def worker_pids(self) -> list[int]:
        return [p.process.pid for p in self.supervisor.procs if p.process.pid]

    def trigger(self, task_id: str, payload: dict | None = None) -> str:
        return asyncio.run(_trigger(task_id, payload or {})).run_id

    def wait(self, run_id: str, timeout: float = 60) -> RunResult:
        assert self.conn is not None
        return asyncio.run(wait_for_result(self.conn, run_id, timeout=timeout))

    def run(self, task_id: str, payload: dict | None = None, timeout: float = 60) -> RunResult:
        result = self.wait(self.trigger(task_id, payload), timeout)
        if not result.ok:
            raise RuntimeError(f"bench run {task_id} {result.status}: {result.error}")
        return result


def peak_rss(pids: Iterable[int]) -> dict[int, int]:
    """Peak resident set size (bytes) of each process so far: VmHWM on Linux, else the
    current RSS (a lower bound)."""
    out: dict[int, int] = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    out[pid] = int(line.split()[1]) * 1024
                    break
        except OSError:
            try:
                out[pid] = psutil.Process(pid).memory_info().rss
            except psutil.Error:
                pass
    return out


def parse_durabilities(argv: Sequence[str] | None = None) -> list[str]:
    """`--durability normal,full` (default both) from the command line."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--durability", default=",".join(DURABILITIES))
    args = parser.parse_args(argv)
    chosen = [d.strip() for d in args.durability.split(",") if d.strip()]
    for d in chosen:
        if d not in DURABILITIES:
            parser.error(f"durability must be normal or full, not {d!r}")
    return chosen


def header(title: str) -> None:
    print(f"# sylphrun bench: {title}")
    print_facts()


def footer() -> None:
    """The load at the end: others' work on a shared machine shows up in the tails."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    print(f"load avg at end: {' '.join(f'{x:.2f}' for x in load)}")


# A pause before each timed block of steps-100. Tearing an engine down (workers closing the
# journal, the last one checkpointing the WAL and fsyncing, the temp files removed) keeps
# the disk busy for a moment: a block started in that wake ran up to twice as slow
# (fresh-project rounds back to back: 46-111 us per step; with a 1.5 s pause: 45-47 us,
# raw commits alike). Every tool gets the same pause.
SETTLE_S = 1.0
