"""The journal's schema, as named migrations run in order.

The version lives in `PRAGMA user_version`. A journal written by a newer sylphrun has a
higher version than we know; we refuse to open it rather than guess. An SQLite database
that is not a journal at all (another program's) is refused too, before anything in it
or about the file changes (`journal.foreign.foreign_tables`).
"""

from __future__ import annotations

V1 = """
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
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
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    updated_at       REAL NOT NULL,
    -- When a queued or waiting run may be claimed; NULL while running, finished, or
    -- waiting on children. One indexed column serves triggers, retries and sleeps.
    ready_at         REAL,
    lease_owner      TEXT,
    lease_epoch      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at REAL,
    deadline_at      REAL,
    crash_count      INTEGER NOT NULL DEFAULT 0,
    -- Set when the run must fail at its next step (its worker was replaced because a
    -- step overran the task's timeout): the next execution replays up to there, then fails.
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
    retry_at      REAL,
    fatal         INTEGER NOT NULL DEFAULT 0,
    -- `module:qualname` of an undo registered with compensate=, so a final attempt that
    -- fails before replaying this step can still find and run it.
    compensate    TEXT,
    started_at    REAL,
    finished_at   REAL,
    child_run_ids TEXT,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;

-- Only failed and interrupted attempts: the successful one is the step row itself.
CREATE TABLE step_attempts (
    run_id      TEXT NOT NULL,
    step_key    TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    run_attempt INTEGER NOT NULL,
    status      TEXT NOT NULL,
    error       TEXT,
    traceback   TEXT,
    started_at  REAL,
    finished_at REAL,
    PRIMARY KEY (run_id, step_key, attempt)
) WITHOUT ROWID;

CREATE TABLE run_attempts (
    run_id           TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    status           TEXT NOT NULL,
    error            TEXT,
    traceback        TEXT,
    started_at       REAL,
    finished_at      REAL,
    code_fingerprint TEXT,
    PRIMARY KEY (run_id, attempt)
) WITHOUT ROWID;

-- A suspended parent waits on these children; the last one to finish wakes it.
CREATE TABLE waits (
    child_run_id TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    PRIMARY KEY (child_run_id, run_id)
) WITHOUT ROWID;
CREATE INDEX waits_run ON waits(run_id);

CREATE TABLE logs (
    id       INTEGER PRIMARY KEY,
    run_id   TEXT NOT NULL,
    at       REAL NOT NULL,
    level    TEXT NOT NULL,
    message  TEXT NOT NULL,
    step_key TEXT
);
CREATE INDEX logs_run ON logs(run_id, id);

CREATE TABLE workers (
    id             TEXT PRIMARY KEY,
    pid            INTEGER NOT NULL,
    host           TEXT NOT NULL,
    supervisor_pid INTEGER,
    started_at     REAL NOT NULL,
    heartbeat_at   REAL NOT NULL,
    wake_addr      TEXT,
    stopped_at     REAL
);

-- Append-only, filled by triggers so no writer can forget it: live readers (the
-- dashboard, `trigger --wait`) ask "what changed since event N" with one indexed read.
CREATE TABLE events (
    -- No AUTOINCREMENT: it rewrites sqlite_sequence on every insert (a third of the WAL
    -- written per step); rows are never deleted, so max(id) + 1 keeps ids increasing.
    id       INTEGER PRIMARY KEY,
    at       REAL NOT NULL,
    run_id   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    step_key TEXT
);
CREATE TRIGGER runs_insert_event AFTER INSERT ON runs BEGIN
    INSERT INTO events(at, run_id, kind) VALUES (new.updated_at, new.id, 'run.' || new.status);
END;
CREATE TRIGGER runs_status_event AFTER UPDATE OF status, attempt ON runs
WHEN old.status IS NOT new.status OR old.attempt IS NOT new.attempt BEGIN
    INSERT INTO events(at, run_id, kind) VALUES (new.updated_at, new.id, 'run.' || new.status);
END;
CREATE TRIGGER steps_insert_event AFTER INSERT ON steps BEGIN
    INSERT INTO events(at, run_id, kind, step_key)
    VALUES (COALESCE(new.finished_at, new.started_at, 0), new.run_id, 'step.' || new.status, new.key);
END;
CREATE TRIGGER steps_update_event AFTER UPDATE OF status, attempts ON steps BEGIN
    INSERT INTO events(at, run_id, kind, step_key)
    VALUES (COALESCE(new.finished_at, new.started_at, 0), new.run_id, 'step.' || new.status, new.key);
END;
CREATE TRIGGER logs_event AFTER INSERT ON logs BEGIN
    INSERT INTO events(at, run_id, kind, step_key) VALUES (new.at, new.run_id, 'log', new.step_key);
END;
"""  # noqa: E501 (migration scripts are frozen: journals already ran this SQL)

# The events table is a change feed for readers (the dashboard, `dev --no-tui`), not the
# record of what happened (the steps and runs tables are). A step's start and its result
# are the hot path of every run: an event row in the same commit writes a second page to
# the WAL, a quarter of a trivial step's cost (bench/experiments.py: 69 -> 53 us per step
# without them). So those two changes are announced by the store when the worker asks for
# it: at most one event per run every `runtime.steps.NOTICE_EVERY` s, and one after the
# last change of a burst (readers re-read the run's steps on any event of it). Every other
# step change (failed, retrying, waiting, interrupted) stays rare and keeps its trigger.
V2 = """
DROP TRIGGER steps_insert_event;
DROP TRIGGER steps_update_event;
CREATE TRIGGER steps_insert_event AFTER INSERT ON steps
WHEN new.status NOT IN ('running', 'completed') BEGIN
    INSERT INTO events(at, run_id, kind, step_key)
    VALUES (COALESCE(new.finished_at, new.started_at, 0), new.run_id, 'step.' || new.status, new.key);
END;
CREATE TRIGGER steps_update_event AFTER UPDATE OF status, attempts ON steps
WHEN new.status NOT IN ('running', 'completed') BEGIN
    INSERT INTO events(at, run_id, kind, step_key)
    VALUES (COALESCE(new.finished_at, new.started_at, 0), new.run_id, 'step.' || new.status, new.key);
END;
"""  # noqa: E501 (frozen migration)

# What each step was called as, so a replay can tell that a journaled result belongs to
# the same call (`runtime.divergence`): `fn` the step function's `module:qualname`,
# `args_hash` a short hash of its arguments' canonical JSON (NULL when they are not JSON,
# and on rows written before this migration: those are not checked). `copied` marks a row
# `replay --from-step` copied from the original run: its effect belongs to that run, so
# the replay never compensates it.
V3_STEP_CALLS = """
ALTER TABLE steps ADD COLUMN fn TEXT;
ALTER TABLE steps ADD COLUMN args_hash TEXT;
ALTER TABLE steps ADD COLUMN copied INTEGER NOT NULL DEFAULT 0;
"""

# What the workers can run, as they imported it: the CLI triggers and lists tasks from
# here instead of importing the user's code (a syntax error in one file, or a module that
# is slow to import, must not break `sylphrun trigger`). Each registration (a worker's
# start, a reload's passing import check) replaces the whole set in one transaction, so a
# task removed from the code disappears. `options` is JSON: retry, concurrency, timeout.
V4_TASK_REGISTRY = """
CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    options       TEXT NOT NULL,
    source_file   TEXT NOT NULL,
    source_line   INTEGER NOT NULL,
    fingerprint   TEXT NOT NULL,
    project_dir   TEXT,
    registered_by TEXT NOT NULL,
    registered_at REAL NOT NULL
) WITHOUT ROWID;
"""

# A cancelled child is not a failed one: counted apart, so `show` and the dashboard can say
# "990 completed, 8 failed, 2 cancelled". Children cancelled before this migration were
# counted as failed; move them.
V5_CHILDREN_CANCELLED = """
ALTER TABLE runs ADD COLUMN children_cancelled INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET children_cancelled = (
    SELECT COUNT(*) FROM runs c WHERE c.parent_run_id = runs.id AND c.status = 'cancelled'
) WHERE children_done > 0;
UPDATE runs SET children_failed = MAX(children_failed - children_cancelled, 0)
WHERE children_cancelled > 0;
"""

# User events (issue 14), apart from `events`, the dashboard's change feed. `sent_events`
# is the record of what was sent; `seq` orders it (no AUTOINCREMENT: rows are never
# deleted). A run's `event_mark` is the highest `seq` when it was created: the events a
# run's waits may take are those after it, so an event sent after the trigger counts even
# if it arrived before the wait started (Inngest #1433 misses those). `event_waits` are the
# open `wait_for_event` steps, which a sender wakes; `event_deliveries` say what each event
# did: a wait step that consumed it (one event per wait, one wait per event in a run), a
# run it woke (matched), triggered (`on_event`) or cancelled (`cancel_on`).
V6_SENT_EVENTS = """
CREATE TABLE sent_events (
    seq      INTEGER PRIMARY KEY,
    id       TEXT NOT NULL UNIQUE,
    name     TEXT NOT NULL,
    data     TEXT NOT NULL,
    sent_at  REAL NOT NULL,
    sent_by  TEXT
);
CREATE INDEX sent_events_name ON sent_events(name, seq);
ALTER TABLE runs ADD COLUMN event_mark INTEGER NOT NULL DEFAULT 0;
CREATE TABLE event_waits (
    run_id     TEXT NOT NULL,
    step_key   TEXT NOT NULL,
    name       TEXT NOT NULL,
    match      TEXT,
    timeout_at REAL,
    since      REAL NOT NULL,
    PRIMARY KEY (run_id, step_key)
) WITHOUT ROWID;
CREATE INDEX event_waits_name ON event_waits(name);
CREATE TABLE event_deliveries (
    event_seq INTEGER NOT NULL,
    run_id    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    step_key  TEXT,
    at        REAL NOT NULL,
    PRIMARY KEY (event_seq, run_id, outcome)
) WITHOUT ROWID;
CREATE UNIQUE INDEX event_deliveries_step ON event_deliveries(run_id, step_key)
    WHERE step_key IS NOT NULL;
"""

# The state of each scheduled task (`journal/schedules.py`): every slot at or before
# `settled_through` was fired or skipped (by the catch-up policy, or a pause), so a tick is
# decided once however many supervisors check; `last_slot`/`last_run_id` the latest fired
# slot and its run; `paused` set by `sylphrun schedules pause`, kept across restarts. The
# schedule itself (expression, zone) stays in the task registry, with the code.
V7_SCHEDULES = """
CREATE TABLE schedules (
    task_id          TEXT PRIMARY KEY,
    settled_through  REAL NOT NULL,
    last_slot        REAL,
    last_run_id      TEXT,
    paused           INTEGER NOT NULL DEFAULT 0,
    updated_at       REAL NOT NULL
) WITHOUT ROWID;
"""

# Flow control (journal/flow.py). `priority`: higher is claimed first among ready runs,
# FIFO within a priority (the index serves the claim's ORDER BY with its LIMIT). The keys
# are evaluated from the payload at trigger time: `concurrency_key` (running runs per key),
# `rate_key` (starts per window, counted in `run_starts`, a ledger pruned by the claim),
# `debounce_key` (a pending run quick triggers collapse into).
V8_FLOW_CONTROL = """
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
ALTER TABLE runs ADD COLUMN rate_key TEXT;
ALTER TABLE runs ADD COLUMN debounce_key TEXT;
CREATE INDEX runs_ready_by_priority ON runs(priority DESC, ready_at) WHERE ready_at IS NOT NULL;
CREATE INDEX runs_debouncing ON runs(task_id, debounce_key, created_at)
    WHERE debounce_key IS NOT NULL;
CREATE TABLE run_starts (
    task_id  TEXT NOT NULL,
    rate_key TEXT NOT NULL,
    at       REAL NOT NULL,
    run_id   TEXT NOT NULL
);
CREATE INDEX run_starts_window ON run_starts(task_id, rate_key, at);
"""

# The change feed's exact cursor for steps (`queries.feed.step_changes`). A step row
# carries `change_seq`: the largest event id when it was last written, read in the
# writing statement. SQLite has one writer at a time, so a row stamped s was written after
# event s and before event s + 1: once event s + 1 exists, no write can be stamped s again,
# and a reader that read the run's rows stamped below s + 1 has seen each of them. The
# two hot writes set it in the row they write anyway (no event row, no index: schema V2
# says why a second page per step costs a quarter of a step); the rare step changes,
# which have an event, are stamped here just before their event is inserted, so the event
# comes after the row. Rows written before this migration read as 0 (before any reader).
V9_STEP_CHANGE_SEQ = """
ALTER TABLE steps ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
DROP TRIGGER steps_insert_event;
DROP TRIGGER steps_update_event;
CREATE TRIGGER steps_insert_event AFTER INSERT ON steps
WHEN new.status NOT IN ('running', 'completed') BEGIN
    UPDATE steps SET change_seq = COALESCE((SELECT MAX(id) FROM events), 0)
    WHERE run_id = new.run_id AND key = new.key;
    INSERT INTO events(at, run_id, kind, step_key)
    VALUES (COALESCE(new.finished_at, new.started_at, 0), new.run_id, 'step.' || new.status, new.key);
END;
CREATE TRIGGER steps_update_event AFTER UPDATE OF status, attempts ON steps
WHEN new.status NOT IN ('running', 'completed') BEGIN
    UPDATE steps SET change_seq = COALESCE((SELECT MAX(id) FROM events), 0)
    WHERE run_id = new.run_id AND key = new.key;
    INSERT INTO events(at, run_id, kind, step_key)
    VALUES (COALESCE(new.finished_at, new.started_at, 0), new.run_id, 'step.' || new.status, new.key);
END;
"""  # noqa: E501 (frozen migration)

# A sender finds the waits its event matches by index, not by reading every open wait of
# the event's name (1,000 runs waiting for "order.approved", each for its own order_id: a
# send read and decoded all 1,000, 11 ms; bench/event_match.py). `probe` is one field of
# the wait's match, canonical (`sent_events.probe`); the sender looks up the probes of its
# data's top-level fields. NULL (no match, or rows written before this migration): the
# sender checks the wait in Python, as before.
# The other way round, a wait takes its event by index too: `sent_event_probes` holds the
# probes of each event's top-level fields (10,000 events of the name since the run began:
# a take read them all, 9 ms inside the write lock). Events sent before this migration
# have none: a take reads those (seq <= `sent_event_probes_from`) as before.
V10_EVENT_WAIT_PROBE = """
ALTER TABLE event_waits ADD COLUMN probe TEXT;
CREATE INDEX event_waits_probe ON event_waits(name, probe);
CREATE TABLE sent_event_probes (
    name   TEXT NOT NULL,
    probe  TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (name, probe, seq)
) WITHOUT ROWID;
CREATE TABLE sent_event_probes_from (seq INTEGER NOT NULL);
INSERT INTO sent_event_probes_from SELECT COALESCE(MAX(seq), 0) FROM sent_events;
"""

# Each migration is one SQL script, run with the version bump in one transaction. V1 was
# edited in place before the first release; from V2 on, a journal written by an earlier
# version is migrated forward, never rewritten.
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


# Tables every journal has had since V1.
