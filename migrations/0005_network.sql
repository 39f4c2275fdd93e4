-- Networking (issue 8). One row per bridge network: the subnet chosen for it is kept, so a
-- daemon restart keeps handing out addresses from the same range.
CREATE TABLE networks (
    bridge TEXT PRIMARY KEY NOT NULL,
    subnet TEXT NOT NULL
) STRICT;

-- One row per container with its own network namespace. `address` is unique per bridge: IPAM
-- never hands out an address that a row holds; removing the row releases it.
CREATE TABLE network_endpoints (
    owner   TEXT PRIMARY KEY NOT NULL,
    bridge  TEXT,
    address TEXT,
    netns   TEXT NOT NULL,
    veth    TEXT,
    ports   TEXT NOT NULL DEFAULT '[]',
    UNIQUE (bridge, address)
) STRICT;
