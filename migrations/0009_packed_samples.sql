-- Raw samples packed (issue 5, sampler cost; metering/packed.rs has the blob format). One row
-- per sample cost three B-tree inserts per container per tick, one of them on a different page
-- per subject. Now each sampler commit appends one meter_block row holding every sample it
-- wrote; once a minute the compactor moves the complete minutes into one meter_chunk row per
-- subject and minute and writes their 1-minute rollups in the same transaction. History reads
-- chunks and the blocks not yet compacted. The rows of meter_sample are moved into chunks by
-- this migration's hook (store.rs), which then drops the table.

CREATE TABLE meter_block (
    id       INTEGER PRIMARY KEY,
    first_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    samples  INTEGER NOT NULL,
    data     BLOB NOT NULL
) STRICT;

-- minute_ms: the minute of the samples' last millisecond, ((ts_ms - 1) / 60000) * 60000.
CREATE TABLE meter_chunk (
    subject   TEXT NOT NULL,
    minute_ms INTEGER NOT NULL,
    samples   INTEGER NOT NULL,
    data      BLOB NOT NULL,
    UNIQUE (subject, minute_ms)
) STRICT;
CREATE INDEX meter_chunk_minute ON meter_chunk (minute_ms);
