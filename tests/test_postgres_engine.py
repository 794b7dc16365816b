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


# -- workers wake on the journal's NOTIFY (no poke from another host reaches them) -------


def _wakeups_on(url_or_path):
    """A `JournalWakeups` listening on an event loop of this thread, and the loop."""
    import asyncio

    from sylphrun.journal import open_journal
    from sylphrun.runtime.wake import JournalWakeups

    loop = asyncio.new_event_loop()
    woken = asyncio.Event()
    journal = open_journal(url_or_path)
    wakeups = JournalWakeups(journal, loop, woken.set)
    wakeups.listen()
    return loop, woken, journal, wakeups


def _woken_within(loop, woken, seconds: float = 30) -> bool:
    import asyncio

    async def wait() -> bool:
        try:
            await asyncio.wait_for(woken.wait(), seconds)
        except TimeoutError:
            return False
        woken.clear()
        return True

    return loop.run_until_complete(wait())


def test_a_worker_loop_wakes_on_a_run_enqueued_elsewhere(postgres_url):
    from sylphrun.journal import RunSpec, open_journal

    loop, woken, journal, wakeups = _wakeups_on(postgres_url)
    other = open_journal(postgres_url)  # another host's trigger: no poke, only the NOTIFY
    try:
        assert wakeups.listening
        other.enqueue_runs([RunSpec("t", "{}")], now=1)
        assert _woken_within(loop, woken)
    finally:
        wakeups.close()
        loop.close()
        journal.close()
        other.close()


def test_a_lost_listener_falls_back_to_polling_and_listens_again(postgres_cluster,
                                                                 postgres_url):
    from sylphrun.journal import RunSpec, open_journal

    loop, woken, journal, wakeups = _wakeups_on(postgres_url)
    try:
        postgres_cluster.restart()  # the listener's connection is dropped
        assert _woken_within(loop, woken)  # told: claim now, the polls cover the gap
        assert not wakeups.listening
        wakeups.listen_again_if_due()
        assert not wakeups.listening  # not yet: a server coming back is given time
        wakeups.again_at = 0
        wakeups.listen_again_if_due()
        assert wakeups.listening
        other = open_journal(postgres_url)
        other.enqueue_runs([RunSpec("t", "{}")], now=1)
        other.close()
        assert _woken_within(loop, woken)
    finally:
        wakeups.close()
        loop.close()
        journal.close()


def test_a_sqlite_journal_has_no_listener_and_polls(tmp_path):
    loop, _, journal, wakeups = _wakeups_on(tmp_path / "journal.db")
    try:
        assert not wakeups.listening
    finally:
        wakeups.close()
        loop.close()
        journal.close()
