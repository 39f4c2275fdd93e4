-- Metering (issue 5): counter checkpoints, raw samples and their rollups (pruned by retention),
-- the usage ledger (never pruned) and the versioned rate card.
--
-- Units: times in Unix ms (samples) or Unix seconds (ledger hours, UTC); CPU in µs; memory
-- integrals in byte·seconds; reserved CPU in core·µs; money in millionths of the currency unit.

-- The last reading accounted for each metered subject ('c:<container id>' or 'host'), written in
-- the same transaction as the ledger rows it produced (JSON of metering::Reading).
CREATE TABLE meter_checkpoint (
    subject TEXT PRIMARY KEY NOT NULL,
    reading TEXT NOT NULL
) STRICT;

-- Raw samples of containers ('c:<id>'), teams ('t:<team>') and the host ('host'). Every column
-- but mem_bytes/pids is the usage of the interval that ended at ts_ms and lasted dt_ms.
CREATE TABLE meter_sample (
    subject        TEXT NOT NULL,
    ts_ms          INTEGER NOT NULL,
    dt_ms          INTEGER NOT NULL,
    cpu_usec       INTEGER NOT NULL,
    throttled_usec INTEGER NOT NULL,
    io_rbytes      INTEGER NOT NULL,
    io_wbytes      INTEGER NOT NULL,
    io_rios        INTEGER NOT NULL,
    io_wios        INTEGER NOT NULL,
    mem_byte_s     INTEGER NOT NULL,
    mem_bytes      INTEGER NOT NULL,
    mem_peak       INTEGER NOT NULL,
    pids           INTEGER NOT NULL,
    pids_peak      INTEGER NOT NULL
) STRICT;
CREATE INDEX meter_sample_subject_ts ON meter_sample (subject, ts_ms);
CREATE INDEX meter_sample_ts ON meter_sample (ts_ms);

-- Rollups: sums of the interval columns, maxima of the peaks, per bucket (ts_ms = bucket start).
-- Average memory of a bucket = mem_byte_s * 1000 / dt_ms.
CREATE TABLE meter_rollup_1m (
    subject        TEXT NOT NULL,
    ts_ms          INTEGER NOT NULL,
    dt_ms          INTEGER NOT NULL,
    samples        INTEGER NOT NULL,
    cpu_usec       INTEGER NOT NULL,
    throttled_usec INTEGER NOT NULL,
    io_rbytes      INTEGER NOT NULL,
    io_wbytes      INTEGER NOT NULL,
    io_rios        INTEGER NOT NULL,
    io_wios        INTEGER NOT NULL,
    mem_byte_s     INTEGER NOT NULL,
    mem_peak       INTEGER NOT NULL,
    pids_peak      INTEGER NOT NULL,
    PRIMARY KEY (subject, ts_ms)
) STRICT, WITHOUT ROWID;
CREATE INDEX meter_rollup_1m_ts ON meter_rollup_1m (ts_ms);

CREATE TABLE meter_rollup_1h (
    subject        TEXT NOT NULL,
    ts_ms          INTEGER NOT NULL,
    dt_ms          INTEGER NOT NULL,
    samples        INTEGER NOT NULL,
    cpu_usec       INTEGER NOT NULL,
    throttled_usec INTEGER NOT NULL,
    io_rbytes      INTEGER NOT NULL,
    io_wbytes      INTEGER NOT NULL,
    io_rios        INTEGER NOT NULL,
    io_wios        INTEGER NOT NULL,
    mem_byte_s     INTEGER NOT NULL,
    mem_peak       INTEGER NOT NULL,
    pids_peak      INTEGER NOT NULL,
    PRIMARY KEY (subject, ts_ms)
) STRICT, WITHOUT ROWID;
CREATE INDEX meter_rollup_1h_ts ON meter_rollup_1h (ts_ms);

-- Up to where (Unix ms, exclusive) each rollup tier is complete.
CREATE TABLE meter_watermark (
    tier  TEXT PRIMARY KEY NOT NULL,
    ts_ms INTEGER NOT NULL
) STRICT;

-- The usage ledger: what each container used, per UTC hour, with its name, team and labels as
-- they were (denormalized so a renamed or removed container still bills). Retention never
-- deletes from it. The day and month tables are the same sums at coarser grain, written in the
-- same transaction, so a billing query over a year reads months, not hours. Queries filter by
-- period range (the primary key's first column) or by team; no per-container index: SQLite
-- would skip-scan it for range queries and be slower than the primary key (measured).
CREATE TABLE usage_ledger (
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
CREATE INDEX usage_ledger_team ON usage_ledger (team, period);

CREATE TABLE usage_ledger_day (
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
CREATE INDEX usage_ledger_day_team ON usage_ledger_day (team, period);

CREATE TABLE usage_ledger_month (
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
CREATE INDEX usage_ledger_month_team ON usage_ledger_month (team, period);

-- The host's busy CPU time per UTC hour (from /proc/stat), for statements to reconcile against.
CREATE TABLE host_ledger (
    period      INTEGER PRIMARY KEY NOT NULL,
    duration_ms INTEGER NOT NULL,
    cpu_usec    INTEGER NOT NULL
) STRICT;

-- The rate card, versioned: the version in force at a ledger hour's start prices that hour.
-- effective_from is a UTC hour boundary; a new version never starts in the past.
CREATE TABLE rate_card (
    effective_from                 INTEGER PRIMARY KEY NOT NULL,
    currency                       TEXT NOT NULL,
    cpu_core_hour_used_micros      INTEGER NOT NULL,
    cpu_core_hour_reserved_micros  INTEGER NOT NULL,
    mem_gib_hour_used_micros       INTEGER NOT NULL,
    mem_gib_hour_reserved_micros   INTEGER NOT NULL,
    io_gib_micros                  INTEGER NOT NULL,
    created_at_ms                  INTEGER NOT NULL
) STRICT;
