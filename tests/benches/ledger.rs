//! Shared-ledger benchmarks (issue 19; print tables, no timed assertions), on a real
//! PostgreSQL started here (Debian's `initdb` + `pg_ctl`, as the tests do):
//!
//! 1. shipping at N containers: one sampler flush rewrites every container's current hour in
//!    SQLite (the outbox triggers queue each row), then one shipper round sends and
//!    acknowledges them — the host's own cost (this process's CPU) and the round's wall time;
//! 2. the hub's statement over H hosts × N containers × D days of hourly rows in PostgreSQL
//!    (`hub::priced`, as `GET /api/v1/fleet/statement` runs it): a month, a team's month, one
//!    host's month, the whole year.
//!
//! `cargo bench -p tests --bench ledger` (root: PostgreSQL runs as the `postgres` user).
//! Sizes: `CORRAL_BENCH_CONTAINERS` (1000), `CORRAL_BENCH_HOSTS` (10), `CORRAL_BENCH_DAYS`
//! (365); `CORRAL_BENCH_ONLY=ship|hub`.

use std::time::{Duration, Instant};

use backend::{
    ledger::{LedgerArgs, hub, outbox, pg},
    metering::billing::RateCard,
    store::Store,
};
use nix::sys::resource::UsageWho;
use tests::{
    TempDir,
    bench::{cpu_time, env_usize, median},
    postgres::Postgres,
};

/// CPU time of this process: the host's own share, not PostgreSQL's.
fn process_cpu() -> Duration {
    cpu_time(UsageWho::RUSAGE_SELF)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

async fn connect(pg: &Postgres, host_id: &str) -> tokio_postgres::Client {
    let args = LedgerArgs {
        ledger: Some(format!(
            "postgres://corral@127.0.0.1:{}/postgres?sslmode=disable",
            pg.port
        )),
        ..LedgerArgs::default()
    };
    let cfg = args
        .check(Some(host_id), Some(tests::postgres::PASSWORD.to_owned()))
        .expect("ledger flags")
        .expect("a ledger");
    let mut c = pg::connect(&cfg).await.expect("connect");
    pg::migrate(&mut c).await.expect("schema");
    c
}

const HOUR: i64 = 3600;

/// Writes (or rewrites, `round` > 0) every container's row of hour `period`, as the sampler's
/// ledger flush does: one transaction, one upsert a container.
fn flush(store: &Store, containers: usize, period: i64, round: i64) {
    let mut conn = store.lock();
    let tx = conn.transaction().expect("tx");
    {
        let mut st = tx
            .prepare_cached(
                "INSERT INTO usage_ledger (period, container_id, team, labels, name,
                   duration_ms, cpu_usec, throttled_usec, cpu_reserved_core_usec, mem_byte_s,
                   mem_reserved_byte_s, io_rbytes, io_wbytes, io_rios, io_wios, oom_kills,
                   mem_peak, pids_peak)
                 VALUES (?1, ?2, ?3, '', ?2, ?4, ?5, 0, 0, ?6, 0, 0, 0, 0, 0, 0, 1048576, 3)
                 ON CONFLICT (period, container_id, team, labels) DO UPDATE SET
                   duration_ms = excluded.duration_ms, cpu_usec = excluded.cpu_usec,
                   mem_byte_s = excluded.mem_byte_s",
            )
            .expect("prepare");
        for i in 0..containers {
            st.execute(rusqlite::params![
                period,
                format!("c{i:05}"),
                format!("team-{}", i % 10),
                30_000 * (round + 1),
                1_000_000 * (round + 1),
                1 << 30,
            ])
            .expect("upsert");
        }
    }
    tx.commit().expect("commit");
}

async fn bench_ship(pg: &Postgres, containers: usize) {
    let dir = TempDir::new("bench-ledger");
    let store = Store::open(&dir.path().join("corral.db")).expect("store");
    let period = backend::metering::sampler::wall_ms() / 1000 / HOUR * HOUR;
    // The flush's own cost without and with the outbox (its triggers run in the flush).
    let mut plain = Vec::new();
    for round in 0..10 {
        let t = Instant::now();
        flush(&store, containers, period - HOUR, round);
        plain.push(t.elapsed());
    }
    outbox::enable(&store.lock(), "bench-db").expect("enable");
    let mut client = connect(pg, "bench-host").await;
    // The first round ships the hour written before shipping was on.
    ship_all(&store, &mut client).await;
    let (mut with_outbox, mut rounds, mut cpus) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..20 {
        let t = Instant::now();
        flush(&store, containers, period, round);
        with_outbox.push(t.elapsed());
        let (cpu, t) = (process_cpu(), Instant::now());
        let n = ship_all(&store, &mut client).await;
        rounds.push(t.elapsed());
        cpus.push(process_cpu() - cpu);
        assert_eq!(n, containers, "every rewritten row shipped once");
    }
    let round = median(rounds);
    let cpu = median(cpus);
    println!("\nshipping, {containers} containers (median of 20 rounds; a flush every 30 s)\n");
    println!("| what                                   | ms    |");
    println!("|----------------------------------------|-------|");
    println!(
        "| sampler flush, no ledger               | {:>5} |",
        ms(median(plain))
    );
    println!(
        "| sampler flush, outbox triggers on      | {:>5} |",
        ms(median(with_outbox))
    );
    println!(
        "| shipper round, wall (incl. PostgreSQL) | {:>5} |",
        ms(round)
    );
    println!(
        "| shipper round, this host's CPU         | {:>5} |",
        ms(cpu)
    );
    println!(
        "\nhost CPU for shipping: {:.3} % of one core at a flush every 30 s ({containers} rows a round, {:.0} rows/s)",
        cpu.as_secs_f64() / 30.0 * 100.0,
        containers as f64 / round.as_secs_f64()
    );
}

/// One shipper round's work: every queued row, oldest first, in batches of 1000.
async fn ship_all(store: &Store, client: &mut tokio_postgres::Client) -> usize {
    let mut n = 0;
    loop {
        let rows = outbox::pending(&store.lock(), 1000).expect("pending");
        if rows.is_empty() {
            return n;
        }
        pg::ship(client, "bench-host", &rows).await.expect("ship");
        outbox::acknowledge(&store.lock(), &rows, 0).expect("acknowledge");
        n += rows.len();
    }
}

async fn bench_hub(pg: &Postgres, hosts: usize, containers: usize, days: usize) {
    let mut client = connect(pg, "bench-hub").await;
    let now = backend::metering::sampler::wall_ms() / 1000 / HOUR * HOUR;
    let hours = (days * 24) as i64;
    let from = now - hours * HOUR;
    let rows = hosts as i64 * containers as i64 * hours;
    println!(
        "\nhub statement: {hosts} hosts × {containers} containers × {days} days = {rows} hourly rows\n"
    );
    // Generated in PostgreSQL itself, one host at a time (as the hosts' upserts would leave
    // them): 10 teams, an hour of 30 s of CPU and 1 GiB each. The rollup trigger is off for
    // the bulk load; the rollups are then computed in one pass.
    let t = Instant::now();
    client
        .batch_execute("ALTER TABLE corral_usage_hour DISABLE TRIGGER USER")
        .await
        .expect("trigger off");
    for h in 0..hosts {
        client
            .execute(
                "INSERT INTO corral_usage_hour (host_id, period, container_id, team, labels,
                   name, duration_ms, cpu_usec, throttled_usec, cpu_reserved_core_usec,
                   mem_byte_s, mem_reserved_byte_s, io_rbytes, io_wbytes, io_rios, io_wios,
                   oom_kills, mem_peak, pids_peak, shipped_ms)
                 SELECT $1::text, $2::bigint + p * 3600, 'c' || c, 'team-' || (c % 10), '',
                   'c' || c, 3600000, 30000000, 0, 0, 3865470566400, 0, 0, 0, 0, 0, 0,
                   1073741824, 3, 0
                 FROM generate_series(0::bigint, $3::bigint - 1) p,
                   generate_series(0::bigint, $4::bigint - 1) c",
                &[&format!("host-{h:02}"), &from, &hours, &(containers as i64)],
            )
            .await
            .expect("generate");
    }
    client
        .batch_execute("ALTER TABLE corral_usage_hour ENABLE TRIGGER USER")
        .await
        .expect("trigger on");
    let load = t.elapsed();
    let t = Instant::now();
    pg::rebuild_rollups(&mut client).await.expect("rollups");
    let rollup = t.elapsed();
    client
        .batch_execute(
            "ANALYZE corral_usage_hour; ANALYZE corral_usage_day; ANALYZE corral_usage_month",
        )
        .await
        .expect("analyze");
    let size = |t: &'static str| {
        let c = &client;
        async move {
            c.query_one(
                "SELECT pg_size_pretty(pg_total_relation_size($1::text::regclass))",
                &[&t],
            )
            .await
            .expect("size")
            .get::<_, String>(0)
        }
    };
    println!(
        "hours generated in {:.1} s ({:.0} rows/s), rollups in {:.1} s; with indexes: hours {}, days {}, months {}\n",
        load.as_secs_f64(),
        rows as f64 / load.as_secs_f64(),
        rollup.as_secs_f64(),
        size("corral_usage_hour").await,
        size("corral_usage_day").await,
        size("corral_usage_month").await,
    );
    let cards = vec![RateCard {
        effective_from: i64::MIN,
        currency: "EUR".into(),
        cpu_core_hour_used: 10_000,
        cpu_core_hour_reserved: 0,
        mem_gib_hour_used: 1_000,
        mem_gib_hour_reserved: 0,
        io_gib: 0,
    }];
    // A statement as the Fleet page asks for it: from the month's start to the next hour.
    let month = backend::metering::calendar::month_start(now).max(from);
    let team = "team-3".to_owned();
    let host = "host-01".to_owned();
    let cases: [(&str, i64, hub::Scope<'_>); 4] = [
        ("this month, every team", month, hub::Scope::default()),
        (
            "this month, one team",
            month,
            hub::Scope {
                team: Some(&team),
                ..hub::Scope::default()
            },
        ),
        (
            "this month, one host",
            month,
            hub::Scope {
                host: Some(&host),
                ..hub::Scope::default()
            },
        ),
        ("the whole range, every team", from, hub::Scope::default()),
    ];
    println!("| statement                    | container-hours | ms (median of 3) |");
    println!("|------------------------------|-----------------|------------------|");
    for (what, lo, scope) in cases {
        let mut times = Vec::new();
        let mut total = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let r = hub::priced(&client, &cards, lo, now + HOUR, &scope)
                .await
                .expect("statement");
            times.push(t.elapsed());
            total = r.values().map(|r| r.total.usage.cpu_usec).sum::<i64>();
        }
        let read = total / 30_000_000;
        println!("| {what:<28} | {read:>15} | {:>16} |", ms(median(times)));
    }
}

fn main() {
    let containers = env_usize("CORRAL_BENCH_CONTAINERS", 1000);
    let hosts = env_usize("CORRAL_BENCH_HOSTS", 10);
    let days = env_usize("CORRAL_BENCH_DAYS", 365);
    let only = std::env::var("CORRAL_BENCH_ONLY").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pg = Postgres::start();
    rt.block_on(async {
        if only.is_empty() || only == "ship" {
            bench_ship(&pg, containers).await;
        }
        if only.is_empty() || only == "hub" {
            bench_hub(&pg, hosts, containers, days).await;
        }
    });
}
