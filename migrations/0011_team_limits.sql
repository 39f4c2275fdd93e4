-- Pooled ceilings of a team (issue 13, part 1): the limits an admin set on the team's cgroup,
-- as `wire::Limits` JSON (an absent field: no limit). Re-applied at daemon start.
CREATE TABLE team_limits (
    team       TEXT PRIMARY KEY NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
    limits     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
