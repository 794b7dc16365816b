"""The PostgreSQL journal's later migrations, one per feature (user events, schedules, flow
control, the step change feed), listed in `schema.MIGRATIONS` after V1-V5. Frozen like
every migration: a journal at any version runs exactly these texts.
"""

from __future__ import annotations

from sylphrun.journal.postgres.locks import FEED_LOCK

# SQLite's V6_SENT_EVENTS. `seq` comes from a sequence: senders serialize per event name
# (an advisory lock, `events.py`), so a wait and a send of one name never miss each other.
V6_SENT_EVENTS = """
CREATE TABLE sent_events (
    seq      BIGSERIAL PRIMARY KEY,
    id       TEXT NOT NULL UNIQUE,
    name     TEXT NOT NULL,
    data     TEXT NOT NULL,
    sent_at  DOUBLE PRECISION NOT NULL,
    sent_by  TEXT
);
CREATE INDEX sent_events_name ON sent_events(name, seq);
ALTER TABLE runs ADD COLUMN event_mark BIGINT NOT NULL DEFAULT 0;
CREATE TABLE event_waits (
    run_id     TEXT NOT NULL,
    step_key   TEXT NOT NULL,
    name       TEXT NOT NULL,
    match      TEXT,
    timeout_at DOUBLE PRECISION,
    since      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, step_key)
);
CREATE INDEX event_waits_name ON event_waits(name);
CREATE TABLE event_deliveries (
    event_seq BIGINT NOT NULL,
    run_id    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    step_key  TEXT,
    at        DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (event_seq, run_id, outcome)
);
CREATE UNIQUE INDEX event_deliveries_step ON event_deliveries(run_id, step_key)
    WHERE step_key IS NOT NULL;
"""

V7_SCHEDULES = """
CREATE TABLE schedules (
    task_id          TEXT PRIMARY KEY,
    settled_through  DOUBLE PRECISION NOT NULL,
    last_slot        DOUBLE PRECISION,
    last_run_id      TEXT,
    paused           INTEGER NOT NULL DEFAULT 0,
    updated_at       DOUBLE PRECISION NOT NULL
);
"""

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
    at       DOUBLE PRECISION NOT NULL,
    run_id   TEXT NOT NULL
);
CREATE INDEX run_starts_window ON run_starts(task_id, rate_key, at);
"""

# SQLite's V9_STEP_CHANGE_SEQ: `steps.change_seq` is the largest event id committed before
# the row's last write became visible. SQLite reads it in the writing statement (one
# writer). Here a step row written in a transaction is left NULL (a BEFORE trigger) and
# stamped at the commit, under the feed lock that numbers events: the largest id before
# this transaction's own events. The lock is held until the commit is visible, so a
# reader that sees event s + 1 sees every row stamped s, as on SQLite. The hot writes
# stamp themselves under the lock taken shared (below): stamping them at commit too
# serialized every step's commit (4 writers: 450-530 steps/s against 1,300-1,650 without
# stamping; shared: see the commit that made it).
V9_STEP_CHANGE_SEQ = """
ALTER TABLE steps ADD COLUMN change_seq BIGINT DEFAULT 0;
CREATE INDEX steps_unstamped ON steps(run_id) WHERE change_seq IS NULL;

CREATE OR REPLACE FUNCTION sylphrun_number_feed() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM events WHERE id IS NULL)
       OR EXISTS (SELECT 1 FROM logs WHERE id IS NULL)
       OR EXISTS (SELECT 1 FROM steps WHERE change_seq IS NULL) THEN
        PERFORM pg_advisory_xact_lock(FEED_LOCK);
        UPDATE steps SET change_seq = (SELECT COALESCE(MAX(id), 0) FROM events)
        WHERE change_seq IS NULL;
        UPDATE events e SET id = n.id FROM (
            SELECT pos, nextval('event_ids') AS id FROM events WHERE id IS NULL ORDER BY pos
        ) n WHERE e.pos = n.pos;
        UPDATE logs l SET id = n.id FROM (
            SELECT pos, nextval('log_ids') AS id FROM logs WHERE id IS NULL ORDER BY pos
        ) n WHERE l.pos = n.pos;
    END IF;
END $$;

-- The two hot step writes (one statement each, no event) ask for the cheap stamp by
-- writing change_seq = -1: the feed lock taken SHARED until their commit (the numbering's
-- exclusive lock waits for it, so no event is numbered past the stamp before the row is
-- visible), the stamp read after it in a fresh snapshot (each statement of a plpgsql
-- function under READ COMMITTED takes one). Hot writes run in parallel; only a
-- transaction that adds events serializes on the lock. Never in a transaction that adds
-- events: it would hold the lock shared and then ask for it exclusive (a deadlock).
CREATE FUNCTION sylphrun_unstamp_step() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF new.change_seq = -1 THEN
        PERFORM pg_advisory_xact_lock_shared(FEED_LOCK);
        new.change_seq := (SELECT COALESCE(MAX(id), 0) FROM events);
    ELSIF pg_trigger_depth() = 1 THEN
        new.change_seq := NULL;
    END IF;
    RETURN new;
END $$;
CREATE TRIGGER steps_unstamped BEFORE INSERT OR UPDATE ON steps
    FOR EACH ROW EXECUTE FUNCTION sylphrun_unstamp_step();
CREATE CONSTRAINT TRIGGER steps_stamped AFTER INSERT OR UPDATE ON steps
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (new.change_seq IS NULL)
    EXECUTE FUNCTION sylphrun_number_feed_at_commit();
""".replace("FEED_LOCK", str(FEED_LOCK))

# SQLite's V10_EVENT_WAIT_PROBE: a send finds the waits its event matches by index, and a
# wait takes its event by index, instead of reading every wait or event of the name (1,000
# runs each waiting for its own order_id; 10,000 events of the name since a run began).
# The same probe texts as SQLite (`event_match.probe`): `event_waits.probe` is one field of
# a wait's match, `sent_event_probes` holds each event's top-level scalar fields. Events
# sent before this migration have none: a take reads those (seq <= the one in
# `sent_event_probes_from`) as before. The send lock (`events.send_event`) is taken so the
# mark is above every committed send and below every later one.
V10_EVENT_WAIT_PROBE = """
SELECT pg_advisory_xact_lock(hashtext('sylphrun.event.send'));
ALTER TABLE event_waits ADD COLUMN probe TEXT;
CREATE INDEX event_waits_probe ON event_waits(name, probe);
CREATE TABLE sent_event_probes (
    name   TEXT NOT NULL,
    probe  TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    PRIMARY KEY (name, probe, seq)
);
CREATE TABLE sent_event_probes_from (seq BIGINT NOT NULL);
INSERT INTO sent_event_probes_from SELECT COALESCE(MAX(seq), 0) FROM sent_events;
"""
