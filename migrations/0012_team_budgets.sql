-- Team budgets (issue 13, part 2): a budget per team and UTC period with a policy ladder, as
-- `wire::Budget` JSON. Usage is priced from the hourly ledger, as the bill is.
CREATE TABLE team_budgets (
    team       TEXT PRIMARY KEY NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
    budget     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- Where each budgeted team stands: the period last evaluated (unix s of its start), the highest
-- ladder step in force (NULL: none) and the percent that put it there. Re-applied at daemon
-- start before the first evaluation, so a restart never lifts a step for a moment.
CREATE TABLE team_budget_state (
    team         TEXT PRIMARY KEY NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
    period_start INTEGER NOT NULL,
    step         INTEGER,
    percent      REAL NOT NULL,
    evaluated_at INTEGER NOT NULL
) STRICT;

-- The team's budget timeline: one row per step change (`warn`, `escalated`, `lifted`), with
-- why and who (`corral` when usage moved it; the admin whose change of the budget did).
CREATE TABLE team_budget_steps (
    id        INTEGER PRIMARY KEY,
    team      TEXT NOT NULL REFERENCES teams(name) ON DELETE CASCADE,
    ts_ms     INTEGER NOT NULL,
    action    TEXT NOT NULL,
    from_step INTEGER,
    to_step   INTEGER,
    percent   REAL NOT NULL,
    reason    TEXT NOT NULL,
    actor     TEXT NOT NULL
) STRICT;
CREATE INDEX team_budget_steps_team ON team_budget_steps (team, id);
