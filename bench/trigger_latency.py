"""trigger-latency: `sylphrun trigger X` end to end (process start to exit, no `--wait`),
against `python -c "import typer"` on the same machine (issue 12, item 1).

The project's task module sleeps 1 s at import, like a module that loads a model or
connects to a service. Its journal has the tasks registered (by a reload's import check,
the same code path a worker's start takes), so the CLI should not import the project at
all. `--before REF` also measures the code of a git ref (exported with `git archive` to
a temp folder and put first on PYTHONPATH), which imports the project on every trigger.
Samples alternate between the commands, so a burst of load hits all of them alike.

Bytecode: the dev VM sets `PYTHONDONTWRITEBYTECODE=1` and sylphrun is installed editable,
so without care every process would compile sylphrun's sources (typer's come compiled from
its wheel). Every command runs with a fresh `PYTHONPYCACHEPREFIX`, warmed by one untimed
run, as on a user's machine; the source trees are left alone.

    python bench/trigger_latency.py [--samples 15] [--before main]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from common import REPO, bench_tmpdir, footer, header, ms, percentile, print_table, verdict

TARGET_RATIO = 2.0

TASKS = """
import time
from sylphrun import task

time.sleep(1.0)  # a slow import: a model, a client, a big dependency

@task(id="x")
async def x(payload, ctx):
    return await ctx.step.run("one", lambda: 1)
"""


def make_project(root: Path) -> Path:
    proj = root / "proj"
    (proj / "tasks").mkdir(parents=True)
    (proj / "sylphrun.toml").write_text('tasks = ["tasks"]\nworkers = 1\n')
    (proj / "tasks" / "slow.py").write_text(TASKS)
    from sylphrun.reload import run_check, start_check

    result = run_check(start_check(proj))  # imports once, and registers the tasks
    if not result.ok:
        sys.exit(f"the import check failed: {result.error}")
    return proj


def export_ref(ref: str, root: Path) -> Path:
    """The `sylphrun` package as of `ref`, in a folder of its own (no worktree touched)."""
    dest = root / f"src-{ref.replace('/', '_')}"
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "sylphrun"], capture_output=True, check=True
    ).stdout
    tar_path = root / "src.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
    return dest


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return took


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--before", metavar="REF", help="also measure this git ref's code")
    args = parser.parse_args(argv)
    header("trigger-latency: `sylphrun trigger X`, end to end")
    root = Path(tempfile.mkdtemp(prefix="sylphrun-trigger-", dir=bench_tmpdir()))
    try:
        proj = make_project(root)
        env = {**os.environ, "NO_COLOR": "1", "PYTHONPYCACHEPREFIX": str(root / "pyc")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        script = Path(sys.executable).with_name("sylphrun")
        cli = [str(script)] if script.exists() else [sys.executable, "-m", "sylphrun"]
        commands = {
            'python -c "import typer"': ([sys.executable, "-c", "import typer"], env),
            "sylphrun trigger x (this tree)": ([*cli, "trigger", "x"], env),
        }
        where = {name: proj for name in commands}
        if args.before:
            # Its own copy of the project: an older sylphrun refuses a newer journal.
            old_proj = root / "proj-before"
            shutil.copytree(proj, old_proj, ignore=shutil.ignore_patterns(".sylphrun"))
            name = f"sylphrun trigger x ({args.before})"
            commands[name] = (
                [sys.executable, "-m", "sylphrun", "trigger", "x"],
                {**env, "PYTHONPATH": str(export_ref(args.before, root))},
            )
            where[name] = old_proj
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for name, (cmd, cmd_env) in commands.items():  # warm the bytecode caches
            timed(cmd, where[name], cmd_env)
        for _ in range(args.samples):
            for name, (cmd, cmd_env) in commands.items():
                samples[name].append(timed(cmd, where[name], cmd_env))
        base = percentile(samples['python -c "import typer"'], 50)
        rows = []
        for name, values in samples.items():
            p50 = percentile(values, 50)
            rows.append(
                [
                    name,
                    ms(p50, 0),
                    ms(percentile(values, 90), 0),
                    ms(min(values), 0),
                    f"{p50 / base:.2f}x",
                ]
            )
        print_table(
            f"process start to exit, ms ({args.samples} samples each, interleaved)",
            ["command", "p50", "p90", "min", "p50 / import typer"],
            rows,
            left=1,
        )
        ours = percentile(samples["sylphrun trigger x (this tree)"], 50) / base
        print(
            f"target: sylphrun trigger x within {TARGET_RATIO:g}x of import typer: "
            f"{ours:.2f}x, {verdict(ours <= TARGET_RATIO)}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    footer()


if __name__ == "__main__":
    main()
