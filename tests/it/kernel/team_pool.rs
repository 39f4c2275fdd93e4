//! Team pools on the real kernel (issue 13, part 1): a team's cgroup exists with the team, its
//! ceilings are enforced by the hierarchy over containers that have no limits of their own,
//! change live, and are read from the host's own cgroup files. Run as root with
//! `--test-threads=1`; they work on this hybrid host and in the pure cgroup-v2 VM (longer
//! windows there). The `Reaper` kills leftovers and removes the daemon's subtree on failure.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use backend::{
    cgroup::{Cgroups, GroupPath, LimitsUpdate},
    client::Client,
};
use hyper::Method;
use serde_json::json;
use tests::{
    Daemon,
    containers::{
        Reaper, billing_last_day, call, cgroup_mounts, create, logs, remove, wait_exited,
    },
    rootfs::Rootfs,
};

pub(super) fn in_vm() -> bool {
    std::env::var_os("CORRAL_IN_VM").is_some_and(|v| v == "1")
}

/// The team's directories in every hierarchy of the host that holds the daemon's subtree.
pub(super) fn team_dirs(d: &Daemon, team: &str) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = cgroup_mounts()
        .into_iter()
        .filter(|m| m.join(&d.cgroup_root).is_dir())
        .map(|m| m.join(&d.cgroup_root).join(team))
        .collect();
    assert!(!dirs.is_empty(), "the daemon's subtree exists somewhere");
    dirs
}

/// The team cgroup's cumulative CPU time in µs, from the host's files: cgroup2 `cpu.stat`
/// `usage_usec`, or v1 `cpuacct.usage` (ns).
pub(super) fn team_cpu_usec(d: &Daemon, team: &str) -> u64 {
    for dir in team_dirs(d, team) {
        if let Ok(t) = fs::read_to_string(dir.join("cpuacct.usage")) {
            return t.trim().parse::<u64>().unwrap() / 1000;
        }
    }
    for dir in team_dirs(d, team) {
        if let Ok(t) = fs::read_to_string(dir.join("cpu.stat"))
            && let Some(v) = t
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse().ok())
        {
            return v;
        }
    }
    panic!("no cpu usage file for team {team}");
}

/// OOM kills in the team's cgroup and below, from the host's files: cgroup2 `memory.events`
/// (hierarchical) or v1 `memory.oom_control` (counted in the victim's group only, so the
/// team's containers are summed), `oom_kill N`.
fn team_oom_kills(d: &Daemon, team: &str) -> u64 {
    fn kills(dir: &std::path::Path) -> Option<u64> {
        fs::read_to_string(dir.join("memory.events"))
            .or_else(|_| fs::read_to_string(dir.join("memory.oom_control")))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
    }
    let dir = team_dirs(d, team)
        .into_iter()
        .find(|dir| kills(dir).is_some())
        .expect("an oom_kill counter");
    let own = kills(&dir).unwrap_or(0);
    let below: u64 = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| kills(&e.path()))
        .sum();
    own.max(below)
}

/// OOM kills in the team's bill over the last day.
async fn billed_oom_kills(c: &backend::client::Client, team: &str) -> u64 {
    let r = billing_last_day(c, &format!("team={team}")).await;
    r.teams
        .iter()
        .filter(|t| t.team == team)
        .map(|t| t.usage.oom_kills)
        .sum()
}

/// The team's CPU ceiling as the kernel holds it: `cpu.max` or v1 `cpu.cfs_quota_us`.
fn kernel_cpu_max(d: &Daemon, team: &str) -> String {
    team_dirs(d, team)
        .into_iter()
        .find_map(|dir| {
            fs::read_to_string(dir.join("cpu.max"))
                .or_else(|_| fs::read_to_string(dir.join("cpu.cfs_quota_us")))
                .ok()
        })
        .unwrap()
        .trim()
        .to_owned()
}

/// Cores the team used over `window`, measured from its cgroup's cumulative usage.
fn cores_over(d: &Daemon, team: &str, window: Duration) -> f64 {
    let (u0, t0) = (team_cpu_usec(d, team), Instant::now());
    std::thread::sleep(window);
    let (u1, t1) = (team_cpu_usec(d, team), Instant::now());
    (u1 - u0) as f64 / (t1 - t0).as_micros() as f64
}

async fn patch_limits(c: &Client, team: &str, body: serde_json::Value) -> wire::Limits {
    call(
        c,
        Method::PATCH,
        &format!("/api/v1/teams/{team}/limits"),
        Some(body),
    )
    .await
    .unwrap_or_else(|e| panic!("patch team {team}: {e}"))
}

async fn add_team(c: &Client, team: &str) {
    let _: serde_json::Value = call(
        c,
        Method::POST,
        "/api/v1/teams",
        Some(json!({"name": team})),
    )
    .await
    .unwrap();
}

async fn delete_team(c: &Client, team: &str) {
    let _: serde_json::Value = call(c, Method::DELETE, &format!("/api/v1/teams/{team}"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn two_busy_loops_share_the_team_ceiling_and_it_moves_live() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let rootfs = Rootfs::new();
    let team = tests::unique("pool");
    add_team(&c, &team).await;
    assert!(
        team_dirs(&d, &team).iter().all(|p| p.is_dir()),
        "the team's cgroup exists before any container"
    );
    // Other load on the host must not be what limits the loops: Corral's subtree and the team
    // get the highest CPU weight (the container has none of its own).
    let engine = Cgroups::host(&d.cgroup_root).unwrap();
    engine
        .open(&GroupPath::default())
        .unwrap()
        .apply(&LimitsUpdate {
            cpu_weight: Some(10_000),
            ..LimitsUpdate::default()
        })
        .unwrap();
    let l = patch_limits(&c, &team, json!({"cpus": 1.0, "cpu_weight": 10000})).await;
    assert_eq!(l.cpus, Some(1.0), "{l:?}");
    assert_eq!(l.cpu_weight, Some(10_000), "{l:?}");
    let quota = kernel_cpu_max(&d, &team);
    assert!(quota.starts_with("100000"), "kernel holds {quota:?}");

    let loops = [tests::unique("loop"), tests::unique("loop")];
    for n in &loops {
        let ct = create(
            &c,
            json!({"name": n, "team": team, "rootfs": rootfs.path(),
                   "command": ["/bin/sh", "-c", "while :; do :; done"], "start": true}),
        )
        .await;
        assert_eq!(ct.status, "running");
        assert_eq!(ct.limits.cpus, None, "the container itself is unlimited");
    }
    let (settle, window) = if in_vm() {
        (Duration::from_secs(2), Duration::from_secs(6))
    } else {
        (Duration::from_secs(1), Duration::from_secs(3))
    };
    std::thread::sleep(settle);
    let used = cores_over(&d, &team, window);
    println!("team ceiling 1.0 CPU: two busy loops used {used:.3} CPU together over {window:?}");
    assert!(used <= 1.05, "used {used:.3} CPU under a 1.0 ceiling");
    assert!(used >= 0.5, "the loops ran: {used:.3} CPU");

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        println!("host has {cpus} CPU: skipping the 1.6 ceiling part");
    } else {
        let l = patch_limits(&c, &team, json!({"cpus": 1.6})).await;
        assert_eq!(l.cpus, Some(1.6), "{l:?}");
        std::thread::sleep(settle);
        let used = cores_over(&d, &team, window);
        println!(
            "team ceiling 1.6 CPU (raised live): two busy loops used {used:.3} CPU together over {window:?}"
        );
        assert!(used <= 1.6 * 1.05, "used {used:.3} CPU under a 1.6 ceiling");
        assert!(used >= 1.4, "raised live to 1.6: used only {used:.3} CPU");
    }

    // Cleared: no ceiling in the kernel any more.
    let l = patch_limits(&c, &team, json!({"cpus": "max"})).await;
    assert_eq!(l.cpus, None, "{l:?}");
    let quota = kernel_cpu_max(&d, &team);
    assert!(quota.starts_with("max") || quota == "-1", "{quota:?}");

    // The team's group outlives its containers, and goes with the team.
    for n in &loops {
        remove(&c, n).await;
    }
    assert!(team_dirs(&d, &team).iter().all(|p| p.is_dir()));
    delete_team(&c, &team).await;
    assert!(team_dirs(&d, &team).iter().all(|p| !p.exists()));
}

#[tokio::test]
async fn a_team_memory_ceiling_oom_kills_inside_the_team_and_not_outside() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let rootfs = Rootfs::new();
    let (team, other) = (tests::unique("pool"), tests::unique("free"));
    add_team(&c, &team).await;
    add_team(&c, &other).await;
    let l = patch_limits(&c, &team, json!({"memory_max": 32 << 20})).await;
    assert_eq!(l.memory_max, Some(32 << 20), "{l:?}");
    // `tail` holds the whole newline-free input, 64 MiB: twice the team's ceiling. The
    // container's exit code is the pipeline's (137: tail was killed), also if a later OOM kill
    // takes the shell (then it is the shell's SIGKILL).
    let hog = "head -c 67108864 /dev/zero | tail > /dev/null";
    let (inside, outside) = (tests::unique("hog"), tests::unique("hog"));
    for (n, t) in [(&inside, &team), (&outside, &other)] {
        let ct = create(
            &c,
            json!({"name": n, "team": t, "rootfs": rootfs.path(),
                   "command": ["/bin/sh", "-c", hog], "start": true}),
        )
        .await;
        assert_eq!(
            ct.limits.memory_max, None,
            "the container itself is unlimited"
        );
    }
    let wait = Duration::from_secs(if in_vm() { 60 } else { 20 });
    let mut codes = Vec::new();
    for n in [&inside, &outside] {
        codes.push(wait_exited(&c, n, wait).await.exit_code);
    }
    let kills = (team_oom_kills(&d, &team), team_oom_kills(&d, &other));
    println!(
        "hog of 64 MiB: exit {:?} in the team with a 32 MiB ceiling, {:?} outside; team OOM kills {kills:?}",
        codes[0], codes[1]
    );
    assert_eq!(
        codes[0],
        Some(137),
        "killed inside: {}",
        logs(&c, &inside).await
    );
    assert_eq!(
        codes[1],
        Some(0),
        "not killed outside: {}",
        logs(&c, &outside).await
    );
    // The bill holds each container's kills, read from the kernel at its final reading, before
    // its cgroup went. The team's own file keeps them only on cgroup2 (`memory.events` is
    // hierarchical; v1 counts a kill in the container's group, which an exit removes).
    let billed = (
        billed_oom_kills(&c, &team).await,
        billed_oom_kills(&c, &other).await,
    );
    println!("billed OOM kills {billed:?}");
    assert!(
        billed.0 >= 1,
        "the team's bill counted the kill: {billed:?}"
    );
    assert_eq!(billed.1, 0, "no kill in the other team: {billed:?}");
    if in_vm() {
        assert!(
            kills.0 >= 1,
            "the team's cgroup counted the kill: {kills:?}"
        );
    }
    assert_eq!(kills.1, 0, "no kill in the other team: {kills:?}");
    let detail: serde_json::Value = call(&c, Method::GET, &format!("/api/v1/teams/{team}"), None)
        .await
        .unwrap();
    assert_eq!(detail["limits"]["memory_max"], 32 << 20, "{detail}");
    assert!(detail["budget"].is_null(), "{detail}");

    for n in [&inside, &outside] {
        remove(&c, n).await;
    }
    delete_team(&c, &team).await;
    delete_team(&c, &other).await;
}
