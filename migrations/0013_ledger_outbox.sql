-- The fleet ledger's outbox (issue 19): which hourly ledger rows changed since PostgreSQL last
-- took them. One row per usage_ledger key, so the backlog never outgrows the ledger itself
-- (an outage of days at 1000 containers is 24 000 keys a day). Triggers fill it in the
-- sampler's own transaction, so a ledger write and its outbox entry commit together. The
-- shipper (backend/src/ledger) reads keys oldest change first, upserts the row's absolute
-- totals into PostgreSQL and then deletes the key only if its version did not move meanwhile:
-- a crash anywhere re-sends absolute totals, which the upsert makes harmless.
CREATE TABLE ledger_outbox (
    period       INTEGER NOT NULL,
    container_id TEXT NOT NULL,
    team         TEXT NOT NULL,
    labels       TEXT NOT NULL,
    version      INTEGER NOT NULL,
    PRIMARY KEY (period, container_id, team, labels)
) STRICT, WITHOUT ROWID;
CREATE INDEX ledger_outbox_version ON ledger_outbox (version);

-- Whether this host ships (turned on the first time `corral serve --ledger` starts, which
-- also queues the whole ledger so far), and what it shipped.
CREATE TABLE ledger_ship (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    enabled       INTEGER NOT NULL,
    shipped_rows  INTEGER NOT NULL,
    last_ship_ms  INTEGER,
    -- Random, set when shipping is first turned on: PostgreSQL refuses a second database
    -- shipping under the same host id while the first is alive.
    db_id         TEXT,
    -- The last version handed out (see the triggers).
    next_version  INTEGER NOT NULL
) STRICT;
INSERT INTO ledger_ship (id, enabled, shipped_rows, last_ship_ms, db_id, next_version)
VALUES (1, 0, 0, NULL, NULL, 0);

-- A key's version comes from a counter that only grows (never from the outbox's own maximum,
-- which falls when rows are shipped), so a row written again while its copy is in flight always
-- outlives that copy's acknowledgement. DELETE then INSERT rather than an upsert: the
-- sampler's own upsert would override a conflict clause in here.
CREATE TRIGGER usage_ledger_outbox_insert AFTER INSERT ON usage_ledger
WHEN (SELECT enabled FROM ledger_ship WHERE id = 1)
BEGIN
    UPDATE ledger_ship SET next_version = next_version + 1 WHERE id = 1;
    DELETE FROM ledger_outbox WHERE period = NEW.period AND container_id = NEW.container_id
        AND team = NEW.team AND labels = NEW.labels;
    INSERT INTO ledger_outbox (period, container_id, team, labels, version)
    VALUES (NEW.period, NEW.container_id, NEW.team, NEW.labels,
            (SELECT next_version FROM ledger_ship WHERE id = 1));
END;

CREATE TRIGGER usage_ledger_outbox_update AFTER UPDATE ON usage_ledger
WHEN (SELECT enabled FROM ledger_ship WHERE id = 1)
BEGIN
    UPDATE ledger_ship SET next_version = next_version + 1 WHERE id = 1;
    DELETE FROM ledger_outbox WHERE period = NEW.period AND container_id = NEW.container_id
        AND team = NEW.team AND labels = NEW.labels;
    INSERT INTO ledger_outbox (period, container_id, team, labels, version)
    VALUES (NEW.period, NEW.container_id, NEW.team, NEW.labels,
            (SELECT next_version FROM ledger_ship WHERE id = 1));
END;
