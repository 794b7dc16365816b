"""A journal path that names another program's SQLite database (issue 11 item 8)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys


def test_a_journal_path_naming_another_programs_database_is_refused_untouched(tmp_path):
    """Issue 11 item 8: an existing SQLite file that is not a journal (a typo in `journal`)
    was taken over: 8 tables added, WAL on, mode 0600. Now: exit 2, the file as it was."""
    root = tmp_path / "proj"
    (root / "tasks").mkdir(parents=True)
    (root / "tasks" / "main.py").write_text(
        "from sylphrun import task\n\n@task(id='hello')\nasync def hello(payload, ctx):\n"
        "    return 1\n"
    )
    (root / "sylphrun.toml").write_text('tasks = ["tasks"]\njournal = "app.db"\n')
    other = root / "app.db"
    db = sqlite3.connect(str(other))
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    db.execute("INSERT INTO notes (body) VALUES ('keep me')")
    db.commit()
    db.close()
    os.chmod(other, 0o644)
    before = (other.read_bytes(), os.stat(other).st_mode)
    for argv in (
        ["trigger", "hello"],
        ["runs"],
        ["show", "run_x"],
        ["worker"],
        ["dev", "--no-tui"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "sylphrun", *argv],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (argv, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "not a sylphrun journal" in lines[0] and "tables: notes" in lines[0], lines[0]
        assert (other.read_bytes(), os.stat(other).st_mode) == before
        # No WAL, no shared memory, no lock file of ours beside it (`dev` keeps its own
        # single-session lock file, which says nothing about the database).
        assert not [
            p
            for p in os.listdir(root)
            if p.startswith("app.db") and p != "app.db" and not p.endswith(".dev.lock")
        ]
