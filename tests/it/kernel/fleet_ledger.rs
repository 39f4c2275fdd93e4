//! The fleet's shared ledger on a real PostgreSQL (issue 19): two daemons standing in for two
//! hosts (`node-a`, `node-b`) ship their hourly ledger to one PostgreSQL started by the test
//! (`initdb` + `pg_ctl`, password auth), a third daemon is the hub. Containers burn CPU in one
//! team on both hosts.
//! - A budget crossed only by the sum of both hosts' usage throttles the team on the host
//!   that used little of it.
//! - The hub's statement for the team equals the sum of the hosts' own bills to the
//!   microsecond (CPU µs and cost), per host and in total.
//! - PostgreSQL stopped while a container burns: the host meters on, fleet-wide writes are
//!   refused with `ledger_unavailable`, and after PostgreSQL returns the backlog drains and
//!   the totals match exactly again.
//! - A host daemon killed (-9) right after PostgreSQL committed a shipment and before the
//!   host forgot it re-sends it after the restart: totals still match, nothing counted twice.
//! - A host that stops for good is shown stale by the hub, its shipped usage still counted.
//!
//! Skipped in the VM (no PostgreSQL there).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use backend::client::{Client, ClientError};
use hyper::Method;
use serde_json::json;
use tests::{
    Daemon,
    containers::{Reaper, add_team, call, create, remove},
    postgres::{Postgres, ledger_state},
    rootfs::Rootfs,
};

use super::team_pool::{in_vm, team_dirs};

/// The team cgroup's CPU cap as the kernel holds it: cgroup2 `cpu.max` ("2000 100000",
/// "max 100000") or v1 `cpu.cfs_quota_us` ("2000", "-1").
fn team_quota(d: &Daemon, team: &str) -> String {
    for f in ["cpu.max", "cpu.cfs_quota_us"] {
        for dir in team_dirs(d, team) {
            if let Ok(t) = std::fs::read_to_string(dir.join(f)) {
                return t.trim().to_owned();
            }
        }
    }
    panic!("no CPU cap file for team {team}");
}

/// 0.02 CPUs, as the kernel writes it with the 100 ms period.
fn capped(q: &str) -> bool {
    q == "2000 100000" || q == "2000"
}

fn micros(v: f64) -> i64 {
    (v * 1e6).round() as i64
}

/// A host's own bill for `team` this month: (CPU µs, cost micros).
async fn local_bill(c: &Client, team: &str) -> (i64, i64) {
    let r: wire::billing::BillingReport = call(
        c,
        Method::GET,
        &format!("/api/v1/billing?team={team}"),
        None,
    )
    .await
    .unwrap();
    (
        micros(r.total.usage.cpu_seconds),
        micros(r.total.cost.total),
    )
}

/// The hub's statement for `team`: per host (CPU µs, cost micros), and the team's total.
async fn hub_bill(hub: &Client, team: &str) -> (Vec<(String, i64, i64)>, (i64, i64)) {
    hub_bill_in(hub, team, "").await
}

/// [`hub_bill`] over `range` (`&from=…&to=…`; empty: this month so far).
async fn hub_bill_in(
    hub: &Client,
    team: &str,
    range: &str,
) -> (Vec<(String, i64, i64)>, (i64, i64)) {
    let s: wire::fleet::FleetStatement = call(
        hub,
        Method::GET,
        &format!("/api/v1/fleet/statement?team={team}{range}"),
        None,
    )
    .await
    .unwrap();
    let hosts = s
        .host_teams
        .iter()
        .map(|l| (l.host.clone(), l.cpu_usec, l.cost_micros))
        .collect();
    let t = s.teams.iter().find(|t| t.team == team);
    (hosts, t.map_or((0, 0), |t| (t.cpu_usec, t.cost_micros)))
}

/// Waits until both hosts shipped everything and the hub's statement equals the sum of their
/// own bills; returns (node-a, node-b, hub total).
async fn reconciled(
    a: &Daemon,
    b: &Daemon,
    hub: &Daemon,
    team: &str,
    what: &str,
) -> ((i64, i64), (i64, i64), (i64, i64)) {
    let t = Instant::now();
    // The same figures twice, 1.5 s apart: a removed container's last reading is booked at the
    // ledger flush after its removal.
    let mut last = None;
    loop {
        let (la, lb) = (
            local_bill(&a.unix_client(), team).await,
            local_bill(&b.unix_client(), team).await,
        );
        let (hosts, total) = hub_bill(&hub.unix_client(), team).await;
        let of = |h: &str| {
            hosts
                .iter()
                .find(|(id, ..)| id == h)
                .map_or((0, 0), |(_, c, m)| (*c, *m))
        };
        let drained = [a, b]
            .iter()
            .all(|d| ledger_state(d).is_some_and(|l| l.backlog_rows == 0 && l.connected));
        let equal = drained
            && of("node-a") == la
            && of("node-b") == lb
            && total == (la.0 + lb.0, la.1 + lb.1);
        let now = Some((la, lb, total));
        if equal && last == now {
            println!(
                "{what}: node-a {} µs / {} µ¤, node-b {} µs / {} µ¤, hub {} µs / {} µ¤ (equal) after {:.1} s",
                la.0,
                la.1,
                lb.0,
                lb.1,
                total.0,
                total.1,
                t.elapsed().as_secs_f64()
            );
            return (la, lb, total);
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what}: hub {hosts:?} total {total:?} vs node-a {la:?} node-b {lb:?}\nnode-a log:\n{}",
            a.log()
        );
        last = if equal { now } else { None };
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

/// A busy loop (`light`: one that mostly sleeps). No limit of its own: on cgroup v1 a team
/// cap below a member's own cap is refused by the kernel.
async fn burn(c: &Client, rootfs: &Rootfs, team: &str, light: bool) -> String {
    let name = tests::unique("burn");
    let script = if light {
        "while :; do i=0; while [ $i -lt 200 ]; do i=$((i+1)); done; sleep 0.05; done"
    } else {
        "while :; do :; done"
    };
    create(
        c,
        json!({"name": name, "team": team, "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", script], "start": true}),
    )
    .await;
    name
}

#[tokio::test]
async fn two_hosts_ship_to_one_ledger_and_the_hub_bills_their_sum_exactly() {
    if in_vm() {
        println!("skipped: no PostgreSQL in the VM");
        return;
    }
    let mut pg = Postgres::start();
    // Metering every second, the ledger written every second.
    let every_second = ["--sample-interval", "1", "--ledger-flush", "1"];
    let start =
        |id: &str, extra: &[&str]| pg.daemon(id, None, &[&every_second[..], extra].concat());
    let a = start("node-a", &["--advertise-url", "http://node-a.example:7700"]);
    let mut b = start("node-b", &[]);
    let hub = start("hub", &["--hub", "--stale-after", "8"]);
    let _reapers: Vec<Reaper> = [&a, &b, &hub].iter().map(|d| Reaper::new(d)).collect();

    // The fleet's rate card from the month's start, seeded in PostgreSQL (the API prices only
    // hours to come); every host pulls it.
    let pgc = pg.client().await;
    let month =
        backend::metering::calendar::month_start(backend::metering::sampler::wall_ms() / 1000);
    let t = Instant::now();
    while pgc
        .execute(
            "INSERT INTO corral_rate_card (effective_from, currency, cpu_core_hour_used_micros,
               cpu_core_hour_reserved_micros, mem_gib_hour_used_micros,
               mem_gib_hour_reserved_micros, io_gib_micros, created_at_ms)
             VALUES ($1, 'EUR', 3210987, 123457, 45679, 7, 1000001, 0)",
            &[&month],
        )
        .await
        .is_err()
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "schema never created:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for d in [&a, &b, &hub] {
        let t = Instant::now();
        loop {
            let r: wire::billing::RateCards =
                call(&d.unix_client(), Method::GET, "/api/v1/billing/rates", None)
                    .await
                    .unwrap();
            if r.current.currency == "EUR" {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "rate card not pulled"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let rootfs = Rootfs::new();
    let team = tests::unique("fleet");
    // Created through node-a: the team is the fleet's, node-b pulls it.
    add_team(&a.unix_client(), &team).await;
    super::fleet_teams::wait_for_team(&b, &team).await;
    // node-a burns little, node-b much.
    let slow = burn(&a.unix_client(), &rootfs, &team, true).await;
    let fast = burn(&b.unix_client(), &rootfs, &team, false).await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    // The hub lists the hosts, each fresh, node-a with its advertised API.
    let hosts: wire::fleet::FleetHosts =
        call(&hub.unix_client(), Method::GET, "/api/v1/fleet/hosts", None)
            .await
            .unwrap();
    let ids: Vec<&str> = hosts.hosts.iter().map(|h| h.host_id.as_str()).collect();
    assert_eq!(ids, ["hub", "node-a", "node-b"], "{hosts:?}");
    assert!(hosts.hosts.iter().all(|h| !h.stale), "{hosts:?}");
    assert_eq!(
        hosts.hosts[1].api_url.as_deref(),
        Some("http://node-a.example:7700")
    );

    // A budget that only the two hosts together exceed: set through node-a (PostgreSQL
    // first), pulled by node-b. node-a alone uses about a tenth of it.
    let (ua, ub) = (
        local_bill(&a.unix_client(), &team).await.0,
        local_bill(&b.unix_client(), &team).await.0,
    );
    let core_hours = 0.9 * (ua + ub) as f64 / 3.6e9;
    println!(
        "own usage before the budget: node-a {ua} µs, node-b {ub} µs; budget {core_hours:.6} core-hours"
    );
    let _: wire::TeamBudget = call(
        &a.unix_client(),
        Method::PUT,
        &format!("/api/v1/teams/{team}/budget"),
        Some(json!({"period": "day", "cpu_core_hours": core_hours,
            "ladder": [{"at_percent": 100, "action": "cpus", "cpus": 0.02}]})),
    )
    .await
    .unwrap();
    for (id, d) in [("node-a", &a), ("node-b", &b)] {
        let t = Instant::now();
        let tb = loop {
            let tb: Result<wire::TeamBudget, ClientError> = call(
                &d.unix_client(),
                Method::GET,
                &format!("/api/v1/teams/{team}/budget"),
                None,
            )
            .await;
            if let Ok(tb) = tb
                && tb.step == Some(0)
            {
                break tb;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{id}: the fleet's usage never crossed the budget:\n{}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let fleet = tb.fleet.clone().expect("the other host's share");
        let own = tb.used_cpu_core_hours - fleet.used_cpu_core_hours;
        println!(
            "{id}: step in force at {:.0} % of the budget; own {:.0} %, the other host {:.0} % ({:.1} s)",
            tb.percent,
            own / core_hours * 100.0,
            fleet.used_cpu_core_hours / core_hours * 100.0,
            t.elapsed().as_secs_f64()
        );
        assert_eq!(fleet.hosts, 1);
        assert_eq!(tb.enforced.cpus, Some(0.02), "{tb:?}");
        // In the kernel, where the team's containers feel it.
        let q = team_quota(d, &team);
        assert!(capped(&q), "{id}: the team's cgroup holds {q:?}");
        if id == "node-a" {
            assert!(
                own < 0.5 * core_hours,
                "node-a is throttled by the fleet's usage, not its own: {tb:?}"
            );
        }
    }
    // Removed the same way: the tombstone reaches node-b and lifts its step.
    let _: serde_json::Value = call(
        &a.unix_client(),
        Method::DELETE,
        &format!("/api/v1/teams/{team}/budget"),
        None,
    )
    .await
    .unwrap();
    let t = Instant::now();
    while call::<wire::TeamBudget>(
        &b.unix_client(),
        Method::GET,
        &format!("/api/v1/teams/{team}/budget"),
        None,
    )
    .await
    .is_ok()
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "node-b kept the budget"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (id, d) in [("node-a", &a), ("node-b", &b)] {
        let t = Instant::now();
        while capped(&team_quota(d, &team)) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{id}: the cap stayed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Usage stops; the hub's bill equals the hosts' own, to the microsecond.
    remove(&a.unix_client(), &slow).await;
    remove(&b.unix_client(), &fast).await;
    let (la, lb, _) = reconciled(&a, &b, &hub, &team, "two hosts").await;
    assert!(la.0 > 0 && lb.0 > la.0 && la.1 > 0, "{la:?} {lb:?}");
    let text = hub.corral(&["fleet", "statement", "--team", &team]);
    assert!(text.contains("node-a") && text.contains("node-b"), "{text}");
    let text = hub.corral(&["fleet", "hosts"]);
    assert!(text.contains("node-b") && text.contains("up"), "{text}");
    assert!(a.corral(&["info"]).contains("Ledger:"));

    // PostgreSQL away while node-a burns: metering goes on, fleet-wide writes are refused.
    let busy = burn(&a.unix_client(), &rootfs, &team, false).await;
    pg.pause();
    let before = local_bill(&a.unix_client(), &team).await.0;
    let t = Instant::now();
    loop {
        let l = ledger_state(&a).unwrap();
        if l.last_error.is_some() && l.backlog_rows > 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no outage seen: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = local_bill(&a.unix_client(), &team).await.0;
    assert!(during > before, "metering goes on without PostgreSQL");
    let refused = call::<serde_json::Value>(
        &a.unix_client(),
        Method::PUT,
        &format!("/api/v1/teams/{team}/budget"),
        Some(json!({"period": "day", "cpu_core_hours": 1.0})),
    )
    .await
    .expect_err("a fleet-wide budget cannot change without the ledger");
    match refused {
        ClientError::Api { status, code, .. } => {
            assert_eq!(
                (status.as_u16(), code.as_str()),
                (503, "ledger_unavailable")
            );
        }
        other => panic!("{other:?}"),
    }
    let backlog = ledger_state(&a).unwrap().backlog_rows;
    pg.resume();
    remove(&a.unix_client(), &busy).await;
    reconciled(
        &a,
        &b,
        &hub,
        &team,
        &format!("after an outage with {backlog} rows waiting"),
    )
    .await;

    // node-b killed -9 between PostgreSQL's commit of a shipment and forgetting it.
    let busy = burn(&b.unix_client(), &rootfs, &team, false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::write(b.state.path().join("state/.crash-at"), "ledger-shipped").unwrap();
    let t = Instant::now();
    while !b.exited() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "node-b never reached the point"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.restart();
    remove(&b.unix_client(), &busy).await;
    reconciled(&a, &b, &hub, &team, "after kill -9 mid-shipment").await;
    // The test's own connection did not survive the outage.
    let pgc = pg.client().await;
    let rows: i64 = pgc
        .query_one(
            "SELECT count(*) FROM corral_usage_hour WHERE team = $1",
            &[&team],
        )
        .await
        .unwrap()
        .get(0);
    println!("{rows} hourly rows of the team in PostgreSQL");

    // An older copy of a row arriving late (a replay from an earlier shipment) changes
    // nothing: every column keeps the greater of stored and sent.
    let before = hub_bill(&hub.unix_client(), &team).await;
    let r = pgc
        .query_one(
            "SELECT period, container_id, labels, name FROM corral_usage_hour
             WHERE host_id = 'node-b' AND team = $1 ORDER BY cpu_usec DESC LIMIT 1",
            &[&team],
        )
        .await
        .unwrap();
    let stale = backend::ledger::outbox::Row {
        period: r.get(0),
        container_id: r.get(1),
        team: team.clone(),
        labels: r.get(2),
        name: r.get(3),
        duration_ms: 1,
        q: backend::metering::billing::Quantities {
            cpu_usec: 1,
            ..Default::default()
        },
        version: 0,
    };
    let mut pgc = pgc;
    backend::ledger::pg::ship(&mut pgc, "node-b", &[stale])
        .await
        .unwrap();
    assert_eq!(hub_bill(&hub.unix_client(), &team).await, before);

    // The day and month rollups (kept by a trigger through the outage, the kill -9 and the
    // replay) hold exactly the hours' sums: a statement over the whole month reads the month
    // table and equals this month so far, read from hours; one over today reads the day
    // table and equals today's hours as PostgreSQL sums them.
    let now = backend::metering::sampler::wall_ms() / 1000;
    let (month, next) = (
        backend::metering::calendar::month_start(now),
        backend::metering::calendar::next_month(now),
    );
    let whole_month = hub_bill_in(
        &hub.unix_client(),
        &team,
        &format!("&from={month}&to={next}"),
    )
    .await;
    assert_eq!(whole_month, before, "month table");
    let day = backend::metering::calendar::day_start(now);
    let (hosts, _) = hub_bill_in(
        &hub.unix_client(),
        &team,
        &format!("&from={day}&to={}", day + 86_400),
    )
    .await;
    for (host, cpu, _) in &hosts {
        let hours: i64 = pgc
            .query_one(
                "SELECT sum(cpu_usec)::bigint FROM corral_usage_hour
                 WHERE host_id = $1 AND team = $2 AND period >= $3 AND period < $4",
                &[host, &team, &day, &(day + 86_400)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(*cpu, hours, "day table of {host}");
    }
    println!("rollups: month and day statements equal the hours' sums ({hosts:?})");

    // A second database shipping as node-a (a machine given the same --host-id) is refused
    // while node-a is alive, and says why.
    let intruder = pg.daemon("node-a", None, &every_second);
    let t = Instant::now();
    let why = loop {
        if let Some(e) = ledger_state(&intruder).unwrap().last_error {
            break e;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the intruder shipped as node-a"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(why.contains("another database"), "{why}");
    let (_, lb, _) = reconciled(&a, &b, &hub, &team, "with an intruder refused").await;

    // node-b gone for good: the hub shows it stale, and its usage up to its last shipment
    // stays in the fleet's statement.
    b.stop();
    let t = Instant::now();
    loop {
        let hosts: wire::fleet::FleetHosts =
            call(&hub.unix_client(), Method::GET, "/api/v1/fleet/hosts", None)
                .await
                .unwrap();
        let stale = |id: &str| hosts.hosts.iter().any(|h| h.host_id == id && h.stale);
        if stale("node-b") {
            assert!(!stale("node-a"), "{hosts:?}");
            println!(
                "node-b stale at the hub {:.1} s after it stopped (--stale-after 8)",
                t.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{hosts:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (hosts, _) = hub_bill(&hub.unix_client(), &team).await;
    assert!(
        hosts
            .iter()
            .any(|(id, c, m)| id == "node-b" && (*c, *m) == lb),
        "node-b's last shipped usage {lb:?} counted: {hosts:?}"
    );
}
