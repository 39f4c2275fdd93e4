-- A hub's API tokens for its hosts (issue 19): with one, the hub forwards container actions
-- (list, start, stop, freeze, …) to that host's API. Set by an admin of the hub after the host
-- confirmed the token is one of its admins'; pinned to the API URL it was checked against, so
-- a host that later advertises another URL does not receive it.
CREATE TABLE fleet_host_tokens (
    host_id    TEXT PRIMARY KEY,
    api_url    TEXT NOT NULL,
    token      TEXT NOT NULL,
    host_user  TEXT NOT NULL,
    set_by     TEXT NOT NULL,
    set_at     INTEGER NOT NULL
) STRICT;
