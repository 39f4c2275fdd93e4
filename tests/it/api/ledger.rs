//! The shared ledger is reached over verified TLS only (issue 19): a PostgreSQL of the test's
//! own serves TLS with a self-signed certificate for `localhost`. A daemon given that
//! certificate as `--ledger-ca` ships (and registers in `corral_hosts`); one trusting only the
//! system's roots refuses the server — as it would a man in the middle — names the
//! certificate in its ledger state, and never registers. A ledger of schema version 1 gets
//! its day and month rollups from the hours already shipped.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use tests::postgres::{Postgres, ledger_state};

#[tokio::test]
async fn the_ledger_is_reached_over_verified_tls_and_an_unknown_certificate_is_refused() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (pg, ca) = Postgres::start_tls(&key.cert.pem(), &key.signing_key.serialize_pem());
    let url = format!("postgres://corral@localhost:{}/postgres", pg.port);
    let ca = ca.to_str().unwrap();
    let trusting = pg.daemon("trusting", Some(&url), &["--ledger-ca", ca]);
    let untrusting = pg.daemon("untrusting", Some(&url), &[]);

    let t = Instant::now();
    let (ok, refused) = loop {
        let (ok, refused) = (
            ledger_state(&trusting).unwrap(),
            ledger_state(&untrusting).unwrap(),
        );
        if ok.connected && ok.last_error.is_none() && refused.last_error.is_some() {
            break (ok, refused);
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "trusting {ok:?}, untrusting {refused:?}\n{}",
            untrusting.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("with --ledger-ca: {ok:?}\nwithout: {refused:?}");
    let why = refused.last_error.unwrap();
    assert!(why.contains("certificate"), "{why}");
    assert!(!refused.connected);

    let hosts: Vec<String> = pg
        .client()
        .await
        .query("SELECT host_id FROM corral_hosts ORDER BY host_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(hosts, ["trusting"]);
}

/// A shared ledger of schema version 1 (hours only) is upgraded by the first daemon of this
/// build that connects: the day and month rollups start as the exact sums of the hours
/// already there, and the trigger keeps them from then on.
#[tokio::test]
async fn a_version_1_ledger_gets_its_rollups_from_the_hours_already_shipped() {
    let pg = Postgres::start();
    let cfg = backend::ledger::LedgerArgs {
        ledger: Some(format!(
            "postgres://corral@127.0.0.1:{}/postgres?sslmode=disable",
            pg.port
        )),
        ..Default::default()
    }
    .check(Some("old"), Some(tests::postgres::PASSWORD.into()))
    .unwrap()
    .unwrap();
    let mut c = backend::ledger::pg::connect(&cfg).await.unwrap();
    backend::ledger::pg::migrate(&mut c).await.unwrap();
    // As version 1 left it: no rollups, hours of two days and two months shipped.
    c.batch_execute(
        "DROP TRIGGER corral_usage_rollup_insert ON corral_usage_hour;
         DROP TRIGGER corral_usage_rollup_update ON corral_usage_hour;
         DROP TABLE corral_usage_day; DROP TABLE corral_usage_month;
         UPDATE corral_schema SET version = 1;",
    )
    .await
    .unwrap();
    let row = |period: i64, cpu: i64, peak: i64| backend::ledger::outbox::Row {
        period,
        container_id: "c1".into(),
        team: "web".into(),
        labels: String::new(),
        name: "job".into(),
        duration_ms: 3_600_000,
        q: backend::metering::billing::Quantities {
            cpu_usec: cpu,
            mem_peak: peak,
            ..Default::default()
        },
        version: 1,
    };
    // 2026-11-30 23:00, 2026-12-01 00:00 and 01:00 UTC.
    let (nov30, dec1) = (1_796_079_600, 1_796_083_200);
    let rows = [
        row(nov30, 1_000, 5),
        row(dec1, 2_000, 7),
        row(dec1 + 3600, 4_000, 6),
    ];
    backend::ledger::pg::ship(&mut c, "old", &rows)
        .await
        .unwrap();
    drop(c);

    let mut c = backend::ledger::pg::connect(&cfg).await.unwrap();
    backend::ledger::pg::migrate(&mut c).await.unwrap();
    let version: i32 = c
        .query_one("SELECT max(version) FROM corral_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, backend::ledger::pg::SCHEMA_VERSION);
    let (nov30_day, nov) = (dec1 - 86_400, 1_793_491_200); // 2026-11-30, 2026-11-01
    assert_eq!(
        sums(&c, "corral_usage_day").await,
        [(nov30_day, 1_000, 5), (dec1, 6_000, 7)]
    );
    assert_eq!(
        sums(&c, "corral_usage_month").await,
        [(nov, 1_000, 5), (dec1, 6_000, 7)]
    );
    // From now on the trigger: a row grown by a later shipment grows its day and month by
    // the difference; a stale copy changes nothing.
    backend::ledger::pg::ship(&mut c, "old", &[row(dec1, 2_500, 9)])
        .await
        .unwrap();
    backend::ledger::pg::ship(&mut c, "old", &[row(dec1, 100, 1)])
        .await
        .unwrap();
    assert_eq!(
        sums(&c, "corral_usage_day").await,
        [(nov30_day, 1_000, 5), (dec1, 6_500, 9)]
    );
    assert_eq!(
        sums(&c, "corral_usage_month").await,
        [(nov, 1_000, 5), (dec1, 6_500, 9)]
    );
}

/// (period, cpu_usec, mem_peak) of every row of `table`, oldest first.
async fn sums(c: &tokio_postgres::Client, table: &str) -> Vec<(i64, i64, i64)> {
    c.query(
        &format!("SELECT period, cpu_usec, mem_peak FROM {table} ORDER BY period"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}
