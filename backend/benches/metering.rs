//! Metering benchmarks (print tables; no timed assertions):
//!
//! 1. the sampler's cost per group against the raw kept-open read floor, on the real cgroup
//!    filesystem (root; groups in a unique subtree, removed at the end);
//! 2. billing queries over one year × 1000 containers of generated ledger.
//!
//! `cargo bench -p backend --bench metering` (release; root, real cgroups). Sizes: `CORRAL_BENCH_GROUPS` (1000),
//! `CORRAL_BENCH_CONTAINERS` (1000), `CORRAL_BENCH_DAYS` (365); `CORRAL_BENCH_ONLY=sampler|billing`.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use backend::{
    cgroup::{Cgroups, Group, GroupPath},
    metering::{
        Metering, MeteringConfig,
        billing::{self, Filter},
        calendar::parse_time,
        sampler::wall_ms,
        store::{self, LEDGER_TABLES, rebuild_coarse_ledgers},
    },
    store::Store,
};

/// A name unique to this process and call.
fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time this thread has used (user + system): unlike wall time, not inflated when other
/// processes compete for the cores.
fn thread_cpu() -> Duration {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
            };
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Subtree(Cgroups);

impl Drop for Subtree {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove_subtree() {
            eprintln!("cleanup of {} failed: {e}", self.0.subtree());
        }
    }
}

fn sampler_bench() {
    let n = env_usize("CORRAL_BENCH_GROUPS", 1000);

    let rounds = 15;
    let t = Subtree(Cgroups::host(&unique("corral-bench")).expect("subtree"));
    let t0 = Instant::now();
    let groups: Vec<Group> = (0..n)
        .map(|i| {
            t.0.create(
                &GroupPath::new([format!("team-{}", i % 10), format!("c{i}")]).expect("path"),
            )
            .expect("create group")
        })
        .collect();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n## Sampler cost per container ({n} groups, {:?} host, created in {:.1} s; load average {})\n",
        t.0.mode(),
        t0.elapsed().as_secs_f64(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    // Every timing is this thread's CPU time (user + system, getrusage): the machine is shared,
    // and wall time would count other processes' time slices too. Means over the rounds (full
    // reads of the peak files are staggered over the ticks, so a median would hide them).
    let rounds = rounds as u32;
    let measure = |f: &mut dyn FnMut()| -> Duration {
        f(); // warm-up (dentry cache, first allocations)
        let c = thread_cpu();
        for _ in 0..rounds {
            f();
        }
        thread_cpu().saturating_sub(c) / rounds
    };
    // The floor: `pread` of exactly the files the sampler reads every tick, kept open, no
    // parsing — what any sampler of these counters must pay.
    let mut usage: Vec<_> = groups.iter().map(Group::usage_reader).collect();
    let (fast, slow) = usage[0].open_files();
    let floor = measure(&mut || {
        for r in &mut usage {
            std::hint::black_box(r.read_raw());
        }
    });
    let floor_all = measure(&mut || {
        for r in &mut usage {
            std::hint::black_box(r.read_raw_all());
        }
    });
    let full_every = MeteringConfig::default().full_read.as_secs().max(1) as usize;
    let mut sample = vec![backend::cgroup::UsageSample::default(); n];
    let narrow_fast = measure(&mut || {
        for (r, s) in usage.iter_mut().zip(&mut sample) {
            r.read_fast(s);
        }
    });
    let narrow_all = measure(&mut || {
        for (r, s) in usage.iter_mut().zip(&mut sample) {
            r.read_all(s);
        }
    });
    drop(usage);
    // For reference: every stat file kept open (the old sampler's reader), and open/read/close.
    let mut readers: Vec<_> = groups.iter().map(Group::stats_reader).collect();
    let files: usize = readers.iter().map(|r| r.open_files()).sum();
    let stats_reader = measure(&mut || {
        for r in &mut readers {
            std::hint::black_box(r.sample());
        }
    });
    drop(readers);
    let reopen = {
        let c = thread_cpu();
        for g in &groups {
            std::hint::black_box(g.stats());
        }
        thread_cpu().saturating_sub(c)
    };

    let dir = TempDir::new("corral-bench");
    let store = Store::open(&dir.path().join("corral.db")).expect("store");
    let m = Metering::new(
        store,
        MeteringConfig {
            interval: Duration::from_secs(1),
            ledger_flush: Duration::from_secs(3600),
            ..MeteringConfig::default()
        },
    )
    .expect("metering");
    let labels = BTreeMap::from([("env".to_owned(), "bench".to_owned())]);
    let s = Instant::now();
    for (i, g) in groups.iter().enumerate() {
        m.register(
            g.clone(),
            &format!("id{i}"),
            &format!("c{i}"),
            &format!("team-{}", i % 10),
            &labels,
        );
    }
    let register = s.elapsed();
    m.tick();
    // A minute of 1 s ticks: what the once-a-minute compaction then moves is a real minute.
    let tick_rounds = 60u32;
    let (mut read, mut account, mut commit, mut wall) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    // The floor, measured round by round between the ticks (same cache and load): the raw
    // `pread` of what the sampler reads at its schedule — the every-tick files each round, all
    // files of a staggered fifth of the groups (every `full_read` each).
    let (mut floor_cpu, mut tick_cpu) = (Duration::ZERO, Duration::ZERO);
    for round in 0..tick_rounds as usize {
        // Opened afresh each round, 200 groups at a time (not measured), and closed again:
        // beside the sampler's own, a second set of kept-open files for every group would not
        // fit a 20000-file limit.
        for (k, part) in groups.chunks(200).enumerate() {
            let mut usage: Vec<_> = part.iter().map(Group::usage_reader).collect();
            assert!(
                usage.iter().all(|r| r.open_files() == (fast, slow)),
                "every floor reader has all its files open"
            );
            let c = thread_cpu();
            for (j, r) in usage.iter_mut().enumerate() {
                if (round + k * 200 + j) % full_every == 0 {
                    std::hint::black_box(r.read_raw_all());
                } else {
                    std::hint::black_box(r.read_raw());
                }
            }
            floor_cpu += thread_cpu().saturating_sub(c);
        }
        let c = thread_cpu();
        let s = Instant::now();
        let st = m.tick();
        wall += s.elapsed();
        tick_cpu += thread_cpu().saturating_sub(c);
        read += st.read;
        account += st.account;
        commit += st.commit;
    }
    let floor_sched = floor_cpu / tick_rounds;
    let tick = tick_cpu / tick_rounds;
    // Split the tick's CPU time in the proportions its wall-clock phases took.
    let phases = (read + account + commit).as_secs_f64().max(1e-9);
    let part = |d: Duration| tick.mul_f64(d.as_secs_f64() / phases);
    let c = thread_cpu();
    m.flush();
    let flush = thread_cpu().saturating_sub(c);
    // The compaction of those blocks into per-container minute chunks (+ 1-minute rollups),
    // per sample moved: one sample per container per tick.
    let c = thread_cpu();
    let moved = store::compact(&mut m.store().lock(), wall_ms() + 120_000).expect("compact");
    let compact_per_sample = thread_cpu().saturating_sub(c) / (moved.max(1) as u32);
    let whole = tick + compact_per_sample * n as u32;

    let per = |d: Duration| us(d) / n as f64;
    let ratio = |d: Duration| us(d) / us(floor_sched);
    println!(
        "CPU µs per container per tick (this thread's user + system time); sampler rows: mean of {tick_rounds} ticks, the others of {rounds}.\n"
    );
    println!("| per container | CPU µs | × floor |");
    println!("|---|---:|---:|");
    println!(
        "| **floor**: raw kept-open `pread`, no parsing, of the {fast} every-tick files each tick and all {} every {full_every} ticks (the sampler's schedule), measured between the ticks | {:.2} | 1.00 |",
        fast + slow,
        per(floor_sched)
    );
    println!(
        "| raw `pread` of the {fast} every-tick files only | {:.2} | {:.2} |",
        per(floor),
        ratio(floor)
    );
    println!(
        "| raw `pread` of all {} files | {:.2} | {:.2} |",
        fast + slow,
        per(floor_all),
        ratio(floor_all)
    );
    println!(
        "| `UsageReader::read_fast` ({fast} files, parsed) | {:.2} | {:.2} |",
        per(narrow_fast),
        ratio(narrow_fast)
    );
    println!(
        "| `UsageReader::read_all` ({} files: + peaks, OOM, v1 throttling) | {:.2} | {:.2} |",
        fast + slow,
        per(narrow_all),
        ratio(narrow_all)
    );
    println!(
        "| (old) `StatsReader`, every stat file kept open ({:.1} files) | {:.2} | {:.2} |",
        files as f64 / n as f64,
        per(stats_reader),
        ratio(stats_reader)
    );
    println!(
        "| (old) open/read/close every stat file (`Group::stats`) | {:.2} | {:.2} |",
        per(reopen),
        ratio(reopen)
    );
    println!(
        "| sampler tick: read (full every {:?}) | {:.2} | {:.2} |",
        MeteringConfig::default().full_read,
        per(part(read)),
        ratio(part(read))
    );
    println!(
        "| sampler tick: accounting (deltas, ledger batch, live view) | {:.2} | {:.2} |",
        per(part(account)),
        ratio(part(account))
    );
    println!(
        "| sampler tick: SQLite commit of the raw samples (one packed block) | {:.2} | {:.2} |",
        per(part(commit)),
        ratio(part(commit))
    );
    println!(
        "| compaction into per-container minute chunks + 1-minute rollups ({moved} samples), per sample | {:.2} | {:.2} |",
        us(compact_per_sample),
        ratio(compact_per_sample * n as u32)
    );
    println!(
        "| **sampler: whole tick + its share of compaction** | {:.2} | {:.2} |",
        per(whole),
        ratio(whole)
    );
    println!(
        "| sampler: whole tick against the every-tick files' floor only | {:.2} | {:.2} |",
        per(whole),
        us(whole) / us(floor)
    );
    println!(
        "| sampler: whole tick without the SQLite commit | {:.2} | {:.2} |",
        per(part(read + account)),
        ratio(part(read + account))
    );
    println!(
        "| ledger + checkpoint flush (every 30 s) | {:.2} | |",
        per(flush)
    );
    println!(
        "| registration (first full reading + durable commit), wall | {:.2} | |",
        per(register)
    );
    println!(
        "\n{n} containers at 1 s: a tick with its share of compaction costs {:.2} ms of CPU = {:.2} % of one core, + {:.3} % for the 30 s ledger flush (wall per tick {:.1} ms on this shared machine).",
        ms(whole),
        ms(whole) / 10.0,
        ms(flush) / 30.0 / 10.0,
        ms(wall / tick_rounds)
    );
    for i in 0..n {
        m.unregister_with_final_reading(&format!("id{i}"));
    }
}

fn billing_bench() {
    let containers = env_usize("CORRAL_BENCH_CONTAINERS", 1000);
    let days = env_usize("CORRAL_BENCH_DAYS", 365);
    let hours = days * 24;
    let dir = TempDir::new("corral-bench-ledger");
    // `CORRAL_BENCH_DB=/path`: keep the generated ledger there and reuse it on the next run.
    let keep = std::env::var_os("CORRAL_BENCH_DB").map(std::path::PathBuf::from);
    let path = keep.clone().unwrap_or_else(|| dir.path().join("corral.db"));
    let reuse = keep.is_some() && path.exists();
    // Creates the schema, or migrates a kept ledger (a ledger from before migration 0007 gets
    // its 6-hour and 10-day tiers backfilled here, as a daemon would at start-up).
    let s = Instant::now();
    drop(Store::open(&path).expect("schema"));
    let migrate = s.elapsed();
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
        .expect("pragmas");
    let start = parse_time("2026-01-01").expect("date");
    let s = Instant::now();
    if !reuse {
        // One row per container-hour, as the sampler writes them: ~1 core, ~0.5 GiB, some IO.
        conn.execute(
        "WITH RECURSIVE h(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM h WHERE n < ?2 - 1),
              c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < ?3 - 1)
         INSERT INTO usage_ledger (period, container_id, team, labels, name, duration_ms,
           cpu_usec, throttled_usec, cpu_reserved_core_usec, mem_byte_s, mem_reserved_byte_s,
           io_rbytes, io_wbytes, io_rios, io_wios, oom_kills, mem_peak, pids_peak)
         SELECT ?1 + n * 3600, printf('id%05d', i), printf('team-%02d', i % 10),
           CASE i % 3 WHEN 0 THEN '{\"env\":\"prod\"}' WHEN 1 THEN '{\"env\":\"dev\"}' ELSE '{}' END,
           printf('svc-%05d', i), 3600000,
           abs(random() % 3600000000), abs(random() % 100000000), 3600000000,
           abs(random() % 1932735283200), 3865470566400,
           abs(random() % 1073741824), abs(random() % 1073741824), abs(random() % 100000),
           abs(random() % 100000), 0, abs(random() % 2147483648), abs(random() % 100)
         FROM h, c",
        rusqlite::params![start, hours as i64, containers as i64],
    )
    .expect("generate");
    }
    let gen_hours = s.elapsed();
    let s = Instant::now();
    if !reuse {
        rebuild_coarse_ledgers(&conn).expect("rollup");
        conn.execute_batch("ANALYZE").expect("analyze");
    }
    let gen_coarse = s.elapsed();
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    // A rate change mid-year, so a year splits into two priced segments.
    for (from, cpu) in [
        (start, 40_000),
        (parse_time("2026-07-01").expect("date"), 45_000),
    ] {
        conn.execute(
            "INSERT OR REPLACE INTO rate_card VALUES (?1, 'EUR', ?2, 10000, 5000, 1000, 20000, 0)",
            rusqlite::params![from, cpu],
        )
        .expect("rate");
    }
    let tier_rows: Vec<String> = LEDGER_TABLES
        .iter()
        .map(|(t, _)| {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .expect("count");
            format!("{t} {n}")
        })
        .collect();
    println!(
        "\n## Billing queries over {days} days × {containers} containers ({} hourly ledger rows, {:.0} MiB; generated in {:.0} s + coarser tiers {:.0} s; open/migrate {:.1} s; rows: {})\n",
        hours * containers,
        size as f64 / (1 << 20) as f64,
        gen_hours.as_secs_f64(),
        gen_coarse.as_secs_f64(),
        migrate.as_secs_f64(),
        tier_rows.join(", ")
    );
    let end = start + hours as i64 * 3600;
    let team = |t: &str| Filter {
        team: Some(t.to_owned()),
        ..Filter::default()
    };
    let cases: Vec<(&str, i64, i64, Filter)> = vec![
        (
            "whole year, every container/team/label",
            start,
            end,
            Filter::default(),
        ),
        ("whole year, one team", start, end, team("team-03")),
        (
            "whole year, one container",
            start,
            end,
            Filter {
                container: Some("svc-00042".into()),
                ..Filter::default()
            },
        ),
        (
            "whole year, label env=prod",
            start,
            end,
            Filter {
                label: Some(("env".into(), "prod".into())),
                ..Filter::default()
            },
        ),
        (
            "odd range 03-14T05:00 .. 09-20T17:00, one team",
            parse_time("2026-03-14T05:00Z").expect("t"),
            parse_time("2026-09-20T17:00Z").expect("t"),
            team("team-07"),
        ),
        (
            "odd range 03-14T05:00 .. 09-20T17:00, all",
            parse_time("2026-03-14T05:00Z").expect("t"),
            parse_time("2026-09-20T17:00Z").expect("t"),
            Filter::default(),
        ),
        (
            "one month, one team",
            parse_time("2026-05-01").expect("t"),
            parse_time("2026-06-01").expect("t"),
            team("team-01"),
        ),
        (
            "day-aligned range 03-15 .. 09-20, all",
            parse_time("2026-03-15").expect("t"),
            parse_time("2026-09-20").expect("t"),
            Filter::default(),
        ),
        (
            "odd range inside one day 10-07T03:00 .. 10-07T22:00, all",
            parse_time("2026-10-07T03:00Z").expect("t"),
            parse_time("2026-10-07T22:00Z").expect("t"),
            Filter::default(),
        ),
        (
            "worst edges 01-31T01:00 .. 12-30T23:00, all",
            parse_time("2026-01-31T01:00Z").expect("t"),
            parse_time("2026-12-30T23:00Z").expect("t"),
            Filter::default(),
        ),
    ];
    println!("| query | median wall ms | median CPU ms | rows out | total cost |");
    println!("|---|---:|---:|---:|---:|");
    for (name, from, to, filter) in &cases {
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        let mut rows = 0;
        let mut cost = 0;
        for _ in 0..7 {
            let (s, c) = (Instant::now(), thread_cpu());
            let r = billing::report(&conn, *from, *to, filter).expect("report");
            times.push(s.elapsed());
            cpu.push(thread_cpu().saturating_sub(c));
            rows = r.containers.len();
            cost = r.total.cost.total;
        }
        println!(
            "| {name} | {:.1} | {:.1} | {rows} | {} |",
            ms(median(times)),
            ms(median(cpu)),
            billing::money(cost)
        );
    }
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..5 {
        let (s, c) = (Instant::now(), thread_cpu());
        std::hint::black_box(
            billing::statement(&conn, "team-04", parse_time("2026-08-01").expect("t"))
                .expect("statement"),
        );
        times.push(s.elapsed());
        cpu.push(thread_cpu().saturating_sub(c));
    }
    println!(
        "| monthly statement of one team (with host reconciliation) | {:.1} | {:.1} | | |",
        ms(median(times)),
        ms(median(cpu))
    );
    // The same year read from the hourly rows only, for comparison (what the day/month
    // tables save).
    // The previous plan, for comparison: one `GROUP BY container_id, team, labels` per piece
    // (SQLite sorts every row of the piece), unpriced.
    let (from, to) = (
        parse_time("2026-03-14T05:00Z").expect("t"),
        parse_time("2026-09-20T17:00Z").expect("t"),
    );
    let mut cpu = Vec::new();
    let mut piece_ranges = Vec::new();
    for _ in 0..5 {
        let c = thread_cpu();
        piece_ranges.clear();
        for (lo, hi) in [
            (from, parse_time("2026-07-01").expect("t")),
            (parse_time("2026-07-01").expect("t"), to),
        ] {
            for (grain, a, b) in backend::metering::calendar::decompose(lo, hi) {
                let table = backend::metering::store::ledger_table(grain);
                let n: i64 = conn
                    .query_row(
                        &format!(
                            "SELECT count(*) FROM (SELECT container_id, team, labels, max(name),
                               sum(cpu_usec), sum(throttled_usec), sum(cpu_reserved_core_usec),
                               sum(mem_byte_s), sum(mem_reserved_byte_s), sum(io_rbytes),
                               sum(io_wbytes), sum(io_rios), sum(io_wios), sum(oom_kills),
                               max(mem_peak), max(pids_peak) FROM {table}
                             WHERE period >= ?1 AND period < ?2 GROUP BY container_id, team, labels)"
                        ),
                        rusqlite::params![a, b],
                        |r| r.get(0),
                    )
                    .expect("grouped piece");
                std::hint::black_box(n);
                piece_ranges.push((table, a, b));
            }
        }
        cpu.push(thread_cpu().saturating_sub(c));
    }
    let rows_in: i64 = piece_ranges
        .iter()
        .map(|(table, a, b)| -> i64 {
            conn.query_row(
                &format!("SELECT count(*) FROM {table} WHERE period >= ?1 AND period < ?2"),
                rusqlite::params![a, b],
                |r| r.get(0),
            )
            .expect("rows")
        })
        .sum();
    println!(
        "| (previous plan) odd range 03-14T05:00 .. 09-20T17:00, all: SQL GROUP BY per piece, unpriced ({rows_in} ledger rows) | | {:.1} | | |",
        ms(median(cpu))
    );
    let s = Instant::now();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT container_id, sum(cpu_usec) FROM usage_ledger
             WHERE period >= ?1 AND period < ?2 GROUP BY container_id, team, labels)",
            rusqlite::params![start, end],
            |r| r.get(0),
        )
        .expect("hourly scan");
    println!(
        "| (reference) whole year summed from hourly rows, unpriced | {:.1} | | {n} | |",
        ms(s.elapsed())
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let only = std::env::var("CORRAL_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "sampler" {
        sampler_bench();
    }
    if only.is_empty() || only == "billing" {
        billing_bench();
    }
}
