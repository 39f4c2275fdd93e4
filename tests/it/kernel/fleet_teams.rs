//! Teams are the fleet's with a shared ledger (issue 19): two daemons standing in for two
//! hosts on one PostgreSQL started by the test.
//! - A team created through one host is created on the other (its cgroup pool too); the name
//!   cannot be taken twice.
//! - Ceilings set through either host land in both hosts' kernels; a patch merges with the
//!   fleet's copy; a refused patch changes nothing anywhere.
//! - A removal refused on the host that still has the team's containers; removed through
//!   another, the team goes everywhere, on that host once its containers are gone.
//! - Without PostgreSQL a team cannot be created: 503 `ledger_unavailable`, nothing created.
//!
//! Skipped in the VM (no PostgreSQL there).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use backend::client::ClientError;
use hyper::Method;
use serde_json::json;
use tests::{
    Daemon,
    containers::{Reaper, api_status, call, create, remove},
    postgres::Postgres,
    rootfs::Rootfs,
};

use super::team_pool::{in_vm, team_dirs};

/// Waits (up to 20 s: a few shipper rounds) until `d` has `team`; its definition there.
pub async fn wait_for_team(d: &Daemon, team: &str) -> wire::TeamDetail {
    until(d, team, "pulled", |t| t.cloned()).await
}

/// Polls `GET /teams/{team}` on `d` until `done` gives a value (it gets `None` while the
/// team does not exist there).
async fn until<T>(
    d: &Daemon,
    team: &str,
    what: &str,
    done: impl Fn(Option<&wire::TeamDetail>) -> Option<T>,
) -> T {
    let t = Instant::now();
    loop {
        let got: Result<wire::TeamDetail, _> = call(
            &d.unix_client(),
            Method::GET,
            &format!("/api/v1/teams/{team}"),
            None,
        )
        .await;
        let got = match got {
            Ok(t) => Some(t),
            Err(ClientError::Api { status, .. }) if status.as_u16() == 404 => None,
            Err(e) => panic!("{e:?}"),
        };
        if let Some(v) = done(got.as_ref()) {
            println!(
                "team {team} {what} after {:.1} s",
                t.elapsed().as_secs_f64()
            );
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "team {team} not {what}: {got:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `pids.max` of the team's group as the kernel holds it.
fn pids_max(d: &Daemon, team: &str) -> String {
    team_dirs(d, team)
        .iter()
        .find_map(|dir| std::fs::read_to_string(dir.join("pids.max")).ok())
        .expect("a pids.max for the team")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_team_created_limited_and_removed_through_one_host_is_so_on_every_host() {
    if in_vm() {
        println!("skipped: no PostgreSQL in the VM");
        return;
    }
    let mut pg = Postgres::start();
    let a = pg.daemon("node-a", None, &[]);
    let b = pg.daemon("node-b", None, &[]);
    let _reapers = (Reaper::new(&a), Reaper::new(&b));
    let (ca, cb) = (a.unix_client(), b.unix_client());

    // Created through node-a: node-b has it, with its cgroup pool.
    let team = tests::unique("ft");
    let _: wire::Team = call(
        &ca,
        Method::POST,
        "/api/v1/teams",
        Some(json!({"name": team, "description": "shared"})),
    )
    .await
    .unwrap();
    let there = wait_for_team(&b, &team).await;
    assert_eq!(there.description, "shared");
    assert!(team_dirs(&b, &team).iter().all(|d| d.is_dir()));
    let taken = call::<wire::Team>(
        &cb,
        Method::POST,
        "/api/v1/teams",
        Some(json!({"name": team})),
    )
    .await
    .expect_err("the name is the fleet's");
    assert_eq!(api_status(taken).0, 409);

    // Ceilings through node-a land in node-b's kernel.
    let _: wire::Limits = call(
        &ca,
        Method::PATCH,
        &format!("/api/v1/teams/{team}/limits"),
        Some(json!({"cpus": 0.5, "pids_max": 40})),
    )
    .await
    .unwrap();
    until(&b, &team, "capped", |t| {
        t.filter(|t| t.limits.cpus == Some(0.5) && t.limits.pids_max == Some(40))
            .map(drop)
    })
    .await;
    assert_eq!(pids_max(&b, &team), "40");

    // A refused patch through node-b changes nothing, here or there.
    let refused = call::<wire::Limits>(
        &cb,
        Method::PATCH,
        &format!("/api/v1/teams/{team}/limits"),
        Some(json!({"cpus": -1})),
    )
    .await
    .expect_err("negative cpus");
    let (status, _, field) = api_status(refused);
    assert_eq!((status, field.as_deref()), (400, Some("cpus")));

    // A patch through node-b merges with the fleet's copy: cpus stay, pids and the
    // description change on node-a too.
    let _: wire::Team = call(
        &cb,
        Method::PATCH,
        &format!("/api/v1/teams/{team}"),
        Some(json!({"description": "renamed", "limits": {"pids_max": 60}})),
    )
    .await
    .unwrap();
    let on_a = until(&a, &team, "changed through node-b", |t| {
        t.filter(|t| t.description == "renamed" && t.limits.pids_max == Some(60))
            .cloned()
    })
    .await;
    assert_eq!(on_a.limits.cpus, Some(0.5), "{on_a:?}");
    assert_eq!(pids_max(&a, &team), "60");

    // Every change pulled is in node-b's audit log as the ledger's.
    let rows: Vec<wire::AuditEntry> = call(&cb, Method::GET, "/api/v1/audit?limit=200", None)
        .await
        .unwrap();
    let target = format!("team:{team}");
    for action in ["team.create", "team.update"] {
        assert!(
            rows.iter().any(|r| r.actor == "ledger"
                && r.action == action
                && r.target.as_deref() == Some(&target)),
            "{action} pulled: {rows:?}"
        );
    }

    // A container of the team on node-b: removing the team there is refused; removed through
    // node-a, it goes from node-a at once and from node-b once the container is gone.
    let rootfs = Rootfs::new();
    let job = tests::unique("ftjob");
    create(
        &cb,
        json!({"name": job, "team": team, "rootfs": rootfs.path(), "command": ["/bin/true"]}),
    )
    .await;
    let refused =
        call::<serde_json::Value>(&cb, Method::DELETE, &format!("/api/v1/teams/{team}"), None)
            .await
            .expect_err("the team has a container here");
    assert_eq!(api_status(refused).0, 409);
    let _: serde_json::Value = call(&ca, Method::DELETE, &format!("/api/v1/teams/{team}"), None)
        .await
        .unwrap();
    until(&a, &team, "removed", |t| t.is_none().then_some(())).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        wait_for_team(&b, &team).await.containers.contains(&job),
        "kept on node-b while its container is there"
    );
    remove(&cb, &job).await;
    until(&b, &team, "removed", |t| t.is_none().then_some(())).await;
    let t = Instant::now();
    while team_dirs(&b, &team).iter().any(|d| d.exists()) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "node-b's team group stays"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Without PostgreSQL no team is created anywhere.
    pg.pause();
    let other = tests::unique("ft");
    let refused = call::<wire::Team>(
        &ca,
        Method::POST,
        "/api/v1/teams",
        Some(json!({"name": other})),
    )
    .await
    .expect_err("no ledger");
    let (status, code, _) = api_status(refused);
    assert_eq!((status, code.as_str()), (503, "ledger_unavailable"));
    let gone = call::<wire::TeamDetail>(&ca, Method::GET, &format!("/api/v1/teams/{other}"), None)
        .await
        .expect_err("not created");
    assert_eq!(api_status(gone).0, 404);
    pg.resume();
}
