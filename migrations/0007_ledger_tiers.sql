-- Two more ledger tiers (issue 5, billing speed): the same sums as usage_ledger per 6 UTC hours
-- (00, 06, 12, 18) and per ten days of a month (days 1-10, 11-20, 21 to the end), so any range
-- decomposes into at most 5 hours, 3 six-hour blocks, 9 days and 2 ten-day blocks per edge
-- plus whole days and months in between (calendar::decompose). The sampler writes all five
-- tables in the same transaction as the hourly rows and the checkpoint they advance from;
-- this migration (one transaction with its version bump) backfills the new tiers from the
-- ledger already written. Peaks are maxima of the finer rows, never differences.

CREATE TABLE usage_ledger_6h (
    period                 INTEGER NOT NULL,
    container_id           TEXT NOT NULL,
    team                   TEXT NOT NULL,
    labels                 TEXT NOT NULL,
    name                   TEXT NOT NULL,
    duration_ms            INTEGER NOT NULL,
    cpu_usec               INTEGER NOT NULL,
    throttled_usec         INTEGER NOT NULL,
    cpu_reserved_core_usec INTEGER NOT NULL,
    mem_byte_s             INTEGER NOT NULL,
    mem_reserved_byte_s    INTEGER NOT NULL,
    io_rbytes              INTEGER NOT NULL,
    io_wbytes              INTEGER NOT NULL,
    io_rios                INTEGER NOT NULL,
    io_wios                INTEGER NOT NULL,
    oom_kills              INTEGER NOT NULL,
    mem_peak               INTEGER NOT NULL,
    pids_peak              INTEGER NOT NULL,
    PRIMARY KEY (period, container_id, team, labels)
) STRICT, WITHOUT ROWID;
CREATE INDEX usage_ledger_6h_team ON usage_ledger_6h (team, period);

CREATE TABLE usage_ledger_10d (
    period                 INTEGER NOT NULL,
    container_id           TEXT NOT NULL,
    team                   TEXT NOT NULL,
    labels                 TEXT NOT NULL,
    name                   TEXT NOT NULL,
    duration_ms            INTEGER NOT NULL,
    cpu_usec               INTEGER NOT NULL,
    throttled_usec         INTEGER NOT NULL,
    cpu_reserved_core_usec INTEGER NOT NULL,
    mem_byte_s             INTEGER NOT NULL,
    mem_reserved_byte_s    INTEGER NOT NULL,
    io_rbytes              INTEGER NOT NULL,
    io_wbytes              INTEGER NOT NULL,
    io_rios                INTEGER NOT NULL,
    io_wios                INTEGER NOT NULL,
    oom_kills              INTEGER NOT NULL,
    mem_peak               INTEGER NOT NULL,
    pids_peak              INTEGER NOT NULL,
    PRIMARY KEY (period, container_id, team, labels)
) STRICT, WITHOUT ROWID;
CREATE INDEX usage_ledger_10d_team ON usage_ledger_10d (team, period);

INSERT INTO usage_ledger_6h
SELECT period - ((period % 21600) + 21600) % 21600 AS p, container_id, team, labels,
    max(name), sum(duration_ms), sum(cpu_usec), sum(throttled_usec),
    sum(cpu_reserved_core_usec), sum(mem_byte_s), sum(mem_reserved_byte_s), sum(io_rbytes),
    sum(io_wbytes), sum(io_rios), sum(io_wios), sum(oom_kills), max(mem_peak), max(pids_peak)
FROM usage_ledger GROUP BY p, container_id, team, labels;

INSERT INTO usage_ledger_10d
SELECT CAST(strftime('%s', period, 'unixepoch', 'start of month') AS INTEGER)
      + 86400 * min(20, (CAST(strftime('%d', period, 'unixepoch') AS INTEGER) - 1) / 10 * 10) AS p,
    container_id, team, labels,
    max(name), sum(duration_ms), sum(cpu_usec), sum(throttled_usec),
    sum(cpu_reserved_core_usec), sum(mem_byte_s), sum(mem_reserved_byte_s), sum(io_rbytes),
    sum(io_wbytes), sum(io_rios), sum(io_wios), sum(oom_kills), max(mem_peak), max(pids_peak)
FROM usage_ledger_day GROUP BY p, container_id, team, labels;
