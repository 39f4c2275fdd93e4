//! The shared ledger is reached over verified TLS only (issue 19): a PostgreSQL of the test's
//! own serves TLS with a self-signed certificate for `localhost`. A daemon given that
//! certificate as `--ledger-ca` ships (and registers in `corral_hosts`); one trusting only the
//! system's roots refuses the server — as it would a man in the middle — names the
//! certificate in its ledger state, and never registers.
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
