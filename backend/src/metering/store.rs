//! Metering's tables (migrations/0004_metering.sql, 0009_packed_samples.sql): the batch the
//! sampler commits in one transaction (a block of packed samples, ledger rows and the counter
//! checkpoints that produced them), the compaction, rollup and retention jobs, and history
//! queries.
//!
//! Architecture invariant: ledger rows and the checkpoint they advance from are written in the
//! same transaction, so a crash between any two statements neither loses nor repeats usage:
//! after a restart the next delta starts at exactly the checkpoint that was committed.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{
    MeteringError,
    account::{Reading, Usage, for_each_hour},
    calendar,
    packed::{self, Block, RawSample},
};

/// Who a ledger row is for: denormalized into every row so bills survive renames and removal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LedgerOwner {
    pub container_id: String,
    pub name: String,
    pub team: String,
    /// Canonical JSON object of the labels (sorted keys).
    pub labels: String,
}

/// Everything one sampler tick (or several, merged while the disk was full) writes.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Raw samples, packed: one block per sampler tick.
    pub blocks: Vec<Block>,
    /// Ledger usage per owner and hour, already merged.
    pub ledger: BTreeMap<LedgerOwner, BTreeMap<i64, Usage>>,
    /// Host busy CPU per hour: (duration ns, cpu µs).
    pub host: BTreeMap<i64, (u64, u64)>,
    /// New checkpoint per subject; `None` deletes it (the group is gone).
    pub checkpoints: BTreeMap<String, Option<Reading>>,
    /// Samples dropped because the buffer was full (history only; the ledger keeps everything).
    pub dropped_samples: u64,
}

impl Batch {
    /// Adds `usage`, which ended at `end_wall_ms`, to the ledger, split over the hours it covers.
    pub fn add_ledger(&mut self, owner: &LedgerOwner, end_wall_ms: i64, usage: &Usage) {
        if usage.is_zero() {
            return;
        }
        let hours = match self.ledger.get_mut(owner) {
            Some(h) => h,
            None => self.ledger.entry(owner.clone()).or_default(),
        };
        for_each_hour(end_wall_ms, usage, |hour, part| {
            hours.entry(hour).or_default().add(&part);
        });
    }

    /// Adds host busy CPU for an interval that ended at `end_wall_ms`.
    pub fn add_host(&mut self, end_wall_ms: i64, usage: &Usage) {
        for_each_hour(end_wall_ms, usage, |hour, part| {
            let e = self.host.entry(hour).or_default();
            e.0 += part.duration_ns;
            e.1 += part.cpu_usec;
        });
    }

    /// Adds one sample to the newest block (tests, tools; the sampler fills its own block).
    pub fn add_sample(&mut self, subject: &str, sample: &RawSample) {
        if self.blocks.is_empty() {
            self.blocks.push(Block::default());
        }
        if let Some(b) = self.blocks.last_mut() {
            b.push(subject, sample);
        }
    }

    /// Raw samples held.
    pub fn samples(&self) -> usize {
        self.blocks.iter().map(|b| b.samples).sum()
    }

    /// Appends `later` (a newer batch): ledger sums add, newer checkpoints win, sample blocks
    /// append and the oldest blocks are dropped while more than `max_samples` are held.
    pub fn merge(&mut self, later: Batch, max_samples: usize) {
        self.blocks
            .extend(later.blocks.into_iter().filter(|b| !b.is_empty()));
        let mut held = self.samples();
        let mut drop = 0;
        while held > max_samples && drop < self.blocks.len() {
            held -= self.blocks[drop].samples;
            self.dropped_samples += self.blocks[drop].samples as u64;
            drop += 1;
        }
        self.blocks.drain(..drop);
        for (owner, hours) in later.ledger {
            let mine = self.ledger.entry(owner).or_default();
            for (h, u) in hours {
                mine.entry(h).or_default().add(&u);
            }
        }
        for (h, (d, c)) in later.host {
            let e = self.host.entry(h).or_default();
            e.0 += d;
            e.1 += c;
        }
        self.checkpoints.extend(later.checkpoints);
        self.dropped_samples += later.dropped_samples;
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.iter().all(Block::is_empty)
            && self.ledger.is_empty()
            && self.host.is_empty()
            && self.checkpoints.is_empty()
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The ledger tables, finest first: the hourly ledger and the same sums per coarser period
/// (migrations 0004 and 0007), all written in the same transaction.
pub const LEDGER_TABLES: [(&str, calendar::Grain); 5] = [
    ("usage_ledger", calendar::Grain::Hour),
    ("usage_ledger_6h", calendar::Grain::SixHours),
    ("usage_ledger_day", calendar::Grain::Day),
    ("usage_ledger_10d", calendar::Grain::TenDays),
    ("usage_ledger_month", calendar::Grain::Month),
];

/// The ledger table holding periods of `grain`.
pub fn ledger_table(grain: calendar::Grain) -> &'static str {
    LEDGER_TABLES
        .iter()
        .find(|(_, g)| *g == grain)
        .map_or("usage_ledger", |(t, _)| t)
}

/// Commits `batch` in one transaction. Durable (`synchronous=FULL`, the store's setting) when
/// it holds ledger rows or checkpoints; a batch of history samples only is committed with
/// `synchronous=NORMAL` — no fsync of its own, so a power cut (not a daemon crash) may lose
/// the last seconds of history, never usage. WAL keeps the order: the next durable commit
/// syncs the earlier frames too.
pub fn commit(conn: &mut Connection, batch: &Batch) -> Result<(), MeteringError> {
    let history_only =
        batch.ledger.is_empty() && batch.host.is_empty() && batch.checkpoints.is_empty();
    if history_only {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    let written = (|| {
        let tx = conn.transaction()?;
        write_batch(&tx, batch)?;
        tx.commit()?;
        Ok::<(), MeteringError>(())
    })();
    if history_only {
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    written?;
    Ok(())
}

fn write_batch(tx: &Transaction<'_>, batch: &Batch) -> Result<(), MeteringError> {
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO meter_block (first_ms, last_ms, samples, data) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for b in batch.blocks.iter().filter(|b| !b.is_empty()) {
            st.execute(params![b.first_ms, b.last_ms, i(b.samples as u64), b.bytes])?;
        }
    }
    for (table, grain) in LEDGER_TABLES {
        let sql = format!(
            "INSERT INTO {table} (period, container_id, team, labels, name, duration_ms, cpu_usec,
               throttled_usec, cpu_reserved_core_usec, mem_byte_s, mem_reserved_byte_s, io_rbytes,
               io_wbytes, io_rios, io_wios, oom_kills, mem_peak, pids_peak)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
             ON CONFLICT (period, container_id, team, labels) DO UPDATE SET
               name = excluded.name,
               duration_ms = duration_ms + excluded.duration_ms,
               cpu_usec = cpu_usec + excluded.cpu_usec,
               throttled_usec = throttled_usec + excluded.throttled_usec,
               cpu_reserved_core_usec = cpu_reserved_core_usec + excluded.cpu_reserved_core_usec,
               mem_byte_s = mem_byte_s + excluded.mem_byte_s,
               mem_reserved_byte_s = mem_reserved_byte_s + excluded.mem_reserved_byte_s,
               io_rbytes = io_rbytes + excluded.io_rbytes,
               io_wbytes = io_wbytes + excluded.io_wbytes,
               io_rios = io_rios + excluded.io_rios,
               io_wios = io_wios + excluded.io_wios,
               oom_kills = oom_kills + excluded.oom_kills,
               mem_peak = max(mem_peak, excluded.mem_peak),
               pids_peak = max(pids_peak, excluded.pids_peak)"
        );
        let mut st = tx.prepare_cached(&sql)?;
        for (o, hour, u) in batch
            .ledger
            .iter()
            .flat_map(|(o, hours)| hours.iter().map(move |(h, u)| (o, h, u)))
        {
            st.execute(params![
                grain.start(*hour),
                o.container_id,
                o.team,
                o.labels,
                o.name,
                i(u.duration_ns / 1_000_000),
                i(u.cpu_usec),
                i(u.throttled_usec),
                i(u.cpu_reserved_core_usec),
                i(u.memory_byte_seconds),
                i(u.memory_reserved_byte_seconds),
                i(u.io_rbytes),
                i(u.io_wbytes),
                i(u.io_rios),
                i(u.io_wios),
                i(u.oom_kills),
                i(u.memory_peak),
                i(u.pids_peak),
            ])?;
        }
    }
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO host_ledger (period, duration_ms, cpu_usec) VALUES (?1, ?2, ?3)
             ON CONFLICT (period) DO UPDATE SET duration_ms = duration_ms + excluded.duration_ms,
               cpu_usec = cpu_usec + excluded.cpu_usec",
        )?;
        for (hour, (dur_ns, cpu)) in &batch.host {
            st.execute(params![hour, i(dur_ns / 1_000_000), i(*cpu)])?;
        }
    }
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO meter_checkpoint (subject, reading) VALUES (?1, ?2)
             ON CONFLICT (subject) DO UPDATE SET reading = excluded.reading",
        )?;
        let mut del = tx.prepare_cached("DELETE FROM meter_checkpoint WHERE subject = ?1")?;
        for (subject, reading) in &batch.checkpoints {
            match reading {
                Some(r) => {
                    let json = serde_json::to_string(r).map_err(MeteringError::Json)?;
                    put.execute(params![subject, json])?;
                }
                None => {
                    del.execute(params![subject])?;
                }
            }
        }
    }
    Ok(())
}

const LEDGER_SUMS: &str = "max(name), sum(duration_ms), sum(cpu_usec), sum(throttled_usec),
    sum(cpu_reserved_core_usec), sum(mem_byte_s), sum(mem_reserved_byte_s), sum(io_rbytes),
    sum(io_wbytes), sum(io_rios), sum(io_wios), sum(oom_kills), max(mem_peak), max(pids_peak)";

/// Recomputes the coarser ledger tables (6 h, day, 10 days, month) from the hourly one
/// (repair after a bulk import, benchmarks). The live path keeps them in step by itself.
pub fn rebuild_coarse_ledgers(conn: &Connection) -> Result<(), MeteringError> {
    conn.execute_batch(&format!(
        "DELETE FROM usage_ledger_6h;
         INSERT INTO usage_ledger_6h SELECT {SIX_HOURS} AS p, container_id, team, labels,
           {LEDGER_SUMS} FROM usage_ledger GROUP BY p, container_id, team, labels;
         DELETE FROM usage_ledger_day;
         INSERT INTO usage_ledger_day SELECT {DAY} AS p, container_id, team,
           labels, {LEDGER_SUMS} FROM usage_ledger_6h GROUP BY p, container_id, team, labels;
         DELETE FROM usage_ledger_10d;
         INSERT INTO usage_ledger_10d SELECT {TEN_DAYS} AS p, container_id, team,
           labels, {LEDGER_SUMS} FROM usage_ledger_day GROUP BY p, container_id, team, labels;
         DELETE FROM usage_ledger_month;
         INSERT INTO usage_ledger_month SELECT {MONTH} AS p, container_id, team, labels,
           {LEDGER_SUMS} FROM usage_ledger_10d GROUP BY p, container_id, team, labels;"
    ))?;
    Ok(())
}

/// Period starts in SQL (as `migrations/0007_ledger_tiers.sql` computes them), of `period`.
const SIX_HOURS: &str = "period - ((period % 21600) + 21600) % 21600";
const DAY: &str = "period - ((period % 86400) + 86400) % 86400";
const TEN_DAYS: &str = "CAST(strftime('%s', period, 'unixepoch', 'start of month') AS INTEGER)
    + 86400 * min(20, (CAST(strftime('%d', period, 'unixepoch') AS INTEGER) - 1) / 10 * 10)";
const MONTH: &str = "CAST(strftime('%s', period, 'unixepoch', 'start of month') AS INTEGER)";

pub fn load_checkpoints(conn: &Connection) -> Result<BTreeMap<String, Reading>, MeteringError> {
    let mut st = conn.prepare("SELECT subject, reading FROM meter_checkpoint")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (subject, json) = row?;
        // An unreadable checkpoint is treated as absent: the next reading counts in full.
        if let Ok(r) = serde_json::from_str(&json) {
            out.insert(subject, r);
        }
    }
    Ok(out)
}

/// How long each history tier is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub raw_ms: i64,
    pub minute_ms: i64,
    pub hour_ms: i64,
}

impl Retention {
    /// Retention in whole days per tier.
    pub fn days(raw: u64, minute: u64, hour: u64) -> Retention {
        let ms = |d: u64| {
            i64::try_from(d)
                .unwrap_or(36_500)
                .saturating_mul(86_400_000)
        };
        Retention {
            raw_ms: ms(raw),
            minute_ms: ms(minute),
            hour_ms: ms(hour),
        }
    }
}

impl Default for Retention {
    /// Raw samples 7 days, 1-minute rollups 90 days, 1-hour rollups 2 years.
    fn default() -> Self {
        const DAY_MS: i64 = 86_400_000;
        Retention {
            raw_ms: 7 * DAY_MS,
            minute_ms: 90 * DAY_MS,
            hour_ms: 731 * DAY_MS,
        }
    }
}

const ROLLUP_COLS: &str = "dt_ms, samples, cpu_usec, throttled_usec, io_rbytes, io_wbytes, io_rios, io_wios, mem_byte_s, mem_peak, pids_peak, psi_samples, psi_cpu_avg, psi_cpu_max, psi_mem_avg, psi_mem_max, psi_io_avg, psi_io_max";

/// The weighted average of a finer rollup's pressure averages (`NULL` where none has one).
fn psi_weighted_avg(col: &str) -> String {
    format!(
        "sum({col} * psi_samples) * 1.0 / sum(CASE WHEN {col} IS NOT NULL THEN psi_samples END)"
    )
}

/// The pressure columns of a rollup computed from a finer rollup.
fn psi_from_rollup() -> String {
    let avg = |c: &str| format!("CAST(round({}) AS INTEGER)", psi_weighted_avg(c));
    format!(
        "sum(psi_samples), {}, max(psi_cpu_max), {}, max(psi_mem_max), {}, max(psi_io_max)",
        avg("psi_cpu_avg"),
        avg("psi_mem_avg"),
        avg("psi_io_avg")
    )
}

/// Compacts raw samples into complete minutes (with their 1-minute rollups), then rolls minutes
/// up into complete hours, up to `now_ms`. Idempotent: the hour tier recomputes every bucket
/// since its watermark (minus one bucket, for minutes completed late) with `INSERT OR REPLACE`.
pub fn rollup(conn: &mut Connection, now_ms: i64) -> Result<(), MeteringError> {
    compact(conn, now_ms)?;
    let tx = conn.transaction()?;
    rollup_tier(
        &tx,
        "1h",
        "meter_rollup_1m",
        "meter_rollup_1h",
        3_600_000,
        now_ms,
    )?;
    tx.commit()?;
    Ok(())
}

/// Moves the samples of every block that ended before `now_ms`'s minute into one chunk per
/// subject and minute, rewrites the 1-minute rollups of those minutes and deletes the blocks:
/// one transaction, so a sample is never in history twice or lost. A sample arriving for a
/// minute already compacted (a block merged after a full disk, a clock step) joins its chunk.
/// Returns the number of samples moved.
pub fn compact(conn: &mut Connection, now_ms: i64) -> Result<usize, MeteringError> {
    let end = now_ms.div_euclid(60_000) * 60_000;
    let tx = conn.transaction()?;
    let blocks: Vec<Vec<u8>> = {
        let mut st = tx.prepare_cached("SELECT data FROM meter_block WHERE last_ms <= ?1")?;
        st.query_map([end], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    let mut minutes: BTreeMap<(&str, i64), Vec<RawSample>> = BTreeMap::new();
    let mut moved = 0;
    for data in &blocks {
        let decoded = packed::decode_block(data, |subject, s| {
            moved += 1;
            minutes.entry((subject, s.minute())).or_default().push(s);
        });
        if let Err(e) = decoded {
            // History only (the ledger is separate): keep what decoded, say what did not.
            tracing::warn!(error = %e, "dropping the undecodable rest of a raw sample block");
        }
    }
    for ((subject, minute), samples) in minutes {
        write_minute(&tx, subject, minute, samples)?;
    }
    tx.execute("DELETE FROM meter_block WHERE last_ms <= ?1", [end])?;
    tx.execute(
        "INSERT INTO meter_watermark (tier, ts_ms) VALUES ('1m', ?1)
         ON CONFLICT (tier) DO UPDATE SET ts_ms = max(ts_ms, excluded.ts_ms)",
        [end],
    )?;
    tx.commit()?;
    Ok(moved)
}

/// Writes `samples` (one subject, one minute) into that minute's chunk, joining any samples it
/// already holds, and the minute's rollup from all of them.
fn write_minute(
    tx: &Transaction<'_>,
    subject: &str,
    minute: i64,
    mut samples: Vec<RawSample>,
) -> Result<(), MeteringError> {
    let old: Option<Vec<u8>> = tx
        .prepare_cached("SELECT data FROM meter_chunk WHERE subject = ?1 AND minute_ms = ?2")?
        .query_row(params![subject, minute], |r| r.get(0))
        .optional()?;
    if let Some(old) = old {
        let mut all = Vec::with_capacity(samples.len() + 64);
        if let Err(e) = packed::decode_chunk(&old, &mut all) {
            tracing::warn!(error = %e, subject, minute, "replacing an undecodable raw sample chunk");
        }
        all.append(&mut samples);
        samples = all;
    }
    samples.sort_by_key(|s| s.ts_ms);
    tx.prepare_cached(
        "INSERT INTO meter_chunk (subject, minute_ms, samples, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (subject, minute_ms) DO UPDATE SET samples = excluded.samples,
           data = excluded.data",
    )?
    .execute(params![
        subject,
        minute,
        i(samples.len() as u64),
        packed::encode_chunk(&samples)
    ])?;
    let r = Bucket::of(&samples);
    let psi = r.psi_columns();
    tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO meter_rollup_1m (subject, ts_ms, {ROLLUP_COLS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
           ?19, ?20)"
    ))?
    .execute(params![
        subject,
        minute,
        r.dt_ms,
        i(samples.len() as u64),
        r.cpu_usec,
        r.throttled_usec,
        r.io_rbytes,
        r.io_wbytes,
        r.io_rios,
        r.io_wios,
        r.mem_byte_s,
        r.mem_peak,
        r.pids_peak,
        r.psi_samples,
        psi[0],
        psi[1],
        psi[2],
        psi[3],
        psi[4],
        psi[5],
    ])?;
    Ok(())
}

/// Sums and maxima of raw samples: one rollup minute or one history bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    dt_ms: i64,
    cpu_usec: i64,
    throttled_usec: i64,
    io_rbytes: i64,
    io_wbytes: i64,
    io_rios: i64,
    io_wios: i64,
    mem_byte_s: i64,
    mem_peak: i64,
    pids_peak: i64,
    /// Samples with any pressure value.
    psi_samples: i64,
    /// Per cpu, memory, io: sum and count of the samples with a value, and the maximum.
    psi: [(i64, i64, Option<i64>); 3],
}

impl Bucket {
    fn of(samples: &[RawSample]) -> Bucket {
        let mut b = Bucket::default();
        for s in samples {
            b.add(s);
        }
        b
    }

    fn add(&mut self, s: &RawSample) {
        self.dt_ms += s.dt_ms;
        self.cpu_usec += s.cpu_usec;
        self.throttled_usec += s.throttled_usec;
        self.io_rbytes += s.io_rbytes;
        self.io_wbytes += s.io_wbytes;
        self.io_rios += s.io_rios;
        self.io_wios += s.io_wios;
        self.mem_byte_s += s.mem_byte_s;
        self.mem_peak = self.mem_peak.max(s.mem_peak);
        self.pids_peak = self.pids_peak.max(s.pids_peak);
        if s.psi.iter().any(Option::is_some) {
            self.psi_samples += 1;
        }
        for (acc, v) in self.psi.iter_mut().zip(s.psi) {
            if let Some(v) = v {
                let v = i64::from(v);
                acc.0 += v;
                acc.1 += 1;
                acc.2 = Some(acc.2.map_or(v, |m| m.max(v)));
            }
        }
    }

    /// Average (unrounded) and maximum pressure per kind.
    fn psi_avg_max(&self) -> [(Option<f64>, Option<i64>); 3] {
        self.psi.map(|(sum, n, max)| {
            let avg = (n > 0).then(|| sum as f64 / n as f64);
            (avg, max)
        })
    }

    /// The rollup's pressure columns: rounded average and maximum of cpu, memory, io.
    fn psi_columns(&self) -> [Option<i64>; 6] {
        let [c, m, i] = self.psi_avg_max();
        let r = |a: Option<f64>| a.map(|a| a.round() as i64);
        [r(c.0), c.1, r(m.0), m.1, r(i.0), i.1]
    }
}

/// Migration 0009's hook: moves every row of the old one-row-per-sample table into chunks (with
/// the 1-minute rollups rewritten from the same rows, as the compactor writes them) and drops
/// the table, in the migration's transaction.
pub fn move_row_samples(tx: &Transaction<'_>) -> rusqlite_migration::HookResult {
    let mut st = tx.prepare(
        "SELECT subject, ts_ms, dt_ms, cpu_usec, throttled_usec, io_rbytes, io_wbytes, io_rios,
           io_wios, mem_byte_s, mem_bytes, mem_peak, pids, pids_peak, psi_cpu, psi_mem, psi_io
         FROM meter_sample ORDER BY subject, ts_ms",
    )?;
    let mut rows = st.query([])?;
    let mut current: Option<(String, i64)> = None;
    let mut samples = Vec::new();
    let flush = |key: Option<(String, i64)>, samples: &mut Vec<RawSample>| match key {
        Some((subject, minute)) if !samples.is_empty() => {
            write_minute(tx, &subject, minute, std::mem::take(samples))
                .map_err(|e| rusqlite_migration::HookError::Hook(e.to_string()))
        }
        _ => Ok(()),
    };
    while let Some(r) = rows.next()? {
        let subject: String = r.get(0)?;
        let s = RawSample {
            ts_ms: r.get(1)?,
            dt_ms: r.get(2)?,
            cpu_usec: r.get(3)?,
            throttled_usec: r.get(4)?,
            io_rbytes: r.get(5)?,
            io_wbytes: r.get(6)?,
            io_rios: r.get(7)?,
            io_wios: r.get(8)?,
            mem_byte_s: r.get(9)?,
            mem_bytes: r.get(10)?,
            mem_peak: r.get(11)?,
            pids: r.get(12)?,
            pids_peak: r.get(13)?,
            psi: [r.get(14)?, r.get(15)?, r.get(16)?],
        };
        let key = (subject, s.minute());
        if current.as_ref() != Some(&key) {
            flush(current.replace(key), &mut samples)?;
        }
        samples.push(s);
    }
    flush(current, &mut samples)?;
    drop(rows);
    drop(st);
    tx.execute_batch("DROP TABLE meter_sample")?;
    Ok(())
}

fn rollup_tier(
    tx: &Transaction<'_>,
    tier: &str,
    from_table: &str,
    to_table: &str,
    bucket_ms: i64,
    now_ms: i64,
) -> Result<(), MeteringError> {
    let mark: Option<i64> = tx
        .query_row(
            "SELECT ts_ms FROM meter_watermark WHERE tier = ?1",
            [tier],
            |r| r.get(0),
        )
        .optional()?;
    let end = now_ms.div_euclid(bucket_ms) * bucket_ms;
    let start = match mark {
        Some(m) => m - bucket_ms,
        None => {
            let first: Option<i64> =
                tx.query_row(&format!("SELECT min(ts_ms) FROM {from_table}"), [], |r| {
                    r.get(0)
                })?;
            match first {
                Some(f) => f.div_euclid(bucket_ms) * bucket_ms,
                None => end,
            }
        }
    };
    if start < end {
        let bucket_expr = format!("(ts_ms / {bucket_ms}) * {bucket_ms}");
        let psi_expr = psi_from_rollup();
        tx.execute(
            &format!(
                "INSERT OR REPLACE INTO {to_table} (subject, ts_ms, {ROLLUP_COLS})
                 SELECT subject, {bucket_expr}, sum(dt_ms), sum(samples), sum(cpu_usec),
                   sum(throttled_usec), sum(io_rbytes), sum(io_wbytes), sum(io_rios), sum(io_wios),
                   sum(mem_byte_s), max(mem_peak), max(pids_peak), {psi_expr}
                 FROM {from_table} WHERE ts_ms >= ?1 AND ts_ms < ?2
                 GROUP BY subject, {bucket_expr}"
            ),
            params![start, end],
        )?;
    }
    tx.execute(
        "INSERT INTO meter_watermark (tier, ts_ms) VALUES (?1, ?2)
         ON CONFLICT (tier) DO UPDATE SET ts_ms = max(ts_ms, excluded.ts_ms)",
        params![tier, end],
    )?;
    Ok(())
}

/// Deletes samples and rollups older than their retention. The ledger is never touched.
/// Returns the number of rows deleted per tier (raw, 1m, 1h).
pub fn apply_retention(
    conn: &Connection,
    now_ms: i64,
    keep: &Retention,
) -> Result<(usize, usize, usize), MeteringError> {
    let cutoff = now_ms - keep.raw_ms;
    let raw = conn.execute("DELETE FROM meter_chunk WHERE minute_ms < ?1", [cutoff])?
        + conn.execute("DELETE FROM meter_block WHERE last_ms < ?1", [cutoff])?;
    let m = conn.execute(
        "DELETE FROM meter_rollup_1m WHERE ts_ms < ?1",
        [now_ms - keep.minute_ms],
    )?;
    let h = conn.execute(
        "DELETE FROM meter_rollup_1h WHERE ts_ms < ?1",
        [now_ms - keep.hour_ms],
    )?;
    Ok((raw, m, h))
}

/// One point of a history series: usage within `[ts_ms, ts_ms + step)`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HistoryPoint {
    pub ts_ms: i64,
    /// Time covered by samples, ms.
    pub covered_ms: i64,
    pub cpu_usec: i64,
    pub throttled_usec: i64,
    pub io_rbytes: i64,
    pub io_wbytes: i64,
    /// Average memory over the covered time, bytes.
    pub mem_avg: i64,
    pub mem_peak: i64,
    pub pids_peak: i64,
    /// Average and maximum PSI `some avg10` of cpu, memory and io over the bucket, hundredths
    /// of a percent; `None` where no sample of the bucket had pressure.
    pub pressure_avg: [Option<f64>; 3],
    pub pressure_max: [Option<i64>; 3],
}

/// The raw tier's name for [`pick_tier`] and [`history`]: packed chunks and blocks.
pub const RAW: &str = "raw";

/// The tier a history query reads: the finest one that still holds `from_ms` and is not finer
/// than `step_ms` needs.
pub fn pick_tier(now_ms: i64, from_ms: i64, step_ms: i64, keep: &Retention) -> &'static str {
    if step_ms < 60_000 && from_ms >= now_ms - keep.raw_ms {
        RAW
    } else if step_ms < 3_600_000 && from_ms >= now_ms - keep.minute_ms {
        "meter_rollup_1m"
    } else {
        "meter_rollup_1h"
    }
}

/// The history of `subject` over `[from_ms, to_ms)` in buckets of `step_ms`.
pub fn history(
    conn: &Connection,
    table: &str,
    subject: &str,
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
) -> Result<Vec<HistoryPoint>, MeteringError> {
    let step = step_ms.max(1);
    if table == RAW {
        return history_raw(conn, subject, from_ms, to_ms, step);
    }
    let bucket = format!("(ts_ms / {step}) * {step}");
    let psi = format!(
        "{}, max(psi_cpu_max), {}, max(psi_mem_max), {}, max(psi_io_max)",
        psi_weighted_avg("psi_cpu_avg"),
        psi_weighted_avg("psi_mem_avg"),
        psi_weighted_avg("psi_io_avg")
    );
    let mut st = conn.prepare(&format!(
        "SELECT {bucket} AS b, sum(dt_ms), sum(cpu_usec), sum(throttled_usec), sum(io_rbytes),
           sum(io_wbytes), sum(mem_byte_s), max(mem_peak), max(pids_peak), {psi}
         FROM {table} WHERE subject = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
         GROUP BY b ORDER BY b"
    ))?;
    let rows = st.query_map(params![subject, from_ms, to_ms], |r| {
        let covered: i64 = r.get(1)?;
        let mem_byte_s: i64 = r.get(6)?;
        Ok(HistoryPoint {
            ts_ms: r.get(0)?,
            covered_ms: covered,
            cpu_usec: r.get(2)?,
            throttled_usec: r.get(3)?,
            io_rbytes: r.get(4)?,
            io_wbytes: r.get(5)?,
            mem_avg: mem_avg(mem_byte_s, covered),
            mem_peak: r.get(7)?,
            pids_peak: r.get(8)?,
            pressure_avg: [r.get(9)?, r.get(11)?, r.get(13)?],
            pressure_max: [r.get(10)?, r.get(12)?, r.get(14)?],
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When `subject`'s first stored sample at or after `from_ms` ended: the oldest 1-minute
/// rollup, or, when nothing has been compacted yet, the oldest raw sample of the last five
/// minutes. `None` when there is none.
pub fn first_sample_ms(
    conn: &Connection,
    subject: &str,
    from_ms: i64,
    now_ms: i64,
) -> Result<Option<i64>, MeteringError> {
    let rolled: Option<i64> = conn.query_row(
        "SELECT min(ts_ms) FROM meter_rollup_1m WHERE subject = ?1 AND ts_ms >= ?2",
        params![subject, from_ms],
        |r| r.get(0),
    )?;
    if rolled.is_some() {
        return Ok(rolled);
    }
    let recent = from_ms.max(now_ms - 300_000);
    Ok(
        raw_samples(conn, subject, recent, now_ms.saturating_add(1))?
            .first()
            .map(|s| s.ts_ms - s.dt_ms),
    )
}

/// Whose OOM kills [`oom_kills`] counts.
#[derive(Debug, Clone, Copy)]
pub enum OomScope<'a> {
    Container(&'a str),
    Team(&'a str),
}

/// OOM kills the hourly ledger holds for a container (by id) or for a team's containers, in
/// the hours from the one holding `from_ms` on.
pub fn oom_kills(conn: &Connection, who: OomScope<'_>, from_ms: i64) -> Result<u64, MeteringError> {
    let (column, key) = match who {
        OomScope::Container(id) => ("container_id", id),
        OomScope::Team(t) => ("team", t),
    };
    let hour = from_ms.div_euclid(3_600_000) * 3600;
    let n: i64 = conn.query_row(
        &format!(
            "SELECT coalesce(sum(oom_kills), 0) FROM usage_ledger WHERE period >= ?1 AND {column} = ?2"
        ),
        params![hour, key],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// The raw samples of `subject` with `from_ms <= ts_ms < to_ms`, oldest first: its chunks
/// and the blocks not compacted yet.
pub fn raw_samples(
    conn: &Connection,
    subject: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<RawSample>, MeteringError> {
    let mut out = Vec::new();
    let mut st = conn.prepare_cached(
        "SELECT data FROM meter_chunk WHERE subject = ?1 AND minute_ms >= ?2 AND minute_ms < ?3
         ORDER BY minute_ms",
    )?;
    let mut rows = st.query(params![subject, from_ms.saturating_sub(60_000), to_ms])?;
    while let Some(r) = rows.next()? {
        let data: Vec<u8> = r.get(0)?;
        if let Err(e) = packed::decode_chunk(&data, &mut out) {
            tracing::warn!(error = %e, subject, "skipping an undecodable raw sample chunk");
        }
    }
    let mut st = conn.prepare_cached(
        "SELECT data FROM meter_block WHERE last_ms >= ?1 AND first_ms < ?2 ORDER BY id",
    )?;
    let mut rows = st.query(params![from_ms, to_ms])?;
    while let Some(r) = rows.next()? {
        let data: Vec<u8> = r.get(0)?;
        let decoded = packed::decode_block(&data, |s, sample| {
            if s == subject {
                out.push(sample);
            }
        });
        if let Err(e) = decoded {
            tracing::warn!(error = %e, "skipping the undecodable rest of a raw sample block");
        }
    }
    out.retain(|s| (from_ms..to_ms).contains(&s.ts_ms));
    out.sort_by_key(|s| s.ts_ms);
    Ok(out)
}

/// [`history`] from the raw tier: the buckets of each sample's last millisecond.
fn history_raw(
    conn: &Connection,
    subject: &str,
    from_ms: i64,
    to_ms: i64,
    step: i64,
) -> Result<Vec<HistoryPoint>, MeteringError> {
    let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
    for s in raw_samples(conn, subject, from_ms, to_ms)? {
        let b = (s.ts_ms - 1).div_euclid(step) * step;
        buckets.entry(b).or_default().add(&s);
    }
    Ok(buckets
        .into_iter()
        .map(|(ts_ms, b)| {
            let psi = b.psi_avg_max();
            HistoryPoint {
                ts_ms,
                covered_ms: b.dt_ms,
                cpu_usec: b.cpu_usec,
                throttled_usec: b.throttled_usec,
                io_rbytes: b.io_rbytes,
                io_wbytes: b.io_wbytes,
                mem_avg: mem_avg(b.mem_byte_s, b.dt_ms),
                mem_peak: b.mem_peak,
                pids_peak: b.pids_peak,
                pressure_avg: psi.map(|p| p.0),
                pressure_max: psi.map(|p| p.1),
            }
        })
        .collect())
}

/// Average memory over `covered_ms` from its integral.
fn mem_avg(mem_byte_s: i64, covered_ms: i64) -> i64 {
    if covered_ms > 0 {
        (i128::from(mem_byte_s) * 1000 / i128::from(covered_ms)) as i64
    } else {
        0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metering::account::{Counters, Reserved};

    pub(crate) fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        let migrations = crate::store::migrations();
        migrations.to_latest(&mut conn).unwrap();
        conn
    }

    fn usage(dt_s: u64, cpu: u64, mem_bytes_avg: u64, peak: u64) -> Usage {
        Usage {
            duration_ns: dt_s * 1_000_000_000,
            cpu_usec: cpu,
            memory_byte_seconds: mem_bytes_avg * dt_s,
            memory_peak: peak,
            io_rbytes: cpu / 10,
            ..Usage::default()
        }
    }

    /// Every raw sample stored, chunks and blocks, with its subject.
    fn all_raw(conn: &Connection) -> Vec<(String, RawSample)> {
        let mut out = Vec::new();
        let mut st = conn
            .prepare("SELECT subject, data FROM meter_chunk")
            .unwrap();
        let chunks = st
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .unwrap();
        for c in chunks {
            let (subject, data) = c.unwrap();
            let mut v = Vec::new();
            packed::decode_chunk(&data, &mut v).unwrap();
            out.extend(v.into_iter().map(|x| (subject.clone(), x)));
        }
        let mut st = conn.prepare("SELECT data FROM meter_block").unwrap();
        for d in st.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
            packed::decode_block(&d.unwrap(), |s, x| out.push((s.to_owned(), x))).unwrap();
        }
        out
    }

    /// The sum of one column over the raw samples (of `subject`, or all).
    fn raw_sum(conn: &Connection, subject: Option<&str>, col: &str) -> i64 {
        all_raw(conn)
            .iter()
            .filter(|(s, _)| subject.is_none_or(|want| want == s))
            .map(|(_, x)| match col {
                "cpu_usec" => x.cpu_usec,
                "io_rbytes" => x.io_rbytes,
                "mem_byte_s" => x.mem_byte_s,
                "dt_ms" => x.dt_ms,
                _ => panic!("no raw column {col}"),
            })
            .sum()
    }

    fn sum(conn: &Connection, table: &str, col: &str) -> i64 {
        conn.query_row(
            &format!("SELECT coalesce(sum({col}), 0) FROM {table}"),
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// Generated data: 3 subjects sampled every 5 s for 3 hours, with pseudo-random usage.
    /// Every tier must carry the same sums and maxima, and bucket starts must align.
    #[test]
    fn tiers_roll_up_exactly_over_generated_data() {
        let mut conn = db();
        let t0 = 1_800_000_000_000i64; // a whole hour in ms
        let mut batch = Batch::default();
        let mut seed = 42u64;
        let mut max_peak = 0;
        for step in 1..=(3 * 720) {
            // One block per tick, as the sampler commits them.
            batch.blocks.push(Block::default());
            for s in ["c:a", "c:b", "t:team"] {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let cpu = seed >> 44;
                let mem = (seed >> 20) & 0xfff_ffff;
                let peak = mem + (seed & 0xffff);
                max_peak = max_peak.max(peak);
                batch.add_sample(
                    s,
                    &RawSample::new(
                        t0 + step * 5_000,
                        &usage(5, cpu, mem, peak),
                        mem,
                        1,
                        [None; 3],
                    ),
                );
            }
        }
        commit(&mut conn, &batch).unwrap();
        // Roll up in several runs, as the job would, then once more (idempotent).
        for m in (1..=200).step_by(7) {
            rollup(&mut conn, t0 + m * 60_000).unwrap();
        }
        rollup(&mut conn, t0 + 4 * 3_600_000).unwrap();
        rollup(&mut conn, t0 + 4 * 3_600_000).unwrap();
        for col in ["cpu_usec", "io_rbytes", "mem_byte_s", "dt_ms"] {
            let raw = raw_sum(&conn, None, col);
            assert_eq!(raw, sum(&conn, "meter_rollup_1m", col), "{col} raw → 1m");
            assert_eq!(raw, sum(&conn, "meter_rollup_1m", col), "{col} 1m → 1h");
            assert_eq!(raw, sum(&conn, "meter_rollup_1h", col), "{col} raw → 1h");
        }
        assert_eq!(sum(&conn, "meter_rollup_1h", "samples"), 3 * 3 * 720);
        let n1m: i64 = conn
            .query_row("SELECT count(*) FROM meter_rollup_1m", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n1m, 3 * 180, "one row per subject-minute");
        let n1h: i64 = conn
            .query_row("SELECT count(*) FROM meter_rollup_1h", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n1h, 3 * 3);
        let peak: i64 = conn
            .query_row("SELECT max(mem_peak) FROM meter_rollup_1h", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(peak as u64, max_peak);
        // Each 1m bucket holds exactly 12 samples of 5 s.
        let bad: i64 = conn
            .query_row(
                "SELECT count(*) FROM meter_rollup_1m WHERE samples != 12 OR dt_ms != 60000 OR ts_ms % 60000 != 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(bad, 0);
        // History reads the same totals from every tier.
        let now = t0 + 4 * 3_600_000;
        let keep = Retention::default();
        for (table, step) in [
            (RAW, 5_000),
            ("meter_rollup_1m", 60_000),
            ("meter_rollup_1h", 3_600_000),
        ] {
            let pts = history(&conn, table, "c:a", t0, now, step).unwrap();
            let cpu: i64 = pts.iter().map(|p| p.cpu_usec).sum();
            assert_eq!(cpu, raw_sum(&conn, Some("c:a"), "cpu_usec"), "{table}");
        }
        assert_eq!(pick_tier(now, now - 3_600_000, 5_000, &keep), RAW);
        assert_eq!(
            pick_tier(now, now - 3_600_000, 60_000, &keep),
            "meter_rollup_1m"
        );
        assert_eq!(
            pick_tier(now, now - 30 * 86_400_000, 10_000, &keep),
            "meter_rollup_1m"
        );
        assert_eq!(
            pick_tier(now, now - 100 * 86_400_000, 60_000, &keep),
            "meter_rollup_1h"
        );

        // Retention: raw older than 2 h goes (whole minutes), rollups stay, the ledger is
        // untouched.
        let owner = LedgerOwner {
            container_id: "a".into(),
            name: "web".into(),
            team: "t".into(),
            labels: "{}".into(),
        };
        let mut b = Batch::default();
        b.add_ledger(&owner, t0, &usage(5, 77, 0, 0));
        commit(&mut conn, &b).unwrap();
        let keep = Retention {
            raw_ms: 2 * 3_600_000,
            ..Retention::default()
        };
        let (raw, m, h) = apply_retention(&conn, now, &keep).unwrap();
        assert!(raw > 0 && m == 0 && h == 0);
        let left = all_raw(&conn).iter().map(|(_, x)| x.ts_ms).min().unwrap();
        assert_eq!(
            left,
            now - 2 * 3_600_000 + 5_000,
            "the first sample of the kept minutes"
        );
        assert_eq!(
            raw_sum(&conn, None, "dt_ms"),
            3 * 3_600_000,
            "the last hour of samples, of 3 subjects"
        );
        let far = now + 10 * 366 * 86_400_000;
        apply_retention(&conn, far, &Retention::default()).unwrap();
        assert_eq!(sum(&conn, "meter_rollup_1h", "samples"), 0);
        assert_eq!(sum(&conn, "usage_ledger", "cpu_usec"), 77);
    }

    /// Generated pressure: 2 hours of 5 s samples, subject "c:p" with pressure (a few samples of
    /// memory pressure missing), "c:v1" without. Minutes keep the rounded average and the
    /// maximum of their samples; hours the sample-weighted average of their minutes; history
    /// reads the same from every tier; a group without pressure stays `NULL` everywhere.
    #[test]
    fn rollups_aggregate_pressure() {
        let mut conn = db();
        let t0 = 1_800_000_000_000i64;
        let mut batch = Batch::default();
        let mut seed = 7u64;
        // Per minute (bucket start) and resource: the values seen.
        let mut by_min: BTreeMap<(i64, usize), Vec<u32>> = BTreeMap::new();
        let mut all: [Vec<u32>; 3] = Default::default();
        for step in 1..=(2 * 720) {
            let ts = t0 + step * 5_000;
            batch.blocks.push(Block::default());
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let cpu = ((seed >> 33) % 10_000) as u32;
            let mem = (step % 7 != 0).then_some(((seed >> 20) % 500) as u32);
            let io = ((seed >> 8) % 3) as u32;
            let p = [Some(cpu), mem, Some(io)];
            for (k, v) in p.iter().enumerate() {
                if let Some(v) = v {
                    by_min
                        .entry((((ts - 1) / 60_000) * 60_000, k))
                        .or_default()
                        .push(*v);
                    all[k].push(*v);
                }
            }
            for (subject, pressure) in [("c:p", p), ("c:v1", [None; 3])] {
                batch.add_sample(
                    subject,
                    &RawSample::new(ts, &usage(5, 1000, 1, 1), 1, 1, pressure),
                );
            }
        }
        commit(&mut conn, &batch).unwrap();
        for m in (1..=130).step_by(11) {
            rollup(&mut conn, t0 + m * 60_000).unwrap();
        }
        rollup(&mut conn, t0 + 3 * 3_600_000).unwrap();
        let avg = |v: &[u32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        // 1-minute tier: exact rounded averages and maxima.
        let mut st = conn
            .prepare(
                "SELECT ts_ms, psi_samples, psi_cpu_avg, psi_cpu_max, psi_mem_avg, psi_mem_max,
                   psi_io_avg, psi_io_max FROM meter_rollup_1m WHERE subject = 'c:p'",
            )
            .unwrap();
        type Row = (i64, i64, [Option<i64>; 6]);
        let rows: Vec<Row> = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    [
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ],
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 120);
        for (ts, n, cols) in &rows {
            assert_eq!(*n, 12, "minute {ts}: every sample has cpu pressure");
            for k in 0..3 {
                let v = &by_min[&(*ts, k)];
                let want_avg = avg(v).round() as i64;
                let want_max = i64::from(*v.iter().max().unwrap());
                assert_eq!(cols[2 * k], Some(want_avg), "minute {ts} resource {k} avg");
                assert_eq!(
                    cols[2 * k + 1],
                    Some(want_max),
                    "minute {ts} resource {k} max"
                );
            }
        }
        // 1-hour tier: the maximum is exact, the average within rounding of the raw one.
        for (table, step) in [
            (RAW, 3_600_000),
            ("meter_rollup_1m", 3_600_000),
            ("meter_rollup_1h", 3_600_000),
        ] {
            let pts = history(&conn, table, "c:p", t0, t0 + 3 * 3_600_000, step).unwrap();
            assert_eq!(pts.len(), 2, "{table}: 2 hours");
            let raw_cpu: Vec<u32> = by_min
                .iter()
                .filter(|((ts, k), _)| *k == 0 && *ts < t0 + 3_600_000)
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            let got = pts[0].pressure_avg[0].unwrap();
            assert!(
                (got - avg(&raw_cpu)).abs() <= 0.5 + 1e-9,
                "{table}: hour avg {got} vs raw {}",
                avg(&raw_cpu)
            );
            for (k, seen) in all.iter().enumerate() {
                let max_all = i64::from(*seen.iter().max().unwrap());
                let got_max = pts.iter().filter_map(|p| p.pressure_max[k]).max();
                assert_eq!(got_max, Some(max_all), "{table}: resource {k} max");
            }
            let none = history(&conn, table, "c:v1", t0, t0 + 3 * 3_600_000, step).unwrap();
            assert!(!none.is_empty());
            assert!(
                none.iter()
                    .all(|p| p.pressure_avg == [None; 3] && p.pressure_max == [None; 3]),
                "{table}: no pressure without PSI"
            );
        }
        let n1h: i64 = conn
            .query_row(
                "SELECT sum(psi_samples) FROM meter_rollup_1h WHERE subject = 'c:p'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n1h, 2 * 720);
    }

    #[test]
    fn ledger_tiers_and_checkpoint_commit_together() {
        let mut conn = db();
        let owner = LedgerOwner {
            container_id: "id1".into(),
            name: "web".into(),
            team: "a".into(),
            labels: r#"{"env":"prod"}"#.into(),
        };
        let reading = Reading {
            boot_id: "b".into(),
            mono_ns: 5,
            wall_ms: 1,
            generation: 9,
            counters: Counters {
                cpu_usec: 123,
                ..Counters::default()
            },
            reserved: Reserved::default(),
        };
        let mut b = Batch::default();
        // 2 hours of 1 core crossing midnight at the end of January.
        let end = calendar::parse_time("2026-02-01T01:00Z").unwrap() * 1000;
        b.add_ledger(
            &owner,
            end,
            &Usage {
                duration_ns: 7_200 * 1_000_000_000,
                cpu_usec: 7_200_000_000,
                ..Usage::default()
            },
        );
        b.checkpoints.insert("c:id1".into(), Some(reading.clone()));
        commit(&mut conn, &b).unwrap();
        for (t, _) in LEDGER_TABLES {
            assert_eq!(sum(&conn, t, "cpu_usec"), 7_200_000_000, "{t}");
        }
        let months: i64 = conn
            .query_row("SELECT count(*) FROM usage_ledger_month", [], |r| r.get(0))
            .unwrap();
        assert_eq!(months, 2, "January and February rows");
        assert_eq!(load_checkpoints(&conn).unwrap()["c:id1"], reading);
        // A failing batch (a sample with an impossible subject type is not possible, so make
        // the table vanish) leaves neither ledger rows nor the checkpoint behind.
        conn.execute_batch("DROP TABLE host_ledger").unwrap();
        let mut b2 = b.clone();
        b2.add_host(end, &Usage::default());
        b2.host.insert(0, (1, 1));
        let mut r2 = reading.clone();
        r2.mono_ns = 99;
        b2.checkpoints.insert("c:id1".into(), Some(r2));
        assert!(commit(&mut conn, &b2).is_err());
        for (t, _) in LEDGER_TABLES {
            assert_eq!(sum(&conn, t, "cpu_usec"), 7_200_000_000, "{t}");
        }
        assert_eq!(load_checkpoints(&conn).unwrap()["c:id1"].mono_ns, 5);
    }

    #[test]
    fn rebuilt_coarse_ledgers_equal_the_incremental_ones() {
        let mut conn = db();
        let t0 = calendar::parse_time("2026-01-30T20:00Z").unwrap();
        let mut b = Batch::default();
        for h in 0..(24 * 5) {
            for (id, team) in [("a", "x"), ("b", "y")] {
                let owner = LedgerOwner {
                    container_id: id.into(),
                    name: id.into(),
                    team: team.into(),
                    labels: "{}".into(),
                };
                b.add_ledger(
                    &owner,
                    (t0 + h * 1800 + 1800) * 1000,
                    &usage(1800, 1000 + h as u64, 10, h as u64),
                );
            }
        }
        commit(&mut conn, &b).unwrap();
        let dump = |c: &Connection, t: &str| -> Vec<(i64, String, i64, i64, i64)> {
            let mut st = c
                .prepare(&format!(
                    "SELECT period, container_id, cpu_usec, mem_byte_s, mem_peak FROM {t} ORDER BY 1, 2"
                ))
                .unwrap();
            st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        };
        let tiers: Vec<_> = LEDGER_TABLES.iter().map(|(t, _)| dump(&conn, t)).collect();
        assert_eq!(tiers[4].len(), 4, "January and February for two containers");
        assert_eq!(tiers[3].len(), 4, "21-31 January and 1-10 February");
        assert_eq!(
            tiers[1].len(),
            2 * 11,
            "60 hours from 20:00 = 11 six-hour blocks"
        );
        rebuild_coarse_ledgers(&conn).unwrap();
        let rebuilt: Vec<_> = LEDGER_TABLES.iter().map(|(t, _)| dump(&conn, t)).collect();
        assert_eq!(rebuilt, tiers);
        // Migration 0007 backfills the new tiers of a ledger written before it to the same rows.
        let mut old = Connection::open_in_memory().unwrap();
        let migrations = crate::store::migrations();
        migrations.to_version(&mut old, 6).unwrap();
        for t in ["usage_ledger", "usage_ledger_day", "usage_ledger_month"] {
            let mut st = conn.prepare(&format!("SELECT * FROM {t}")).unwrap();
            let n = st.column_count();
            let mut ins = old
                .prepare(&format!(
                    "INSERT INTO {t} VALUES ({})",
                    vec!["?"; n].join(", ")
                ))
                .unwrap();
            let mut q = st.query([]).unwrap();
            while let Some(r) = q.next().unwrap() {
                let vals: Vec<rusqlite::types::Value> = (0..n).map(|i| r.get(i).unwrap()).collect();
                ins.execute(rusqlite::params_from_iter(vals)).unwrap();
            }
        }
        migrations.to_latest(&mut old).unwrap();
        let migrated: Vec<_> = LEDGER_TABLES.iter().map(|(t, _)| dump(&old, t)).collect();
        assert_eq!(migrated, tiers);
    }

    /// History reads the blocks not compacted yet as well as the chunks; a sample that arrives
    /// for a minute already compacted joins its chunk and its rollup, and is counted once.
    #[test]
    fn compaction_moves_each_sample_once_and_history_sees_both_stores() {
        let mut conn = db();
        let t0 = 1_800_000_000_000i64;
        let tick = |conn: &mut Connection, ts: i64, cpu: u64| {
            let mut b = Batch::default();
            b.add_sample(
                "c:a",
                &RawSample::new(ts, &usage(1, cpu, 0, 0), 0, 1, [None; 3]),
            );
            commit(conn, &b).unwrap();
        };
        for k in 1..=90 {
            tick(&mut conn, t0 + k * 1_000, 10);
        }
        let cpu = |conn: &Connection| -> i64 {
            history(conn, RAW, "c:a", t0, t0 + 3_600_000, 1_000)
                .unwrap()
                .iter()
                .map(|p| p.cpu_usec)
                .sum()
        };
        assert_eq!(cpu(&conn), 900, "all from blocks");
        // At t0 + 90 s the first minute is complete: 60 samples move, 30 stay in blocks.
        assert_eq!(compact(&mut conn, t0 + 90_000).unwrap(), 60);
        assert_eq!(compact(&mut conn, t0 + 90_000).unwrap(), 0, "idempotent");
        assert_eq!(cpu(&conn), 900, "chunk + blocks");
        // A late sample (a clock step back) for the compacted minute.
        tick(&mut conn, t0 + 30_500, 5);
        assert_eq!(compact(&mut conn, t0 + 120_000).unwrap(), 31);
        assert_eq!(cpu(&conn), 905);
        let (n, c): (i64, i64) = conn
            .query_row(
                "SELECT samples, cpu_usec FROM meter_rollup_1m WHERE ts_ms = ?1",
                [t0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (n, c),
            (61, 605),
            "the late sample joined its minute's rollup"
        );
        let blocks: i64 = conn
            .query_row("SELECT count(*) FROM meter_block", [], |r| r.get(0))
            .unwrap();
        assert_eq!(blocks, 0);
        let chunk = raw_samples(&conn, "c:a", t0, t0 + 60_001).unwrap();
        assert!(
            chunk.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms),
            "ordered"
        );
        assert_eq!(chunk.len(), 61);
    }

    /// Right-sizing's readers: where a subject's samples start (raw blocks before the first
    /// compaction, 1-minute rollups after) and OOM kills by container or team since an hour.
    #[test]
    fn first_sample_and_oom_kills_for_recommendations() {
        let mut conn = db();
        let t0 = 1_800_000_000_000i64;
        assert_eq!(
            first_sample_ms(&conn, "c:a", t0, t0 + 60_000).unwrap(),
            None
        );
        for k in 5..=90 {
            let mut b = Batch::default();
            b.add_sample(
                "c:a",
                &RawSample::new(t0 + k * 1_000, &usage(1, 10, 0, 0), 0, 1, [None; 3]),
            );
            commit(&mut conn, &b).unwrap();
        }
        // Not compacted: the first raw sample's start.
        let now = t0 + 91_000;
        assert_eq!(
            first_sample_ms(&conn, "c:a", t0, now).unwrap(),
            Some(t0 + 4_000)
        );
        assert_eq!(first_sample_ms(&conn, "c:b", t0, now).unwrap(), None);
        compact(&mut conn, now).unwrap();
        // The first minute is a rollup now: its start. After it, the samples not compacted.
        assert_eq!(first_sample_ms(&conn, "c:a", t0, now).unwrap(), Some(t0));
        assert_eq!(
            first_sample_ms(&conn, "c:a", t0 + 70_000, now).unwrap(),
            Some(t0 + 69_000)
        );

        let hour = t0.div_euclid(3_600_000) * 3_600_000;
        let mut b = Batch::default();
        for (id, team, kills) in [("id1", "a", 2), ("id2", "a", 1), ("id3", "b", 5)] {
            let owner = LedgerOwner {
                container_id: id.into(),
                name: id.into(),
                team: team.into(),
                labels: "{}".into(),
            };
            let u = Usage {
                duration_ns: 1_000_000_000,
                oom_kills: kills,
                ..Usage::default()
            };
            b.add_ledger(&owner, hour + 1_000, &u);
        }
        commit(&mut conn, &b).unwrap();
        assert_eq!(
            oom_kills(&conn, OomScope::Container("id1"), hour).unwrap(),
            2
        );
        assert_eq!(
            oom_kills(&conn, OomScope::Team("a"), hour + 1).unwrap(),
            3,
            "the hour holding from"
        );
        assert_eq!(oom_kills(&conn, OomScope::Team("b"), hour).unwrap(), 5);
        assert_eq!(
            oom_kills(&conn, OomScope::Team("a"), hour + 3_600_000).unwrap(),
            0
        );
    }

    /// Migration 0009 moves the rows of the old sample table into chunks and the rollups of
    /// their minutes, then drops the table.
    #[test]
    fn migration_packs_the_old_sample_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        let migrations = crate::store::migrations();
        migrations.to_version(&mut conn, 8).unwrap();
        let t0 = 1_800_000_000_000i64;
        for (subject, k, psi) in [
            ("c:a", 1, Some(120)),
            ("c:a", 2, None),
            ("c:a", 61, Some(7)),
            ("t:x", 5, None),
        ] {
            conn.execute(
                "INSERT INTO meter_sample (subject, ts_ms, dt_ms, cpu_usec, throttled_usec,
                   io_rbytes, io_wbytes, io_rios, io_wios, mem_byte_s, mem_bytes, mem_peak, pids,
                   pids_peak, psi_cpu, psi_mem, psi_io)
                 VALUES (?1, ?2, 1000, ?3, 0, 0, 0, 0, 0, 4, 4, 9, 1, 2, ?4, NULL, NULL)",
                params![subject, t0 + k * 1_000, k * 100, psi],
            )
            .unwrap();
        }
        migrations.to_latest(&mut conn).unwrap();
        let gone: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'meter_sample'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(gone, 0);
        let a = raw_samples(&conn, "c:a", 0, i64::MAX).unwrap();
        assert_eq!(
            a.iter()
                .map(|s| (s.ts_ms, s.cpu_usec, s.psi[0]))
                .collect::<Vec<_>>(),
            [
                (t0 + 1_000, 100, Some(120)),
                (t0 + 2_000, 200, None),
                (t0 + 61_000, 6_100, Some(7))
            ]
        );
        assert_eq!(raw_samples(&conn, "t:x", 0, i64::MAX).unwrap().len(), 1);
        let rollups: Vec<(String, i64, i64, Option<i64>)> = conn
            .prepare("SELECT subject, ts_ms, cpu_usec, psi_cpu_avg FROM meter_rollup_1m ORDER BY subject, ts_ms")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rollups,
            [
                ("c:a".to_owned(), t0, 300, Some(120)),
                ("c:a".to_owned(), t0 + 60_000, 6_100, Some(7)),
                ("t:x".to_owned(), t0, 500, None),
            ]
        );
    }

    #[test]
    fn merged_batches_keep_every_ledger_unit_and_bound_samples() {
        let owner = LedgerOwner {
            container_id: "x".into(),
            name: "x".into(),
            team: "t".into(),
            labels: "{}".into(),
        };
        let mut acc = Batch::default();
        for k in 0..100 {
            let mut b = Batch::default();
            b.add_sample(
                "c:x",
                &RawSample {
                    ts_ms: k,
                    ..RawSample::default()
                },
            );
            b.add_ledger(
                &owner,
                1000 + k,
                &Usage {
                    cpu_usec: 10,
                    ..Usage::default()
                },
            );
            acc.merge(b, 30);
        }
        assert_eq!(acc.samples(), 30);
        assert_eq!(acc.dropped_samples, 70);
        assert_eq!(acc.blocks[0].first_ms, 70, "the oldest samples are dropped");
        assert_eq!(
            acc.ledger
                .values()
                .flat_map(|h| h.values())
                .map(|u| u.cpu_usec)
                .sum::<u64>(),
            1000
        );
    }
}
