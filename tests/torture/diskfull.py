"""Disk full, for real: the journal on a 2 MB tmpfs, filled to the last byte while a
supervisor and its worker serve and the CLI triggers runs; then space is freed.

Run inside a private mount namespace (`unshare -Urm python diskfull.py ROOT`), by
`test_io_faults.py` and `bench/torture.py`; prints one JSON document. Checks nothing
itself: it reports exit codes, stderr lines, worker restarts and the final journal.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import REPO, make_project  # noqa: E402


def cli(root: Path, env: dict, *args: str, stdin: bytes | None = None) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "sylphrun", *args],
        cwd=root,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=60,
    )
    return proc.returncode, proc.stderr.decode("utf-8", "replace").strip()


def fill(path: Path) -> int:
    """Write zeros until the disk is full; the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    written += os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return written


def count(journal: Path, sql: str) -> int:
    db = sqlite3.connect(str(journal), timeout=30)
    try:
        return db.execute(sql).fetchone()[0]
    finally:
        db.close()


def main() -> None:
    root = Path(sys.argv[1])
    fs = root / "fs"
    fs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(fs)], check=True)
    make_project(root)
    (root / "sylphrun.toml").write_text(
        'tasks = ["tasks"]\nworkers = 1\njournal = "fs/journal.db"\n'
    )
    journal = fs / "journal.db"
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "PYTHONPATH": os.pathsep.join([str(root), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    report: dict = {"triggers": []}
    code, err = cli(root, env, "trigger", "chain", "--payload", '{"n": 2}')
    assert code == 0, err
    sup_log = open(root / "supervisor.log", "wb")  # noqa: SIM115
    sup = subprocess.Popen(
        [sys.executable, str(HERE / "supervise.py"), str(root), "1.5", "0.3", "1"],
        cwd=root,
        env=env,
        stderr=sup_log,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while count(journal, "SELECT COUNT(*) FROM runs WHERE status = 'completed'") < 1:
            assert time.monotonic() < deadline, "the first run did not complete"
            time.sleep(0.05)
        workers_before = count(journal, "SELECT COUNT(*) FROM workers")
        # Runs in flight when the disk fills up: their steps' writes meet it.
        for _ in range(3):
            code, err = cli(root, env, "trigger", "chain", "--payload", '{"n": 8, "t": 0.2}')
            assert code == 0, err
        while count(journal, "SELECT COUNT(*) FROM steps WHERE status = 'completed'") < 4:
            time.sleep(0.02)
        report["filler_bytes"] = fill(fs / "filler")
        pad = json.dumps({"n": 3, "t": 0.0, "pad": "x" * 40_000}).encode()
        for _ in range(4):
            code, err = cli(root, env, "trigger", "chain", "--payload", "-", stdin=pad)
            report["triggers"].append([code, err])
        time.sleep(2.0)  # the worker meets the full disk meanwhile
        report["supervisor_alive_while_full"] = sup.poll() is None
        os.unlink(fs / "filler")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and count(
            journal, "SELECT COUNT(*) FROM runs WHERE status NOT IN ('completed', 'failed')"
        ):
            time.sleep(0.1)
        code, err = cli(
            root, env, "trigger", "chain", "--payload", '{"n": 2}', "--wait", "--timeout", "20"
        )
        report["after_freeing"] = [code, err]
        report["workers_registered"] = (
            count(journal, "SELECT COUNT(*) FROM workers") - workers_before
        )
        report["runs"] = {
            status: n
            for status, n in sqlite3.connect(str(journal)).execute(
                "SELECT status, COUNT(*) FROM runs GROUP BY 1"
            )
        }
        report["errors"] = [
            r[0]
            for r in sqlite3.connect(str(journal)).execute(
                "SELECT error FROM runs WHERE status = 'failed'"
            )
        ]
        report["integrity"] = (
            sqlite3.connect(str(journal)).execute("PRAGMA integrity_check").fetchone()[0]
        )
        report["supervisor_alive"] = sup.poll() is None
    finally:
        sup.terminate()
        sup.wait(15)
        sup_log.close()
    log = (root / "supervisor.log").read_text(errors="replace").splitlines()
    report["log_lines"] = len(log)
    report["restarts"] = sum(1 for line in log if "restarting it" in line)
    report["journal_error_lines"] = sum(1 for line in log if "journal error" in line)
    report["tracebacks"] = sum(1 for line in log if line.startswith("Traceback"))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
