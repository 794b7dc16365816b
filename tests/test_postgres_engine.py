"""The engine in real processes on a PostgreSQL journal, beside SQLite: the commands'
`--journal` option (a path or a postgresql:// URL over the config's setting), and the
engine's process-level behaviours on both backends."""

from __future__ import annotations

import json

import pytest

_HELLO = '''
from sylphrun import task
from ledger_helper import record

@task(id="hello")
async def hello(payload, ctx):
    async def greet():
        return "hi " + payload.get("name", "x")
    got = await ctx.step.run("greet", greet)
    record(LEDGER, got)
    return got
'''


# -- `--journal`: one option on every command that opens the journal --------------------


@pytest.mark.slow
def test_journal_option_points_worker_trigger_and_runs_at_a_postgres_url(
        project, background, postgres_url):
    project.write_tasks(_HELLO)  # the config names no journal: SQLite's default
    worker = background("worker", "--workers", "1", "--journal", postgres_url)
    done = project.cli("trigger", "hello", "--payload", '{"name": "pg"}', "--timeout", "60",
                       "--journal", postgres_url)
    assert done.returncode == 0, (done.stdout, done.stderr, worker.output)
    assert project.ledger_lines() == ["hi pg"]
    listed = project.cli("runs", "--json", "--journal", postgres_url)
    assert listed.returncode == 0, listed.stderr
    [run] = json.loads(listed.stdout)
    assert run["status"] == "completed"
    shown = project.cli("show", run["run_id"], "--journal", postgres_url)
    assert shown.returncode == 0 and "greet" in shown.stdout, shown.stderr
    assert not (project.root / ".sylphrun" / "journal.db").exists()  # the config's, untouched


@pytest.mark.slow
def test_journal_option_takes_a_sqlite_path_from_the_current_folder(project):
    project.write_tasks(_HELLO)
    started = project.cli("trigger", "hello", "--journal", "elsewhere.db")
    assert started.returncode == 0, started.stderr
    assert (project.root / "elsewhere.db").exists()
    there = project.cli("runs", "--json", "--journal", "elsewhere.db")
    assert [r["run_id"] for r in json.loads(there.stdout)] == [started.stdout.strip()]
    default = project.cli("runs", "--json")
    assert json.loads(default.stdout) == []  # the config's journal never saw it


@pytest.mark.slow
@pytest.mark.parametrize("url", ["mysql://root@db/x", "postgresql://someone@127.0.0.1:1/db"])
def test_a_bad_journal_option_is_one_line_exit_2(project, url):
    project.write_tasks(_HELLO)
    for args in (["runs"], ["trigger", "hello"], ["worker"]):
        out = project.cli(*args, "--journal", url)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    assert not (project.root / ".sylphrun" / "journal.db").exists()
