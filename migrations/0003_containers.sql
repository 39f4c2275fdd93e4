-- Containers (issue 4). The spec is the create request as JSON (wire::CreateContainer) with the
-- current limits; the runtime fields mirror the monitor's state file.
CREATE TABLE containers (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL UNIQUE,
    team          TEXT NOT NULL,
    spec          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('created', 'running', 'paused', 'exited')),
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

CREATE INDEX containers_team ON containers (team);

-- Images imported into the content-addressed store under <state>/images.
CREATE TABLE images (
    id         TEXT PRIMARY KEY NOT NULL,
    tags       TEXT NOT NULL,
    layers     TEXT NOT NULL,
    config     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
