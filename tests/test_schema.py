"""The journal's schema, inspected from outside with sqlite-utils (as a user poking at
their journal would), and its migration bookkeeping."""

from __future__ import annotations

import sqlite3

import sqlite_utils

from sylphrun.journal import Connection, RunSpec, store
from sylphrun.journal.schema import SCHEMA_VERSION


def test_fresh_journal_has_the_schema_and_version(tmp_path):
    path = tmp_path / "j" / "journal.db"
    Connection(path).close()
    db = sqlite_utils.Database(path)
    assert set(db.table_names()) >= {
        "runs",
        "steps",
        "step_attempts",
        "run_attempts",
        "waits",
        "logs",
        "workers",
        "events",
    }
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db["steps"].pks == ["run_id", "key"]
    assert {"ready_at", "lease_epoch", "lease_expires_at", "code_fingerprint"} <= set(
        db["runs"].columns_dict
    )
    index_columns = {tuple(ix.columns) for ix in db["runs"].indexes}
    assert ("ready_at",) in index_columns and ("task_id", "idempotency_key") in index_columns
    # Events are written by triggers, so no writer can forget one.
    assert {t.name for t in db.triggers} >= {
        "runs_insert_event",
        "steps_insert_event",
        "logs_event",
    }
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_every_state_change_appends_an_event(tmp_path):
    conn = Connection(tmp_path / "journal.db")
    [(run_id, _)] = store.enqueue_runs(conn, [RunSpec("t", "{}")], now=1.0)
    store.append_log(conn, run_id, level="INFO", message="hello", step_key=None, now=2.0)
    store.cancel_run(conn, run_id, now=3.0)
    db = sqlite_utils.Database(conn.db)
    kinds = [r["kind"] for r in db["events"].rows_where(order_by="id")]
    assert kinds == ["run.queued", "log", "run.cancelled"]
    ids = [r["id"] for r in db["events"].rows_where(order_by="id")]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    conn.close()


def test_an_empty_file_is_migrated_in_one_transaction(tmp_path):
    path = tmp_path / "journal.db"
    sqlite3.connect(path).close()  # an empty SQLite file: version 0
    conn = Connection(path)
    assert conn.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    # Opening again does not migrate twice.
    Connection(path).close()
    assert (
        sqlite_utils.Database(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    )


def test_a_v1_journal_is_migrated_forward_keeping_its_runs(tmp_path):
    from sylphrun.journal.schema import MIGRATIONS

    path = tmp_path / "journal.db"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.executescript(f"BEGIN;\n{MIGRATIONS[0]}\nPRAGMA user_version = 1;\nCOMMIT;")
    raw.execute(
        "INSERT INTO runs (id, task_id, status, payload, created_at, updated_at)"
        " VALUES ('run_old', 't', 'completed', '{}', 1, 1)"
    )
    raw.execute(
        "INSERT INTO steps (run_id, key, name, kind, status, seq, run_attempt, output)"
        " VALUES ('run_old', 'a', 'a', 'step', 'completed', 1, 1, '42')"
    )
    raw.close()
    conn = Connection(path)
    assert conn.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    assert conn.db.execute("SELECT output FROM steps WHERE run_id = 'run_old'").fetchone() == (
        "42",
    )
    # V2: a step start is silent (the worker announces it), a failure still has its event.
    before = conn.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    conn.db.execute(
        "INSERT INTO steps (run_id, key, name, kind, status, seq, run_attempt)"
        " VALUES ('run_old', 'b', 'b', 'step', 'running', 2, 1)"
    )
    assert conn.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == before
    conn.db.execute("UPDATE steps SET status = 'failed' WHERE key = 'b'")
    kinds = [r[0] for r in conn.db.execute("SELECT kind FROM events WHERE id > ?", (before,))]
    assert kinds == ["step.failed"]
    conn.close()
