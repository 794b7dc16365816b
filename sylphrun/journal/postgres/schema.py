"""The PostgreSQL journal's schema, as named migrations run in order.

The migrations mirror SQLite's (`journal/schema.py`) one for one, so a schema version
means the same tables on both backends. The version lives in `sylphrun_schema`; a journal
written by a newer sylphrun is refused, and a database holding tables that are not a
journal's is refused before anything in it changes. Migrations run under an advisory lock:
several processes opening a new journal at once wait for the first to set it up.

Differences from SQLite, each for a reason:
- Times are `double precision` (seconds since the epoch, as on SQLite: time is passed in).
- `runs.id` is `COLLATE "C"`: ids sort and prefix-match bytewise, as on SQLite, whatever
  the database's locale.
- The feed: `events` and `logs` rows are inserted with `id` NULL (`pos` keeps their order
  within the transaction) and numbered by `sylphrun_number_feed()` at the commit (deferred
  constraint triggers: no writer can forget it), under a transaction-level advisory lock.
  A sequence alone hands out ids at insert time, so a transaction that commits after a
  later one would show a reader an id below its cursor, never read. Under the lock, ids are
  taken in commit order (the lock is released after the commit is visible). Only writes
  that add feed rows take it, at their end.
- Wake-ups: `runs_work_ready` NOTIFYs `sylphrun_work` when a run becomes claimable now;
  `listen.WorkListener` waits for it (SQLite's workers poke each other's sockets instead).
"""

from __future__ import annotations

from typing import Any

# The advisory lock keys live in `locks` (the later migrations use one too); re-exported.
from sylphrun.journal.postgres.locks import FEED_LOCK as FEED_LOCK
from sylphrun.journal.postgres.locks import MIGRATION_LOCK as MIGRATION_LOCK
from sylphrun.journal.postgres.schema_features import (
    V6_SENT_EVENTS,
    V7_SCHEDULES,
    V8_FLOW_CONTROL,
    V9_STEP_CHANGE_SEQ,
    V10_EVENT_WAIT_PROBE,
)

V1 = """
CREATE TABLE runs (
    id               TEXT COLLATE "C" PRIMARY KEY,
    task_id          TEXT NOT NULL,
    status           TEXT NOT NULL,
    payload          TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    attempt          INTEGER NOT NULL DEFAULT 1,
    parent_run_id    TEXT,
    parent_step_key  TEXT,
    idempotency_key  TEXT,
    replay_of        TEXT,
    created_at       DOUBLE PRECISION NOT NULL,
    started_at       DOUBLE PRECISION,
    finished_at      DOUBLE PRECISION,
    updated_at       DOUBLE PRECISION NOT NULL,
    ready_at         DOUBLE PRECISION,
    lease_owner      TEXT,
    lease_epoch      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at DOUBLE PRECISION,
    deadline_at      DOUBLE PRECISION,
    crash_count      INTEGER NOT NULL DEFAULT 0,
    doom             TEXT,
    children_total   INTEGER NOT NULL DEFAULT 0,
    children_done    INTEGER NOT NULL DEFAULT 0,
    children_failed  INTEGER NOT NULL DEFAULT 0,
    code_fingerprint TEXT
);
CREATE UNIQUE INDEX runs_idempotency ON runs(task_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_ready ON runs(ready_at) WHERE ready_at IS NOT NULL;
CREATE INDEX runs_leases ON runs(lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_parent ON runs(parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_created ON runs(created_at);
CREATE INDEX runs_status ON runs(status, created_at);

CREATE TABLE steps (
    run_id        TEXT NOT NULL,
    key           TEXT NOT NULL,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    status        TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 1,
    run_attempt   INTEGER NOT NULL,
    output        TEXT,
    error         TEXT,
    retry_at      DOUBLE PRECISION,
    fatal         INTEGER NOT NULL DEFAULT 0,
    compensate    TEXT,
    started_at    DOUBLE PRECISION,
    finished_at   DOUBLE PRECISION,
    child_run_ids TEXT,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE step_attempts (
    run_id      TEXT NOT NULL,
    step_key    TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    run_attempt INTEGER NOT NULL,
    status      TEXT NOT NULL,
    error       TEXT,
    traceback   TEXT,
    started_at  DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    PRIMARY KEY (run_id, step_key, attempt)
);

CREATE TABLE run_attempts (
    run_id           TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    status           TEXT NOT NULL,
    error            TEXT,
    traceback        TEXT,
    started_at       DOUBLE PRECISION,
    finished_at      DOUBLE PRECISION,
    code_fingerprint TEXT,
    PRIMARY KEY (run_id, attempt)
);

CREATE TABLE waits (
    child_run_id TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    PRIMARY KEY (child_run_id, run_id)
);
CREATE INDEX waits_run ON waits(run_id);

CREATE SEQUENCE log_ids;
CREATE TABLE logs (
    pos      BIGSERIAL PRIMARY KEY,
    id       BIGINT UNIQUE,
    run_id   TEXT NOT NULL,
    at       DOUBLE PRECISION NOT NULL,
    level    TEXT NOT NULL,
    message  TEXT NOT NULL,
    step_key TEXT
);
CREATE INDEX logs_run ON logs(run_id, id);
CREATE INDEX logs_unnumbered ON logs(pos) WHERE id IS NULL;

CREATE TABLE workers (
    id             TEXT PRIMARY KEY,
    pid            INTEGER NOT NULL,
    host           TEXT NOT NULL,
    supervisor_pid INTEGER,
    started_at     DOUBLE PRECISION NOT NULL,
    heartbeat_at   DOUBLE PRECISION NOT NULL,
    wake_addr      TEXT,
    stopped_at     DOUBLE PRECISION
);

CREATE SEQUENCE event_ids;
CREATE TABLE events (
    pos      BIGSERIAL PRIMARY KEY,
    id       BIGINT UNIQUE,
    at       DOUBLE PRECISION NOT NULL,
    run_id   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    step_key TEXT
);
CREATE INDEX events_unnumbered ON events(pos) WHERE id IS NULL;

CREATE FUNCTION sylphrun_number_feed() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM events WHERE id IS NULL)
       OR EXISTS (SELECT 1 FROM logs WHERE id IS NULL) THEN
        PERFORM pg_advisory_xact_lock(FEED_LOCK);
        UPDATE events e SET id = n.id FROM (
            SELECT pos, nextval('event_ids') AS id FROM events WHERE id IS NULL ORDER BY pos
        ) n WHERE e.pos = n.pos;
        UPDATE logs l SET id = n.id FROM (
            SELECT pos, nextval('log_ids') AS id FROM logs WHERE id IS NULL ORDER BY pos
        ) n WHERE l.pos = n.pos;
    END IF;
END $$;

-- Numbered at the commit of every transaction that adds feed rows, whoever wrote them:
-- deferred to the commit, the first firing numbers them all, the others find none.
CREATE FUNCTION sylphrun_number_feed_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sylphrun_number_feed();
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER events_numbered AFTER INSERT ON events DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION sylphrun_number_feed_at_commit();
CREATE CONSTRAINT TRIGGER logs_numbered AFTER INSERT ON logs DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION sylphrun_number_feed_at_commit();

CREATE FUNCTION sylphrun_run_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events(at, run_id, kind) VALUES (new.updated_at, new.id, 'run.' || new.status);
    RETURN NULL;
END $$;
CREATE TRIGGER runs_insert_event AFTER INSERT ON runs
    FOR EACH ROW EXECUTE FUNCTION sylphrun_run_event();
CREATE TRIGGER runs_status_event AFTER UPDATE OF status, attempt ON runs FOR EACH ROW
    WHEN (old.status IS DISTINCT FROM new.status OR old.attempt IS DISTINCT FROM new.attempt)
    EXECUTE FUNCTION sylphrun_run_event();

CREATE FUNCTION sylphrun_step_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events(at, run_id, kind, step_key)
    VALUES (COALESCE(new.finished_at, new.started_at, 0), new.run_id, 'step.' || new.status,
            new.key);
    RETURN NULL;
END $$;
CREATE TRIGGER steps_insert_event AFTER INSERT ON steps
    FOR EACH ROW EXECUTE FUNCTION sylphrun_step_event();
CREATE TRIGGER steps_update_event AFTER UPDATE OF status, attempts ON steps
    FOR EACH ROW EXECUTE FUNCTION sylphrun_step_event();

-- Wake-ups between hosts: a write that makes a run claimable now (created, requeued,
-- woken: ready_at at or before the write's own time) notifies `sylphrun_work`. NOTIFY is
-- delivered at commit, once per transaction however many runs; a run that becomes ready
-- later (a retry's back-off, a sleep) is found by the workers' timed poll, as on SQLite.
CREATE FUNCTION sylphrun_work_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sylphrun_work', '');
    RETURN NULL;
END $$;
CREATE TRIGGER runs_work_ready AFTER INSERT OR UPDATE OF ready_at ON runs FOR EACH ROW
    WHEN (new.ready_at IS NOT NULL AND new.ready_at <= new.updated_at)
    EXECUTE FUNCTION sylphrun_work_ready();

CREATE FUNCTION sylphrun_log_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events(at, run_id, kind, step_key) VALUES (new.at, new.run_id, 'log', new.step_key);
    RETURN NULL;
END $$;
CREATE TRIGGER logs_event AFTER INSERT ON logs
    FOR EACH ROW EXECUTE FUNCTION sylphrun_log_event();
""".replace("FEED_LOCK", str(FEED_LOCK))

# SQLite's V2: a step's start and result announce themselves only when the worker asks.
V2 = """
DROP TRIGGER steps_insert_event ON steps;
DROP TRIGGER steps_update_event ON steps;
CREATE TRIGGER steps_insert_event AFTER INSERT ON steps FOR EACH ROW
    WHEN (new.status NOT IN ('running', 'completed')) EXECUTE FUNCTION sylphrun_step_event();
CREATE TRIGGER steps_update_event AFTER UPDATE OF status, attempts ON steps FOR EACH ROW
    WHEN (new.status NOT IN ('running', 'completed')) EXECUTE FUNCTION sylphrun_step_event();
"""

V3_STEP_CALLS = """
ALTER TABLE steps ADD COLUMN fn TEXT;
ALTER TABLE steps ADD COLUMN args_hash TEXT;
ALTER TABLE steps ADD COLUMN copied INTEGER NOT NULL DEFAULT 0;
"""

V4_TASK_REGISTRY = """
CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    options       TEXT NOT NULL,
    source_file   TEXT NOT NULL,
    source_line   INTEGER NOT NULL,
    fingerprint   TEXT NOT NULL,
    project_dir   TEXT,
    registered_by TEXT NOT NULL,
    registered_at DOUBLE PRECISION NOT NULL
);
"""

V5_CHILDREN_CANCELLED = """
ALTER TABLE runs ADD COLUMN children_cancelled INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET children_cancelled = (
    SELECT COUNT(*) FROM runs c WHERE c.parent_run_id = runs.id AND c.status = 'cancelled'
) WHERE children_done > 0;
UPDATE runs SET children_failed = GREATEST(children_failed - children_cancelled, 0)
WHERE children_cancelled > 0;
"""


MIGRATIONS: list[str] = [
    V1,
    V2,
    V3_STEP_CALLS,
    V4_TASK_REGISTRY,
    V5_CHILDREN_CANCELLED,
    V6_SENT_EVENTS,
    V7_SCHEDULES,
    V8_FLOW_CONTROL,
    V9_STEP_CHANGE_SEQ,
    V10_EVENT_WAIT_PROBE,
]
SCHEMA_VERSION = len(MIGRATIONS)

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS sylphrun_schema (version INTEGER NOT NULL)"


def current_version(cur: Any) -> int | None:
    """The journal's schema version; None for a database with no journal in it."""
    cur.execute("SELECT to_regclass('sylphrun_schema') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT version FROM sylphrun_schema")
    row = cur.fetchone()
    return row[0] if row else 0
