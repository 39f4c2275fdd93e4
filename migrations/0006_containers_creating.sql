-- Crash-safe create (issue 4): a container's record is written first, in the state 'creating',
-- before any of its resources (directory, cgroup, network) exist, and becomes 'created' only
-- when all of them do. A daemon that starts and finds a 'creating' record knows a crash
-- interrupted that create and removes whatever of it was made. SQLite cannot change a CHECK
-- constraint in place: the table is rebuilt with the same columns.
CREATE TABLE containers_new (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL UNIQUE,
    team          TEXT NOT NULL,
    spec          TEXT NOT NULL,
    status        TEXT NOT NULL
                  CHECK (status IN ('creating', 'created', 'running', 'paused', 'exited')),
    exit_code     INTEGER,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    shim_pid      INTEGER,
    shim_start    INTEGER,
    init_pid      INTEGER,
    init_start    INTEGER,
    restart_count INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO containers_new
    (id, name, team, spec, status, exit_code, created_at, started_at, finished_at,
     shim_pid, shim_start, init_pid, init_start, restart_count)
SELECT id, name, team, spec, status, exit_code, created_at, started_at, finished_at,
       shim_pid, shim_start, init_pid, init_start, restart_count
FROM containers;

DROP TABLE containers;
ALTER TABLE containers_new RENAME TO containers;
CREATE INDEX containers_team ON containers (team);
