-- Corral's first schema: facts about the daemon itself.
CREATE TABLE daemon_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
