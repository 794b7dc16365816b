"""Every schema version migrates forward to the current one, keeping its runs and steps,
and the journal then works through the store (claim, finish) as a fresh one does."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import T0, claim

from sylphrun import model
from sylphrun.journal import Connection, queries, store
from sylphrun.journal.schema import MIGRATIONS, SCHEMA_VERSION


def journal_at(path, version: int) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    scripts = "\n".join(MIGRATIONS[:version])
    raw.executescript(f"BEGIN;\n{scripts}\nPRAGMA user_version = {version};\nCOMMIT;")
    raw.execute(
        "INSERT INTO runs (id, task_id, status, payload, created_at, updated_at,"
        " ready_at) VALUES ('run_old', 't', 'queued', '{\"a\": 1}', 1, 1, 1)"
    )
    raw.execute(
        "INSERT INTO steps (run_id, key, name, kind, status, seq, run_attempt, output)"
        " VALUES ('run_old', 'a', 'a', 'step', 'completed', 1, 1, '42')"
    )
    raw.close()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_a_journal_at_every_version_migrates_forward_and_works(tmp_path, version):
    path = tmp_path / "journal.db"
    journal_at(path, version)
    conn = Connection(path)
    try:
        assert conn.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        run = queries.get_run(conn, "run_old")
        assert (run.status, run.payload, run.children_cancelled) == (model.QUEUED, {"a": 1}, 0)
        assert [s.output for s in queries.steps_of(conn, "run_old")] == [42]
        [c] = claim(conn, now=T0)
        assert c.run_id == "run_old"
        store.finish_run(
            conn,
            "run_old",
            c.epoch,
            status=model.COMPLETED,
            output="1",
            error=None,
            traceback=None,
            now=T0 + 1,
        )
        assert queries.get_run(conn, "run_old").status == model.COMPLETED
    finally:
        conn.close()
