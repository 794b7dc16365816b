"""reload: how long from saving a task file to new workers serving the new code; and the
start-up costs under it.

Runs a real `sylphrun dev --no-tui` on a small temp project, saves an edit to the task file
N times (as an editor does: write a new file, rename it over the old one; the first
`--settle` s after it says "watching", then `--pause` s after each reload), and reads the
"new workers ready N ms after the save (...)" line the dev loop prints for each reload.
The figure includes the import check in a fresh interpreter and the spawn of the new
workers; the parentheses split it: `seen` (the watcher noticing the save), `check` (the
import check), `start` (starting the new workers, or waking the standby set started
ahead), `register` (their imports until each has registered in the journal). Retiring the
old workers comes after, off the figure (they drain while the new ones serve).
Target (issue 4): under 1 s for a small project.

Both ways of starting dev are measured: `python -m sylphrun` and the `sylphrun` console
script (a spawned worker re-runs the parent's main script, so what that imports counts).

The start-up table times fresh interpreters, best and median of `--starts` each: `import
sylphrun` (what a task module pays), `sylphrun --help`, the import check (`python -m
sylphrun.reload`), and `sylphrun dev` from exec to "watching" and to every worker
registered in the journal (ready to claim runs).

Bytecode: the dev VM sets `PYTHONDONTWRITEBYTECODE=1` and sylphrun is installed editable,
so every process compiles sylphrun's own sources (no `sylphrun/__pycache__`), which a
user's install does not. `--bytecode on` runs everything with a fresh, warmed
`PYTHONPYCACHEPREFIX` (the source tree is left alone), as a user's machine would.

    python bench/reload.py [--edits 8] [--workers 2] [--settle 1] [--pause 0.3] [--starts 10]
                           [--bytecode on]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import REPO, bench_tmpdir, footer, header, percentile, print_table, verdict

from sylphrun.journal import Connection, queries

TASK = """
from sylphrun import task

VERSION = {version}

@task(id="hello")
async def hello(payload, ctx):
    return await ctx.step.run("greet", lambda: VERSION)
"""

WARM_IMPORTS = (
    "import sylphrun.cli, sylphrun.devserver, sylphrun.eventlog, sylphrun.reload, "
    "sylphrun.runtime.worker, sylphrun.discover, watchfiles, rich.console"
)
PHASES = ("seen", "check", "start", "register")
CONSOLE_SCRIPT = str(Path(sys.executable).with_name("sylphrun"))


def make_project(workers: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="sylphrun-bench-reload-", dir=bench_tmpdir()))
    (root / "tasks").mkdir()
    (root / "sylphrun.toml").write_text(f'tasks = ["tasks"]\nworkers = {workers}\n')
    (root / "tasks" / "hello.py").write_text(TASK.format(version=0))
    return root


class Dev:
    """`sylphrun dev --no-tui` in its own session, its lines collected by a thread."""

    def __init__(self, root: Path, command: list[str], env: dict[str, str]) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [*command, "dev", "--no-tui"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env=env,
        )
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, ""):
            self.lines.append((time.perf_counter(), line))

    def count(self, fragment: str) -> int:
        return sum(fragment in line for _, line in self.lines)

    def wait_for(
        self, fragment: str, more_than: int = 0, timeout: float = 30.0
    ) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [(t, line) for t, line in self.lines if fragment in line]
            if len(hits) > more_than:
                return hits[-1]
            time.sleep(0.005)
        raise TimeoutError([line for _, line in self.lines[-5:]])

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(20)


def parse_reload(line: str) -> tuple[float, dict[str, float]]:
    took = int(line.split("ready ")[1].split(" ms")[0]) / 1000
    phases: dict[str, float] = {}
    if "(" in line.split("ready ")[1]:
        for part in line.rsplit("(", 1)[1].split(" ms)")[0].split(", "):
            name, ms = part.rsplit(" ", 1)
            phases[name] = int(ms) / 1000
    return took, phases


def measure_reload(
    edits: int, workers: int, command: list[str], env: dict[str, str], settle: float, pause: float
):
    root = make_project(workers)
    source = root / "tasks" / "hello.py"
    dev = Dev(root, command, env)
    try:
        dev.wait_for("watching")
        time.sleep(settle)  # a save during the start competes with the start itself
        took, phases = [], []
        for version in range(1, edits + 1):
            seen = dev.count("reloaded")
            tmp = source.with_suffix(".tmp")
            tmp.write_text(TASK.format(version=version))
            os.replace(tmp, source)
            _, line = dev.wait_for("reloaded", more_than=seen)
            t, p = parse_reload(line)
            took.append(t)
            phases.append(p)
            time.sleep(pause)  # let the retired workers finish exiting
        return took, phases
    finally:
        dev.stop()
        shutil.rmtree(root, ignore_errors=True)


def workers_registered(root: Path, workers: int, timeout: float = 30.0) -> float:
    """perf_counter when `workers` workers are registered in the project's journal."""
    conn = Connection(root / ".sylphrun" / "journal.db")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(queries.live_workers(conn, now=time.time(), stale_after=60)) >= workers:
                return time.perf_counter()
            time.sleep(0.002)
        raise TimeoutError("workers did not register")
    finally:
        conn.close()


def time_process(argv: list[str], env: dict[str, str], cwd: Path, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out


def measure_starts(n: int, workers: int, env: dict[str, str]) -> list[list[object]]:
    root = make_project(workers)
    py = sys.executable
    try:
        rows = []
        for label, argv in [
            ("python -c pass (floor)", [py, "-c", "pass"]),
            ("python -c 'import sylphrun'", [py, "-c", "import sylphrun"]),
            ("python -c 'from sylphrun import task'", [py, "-c", "from sylphrun import task"]),
            ("sylphrun --help", [CONSOLE_SCRIPT, "--help"]),
            ("import check (python -m sylphrun.reload)", [py, "-m", "sylphrun.reload", str(root)]),
        ]:
            times = time_process(argv, env, root, n)
            rows.append(
                [label, f"{min(times) * 1000:.0f}", f"{statistics.median(times) * 1000:.0f}"]
            )
        watching, ready = [], []
        for _ in range(max(1, n // 3)):
            dev = Dev(root, [CONSOLE_SCRIPT], env)
            try:
                t, _ = dev.wait_for("watching")
                watching.append(t - dev.started)
                ready.append(workers_registered(root, workers) - dev.started)
            finally:
                dev.stop()
        for label, times in [
            ("sylphrun dev, exec to 'watching'", watching),
            ("sylphrun dev, exec to every worker registered", ready),
        ]:
            rows.append(
                [
                    f"{label} ({len(times)}x)",
                    f"{min(times) * 1000:.0f}",
                    f"{statistics.median(times) * 1000:.0f}",
                ]
            )
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--settle", type=float, default=1.0, help="seconds between 'watching' and the first save"
    )
    parser.add_argument(
        "--pause", type=float, default=0.3, help="seconds from a reload to the next save"
    )
    parser.add_argument("--starts", type=int, default=10, help="samples per start-up row (0: skip)")
    parser.add_argument(
        "--bytecode",
        choices=("env", "on"),
        default="env",
        help="env: as inherited; on: a fresh PYTHONPYCACHEPREFIX, warmed",
    )
    args = parser.parse_args()
    env = {**os.environ, "NO_COLOR": "1"}
    if args.bytecode == "on":
        # A cache of our own: the source tree stays as it was (others may measure it).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(
            prefix="sylphrun-bench-pyc-", dir=bench_tmpdir()
        )
        subprocess.run([sys.executable, "-c", WARM_IMPORTS], env=env, check=True)
    try:
        run(args, env)
    finally:
        if args.bytecode == "on":
            shutil.rmtree(env["PYTHONPYCACHEPREFIX"], ignore_errors=True)


def run(args: argparse.Namespace, env: dict[str, str]) -> None:
    header("reload: save -> new workers ready")
    if args.bytecode == "on":
        cache = "on (a fresh PYTHONPYCACHEPREFIX, warmed)"
    elif env.get("PYTHONDONTWRITEBYTECODE") and not (REPO / "sylphrun" / "__pycache__").exists():
        cache = "off for sylphrun (PYTHONDONTWRITEBYTECODE: its modules compiled in each process)"
    else:
        cache = "as inherited"
    print(f"  bytecode cache     {cache}")
    print(
        f"  saves              the first {args.settle:g} s after 'watching', then "
        f"{args.pause:g} s after each reload\n"
    )
    rows, phase_rows = [], []
    for label, command in [
        ("python -m sylphrun", [sys.executable, "-m", "sylphrun"]),
        ("sylphrun", [CONSOLE_SCRIPT]),
    ]:
        took, phases = measure_reload(
            args.edits, args.workers, command, env, args.settle, args.pause
        )
        p50 = percentile(took, 50)
        rows.append(
            [
                label,
                args.workers,
                len(took),
                f"{p50 * 1000:.0f}",
                f"{percentile(took, 90) * 1000:.0f}",
                f"{max(took) * 1000:.0f}",
                verdict(p50 < 1.0),
            ]
        )
        if all(phases):
            phase_rows.append(
                [label, *(f"{statistics.median(p[k] for p in phases) * 1000:.0f}" for k in PHASES)]
            )
    print_table(
        "reload",
        ["dev started by", "workers", "edits", "p50 ms", "p90 ms", "max ms", "target < 1000 ms"],
        rows,
        left=1,
    )
    if phase_rows:
        print_table("reload phases, median ms", ["dev started by", *PHASES], phase_rows, left=1)
    if args.starts:
        print_table(
            "start-up of a fresh process, ms",
            ["what", "best", "median"],
            measure_starts(args.starts, args.workers, env),
            left=1,
        )
    footer()


if __name__ == "__main__":
    main()
