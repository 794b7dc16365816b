"""reload: how long from saving a task file to new workers serving the new code.

Runs a real `sylphrun dev --no-tui` on a small temp project, saves an edit to the task file
N times (as an editor does: write a new file, rename it over the old one), and reads the
"new workers ready N ms after the save" line the dev loop prints for each reload. The
figure includes the import check in a fresh interpreter and the spawn of the new workers.
Target (issue 4): under 1 s for a small project.

    python bench/reload.py [--edits 8]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import bench_tmpdir, footer, header, percentile, print_table, verdict

TASK = '''
from sylphrun import task

VERSION = {version}

@task(id="hello")
async def hello(payload, ctx):
    return await ctx.step.run("greet", lambda: VERSION)
'''


def measure(edits: int, workers: int) -> list[float]:
    root = Path(tempfile.mkdtemp(prefix="sylphrun-bench-reload-", dir=bench_tmpdir()))
    (root / "tasks").mkdir()
    (root / "sylphrun.toml").write_text(f'tasks = ["tasks"]\nworkers = {workers}\n')
    source = root / "tasks" / "hello.py"
    source.write_text(TASK.format(version=0))
    proc = subprocess.Popen([sys.executable, "-m", "sylphrun", "dev", "--no-tui"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "NO_COLOR": "1"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()

    def wait_for(pred, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.01)
        raise TimeoutError(lines[-5:])

    try:
        wait_for(lambda: any("watching" in line for line in lines))
        took = []
        for version in range(1, edits + 1):
            seen = sum("reloaded" in line for line in lines)
            tmp = source.with_suffix(".tmp")
            tmp.write_text(TASK.format(version=version))
            os.replace(tmp, source)
            wait_for(lambda seen=seen: sum("reloaded" in line for line in lines) > seen)
            line = [x for x in lines if "reloaded" in x][-1]
            took.append(int(line.split("ready ")[1].split(" ms")[0]) / 1000)
            time.sleep(0.3)  # let the retired workers finish exiting
        return took
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    header("reload: save -> new workers ready")
    took = measure(args.edits, args.workers)
    p50 = percentile(took, 50)
    print_table(
        "reload",
        ["workers", "edits", "p50 ms", "p90 ms", "max ms", "target < 1000 ms"],
        [[args.workers, len(took), f"{p50 * 1000:.0f}", f"{percentile(took, 90) * 1000:.0f}",
          f"{max(took) * 1000:.0f}", verdict(p50 < 1.0)]],
    )
    footer()


if __name__ == "__main__":
    main()
