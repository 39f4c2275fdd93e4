//! Metering of REAL containers run by the daemon: what a container burns is what it is billed,
//! to the microsecond of the kernel's counter read after it exited — through exit, restart of
//! the container, and kill -9 of the daemon. Run as root with `--test-threads=1`; they work on
//! this hybrid host and in the pure cgroup-v2 VM. Every container is removed, and the `Reaper`
//! kills leftovers and removes the daemon's cgroup subtree even when a test fails.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use backend::{
    cgroup::{Cgroups, GroupPath, LimitsUpdate},
    client::Client,
};
use hyper::Method;
use tests::{
    Daemon,
    containers::{Reaper, action, billing_last_day, call, create, remove, wait_exited},
    rootfs::Rootfs,
};

/// The container's billed CPU time (µs) over the last day, from the billing API.
async fn billed_usec(c: &Client, name: &str) -> u64 {
    let r = billing_last_day(c, &format!("container={name}")).await;
    r.containers
        .iter()
        .filter(|l| l.name == name)
        .map(|l| (l.usage.cpu_seconds * 1e6).round() as u64)
        .sum()
}

/// The kernel's cumulative CPU usage of the team's cgroup, read through the engine like
/// metering. The container's own cgroup goes once its final reading is taken (as runc removes
/// it); the team's, which only holds the test's containers, keeps their usage: the kernel
/// charges every ancestor (v1 cpuacct at charge time, v2 `cpu.stat` when a child is removed).
fn kernel_usec(engine: &Cgroups, team: &str) -> u64 {
    engine
        .open(&GroupPath::new([team]).unwrap())
        .expect("the team's cgroup exists")
        .stats()
        .cpu_usage_usec
        .expect("cpu usage")
}

/// `billed` (µs) is what the kernel counted. The kernel counts ns and shows µs (cgroup2
/// `usage_usec`, v1 `cpuacct.usage` / 1000 here): each run's bill is its own counter cut to µs,
/// the team's counter is cut once, so they may differ by up to 1 µs per run — and no more.
#[track_caller]
fn assert_billed_as_counted(billed: u64, kernel: u64, runs: u64, what: &str) {
    assert!(
        billed.abs_diff(kernel) <= runs,
        "{what}: billed {billed} µs, kernel {kernel} µs, {runs} runs"
    );
}

/// A team of the test's own (created, so its cgroup stays while it has no container).
async fn team_of_its_own(c: &Client, prefix: &str) -> String {
    let team = tests::unique(prefix);
    let _: serde_json::Value = call(
        c,
        Method::POST,
        "/api/v1/teams",
        Some(serde_json::json!({"name": team})),
    )
    .await
    .unwrap();
    team
}

/// Whether the container's cgroup is gone from every hierarchy.
fn container_cgroup_gone(engine: &Cgroups, team: &str, name: &str) -> bool {
    engine.open(&GroupPath::new([team, name]).unwrap()).is_err()
}

fn spec(name: &str, team: &str, rootfs: &Rootfs, script: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "team": team,
        "rootfs": rootfs.path(),
        "command": ["/bin/sh", "-c", script],
        "labels": {"suite": "metering"},
        "limits": {"cpus": 0.5, "cpu_weight": 10000},
    })
}

/// Burns CPU for 4 s of wall time, timed by the burner itself from /proc/uptime (centiseconds):
/// no second process whose fork/exec would share the quota and shift the window (under TCG in
/// the VM that took seconds), and no signal to the namespace's PID 1 (which ignores it).
const BURN_4S: &str = "read u _ < /proc/uptime; end=$(( ${u%.*}${u#*.} + 400 )); \
    while :; do read u _ < /proc/uptime; [ $(( ${u%.*}${u#*.} )) -ge $end ] && break; done";

#[tokio::test]
async fn container_under_half_a_cpu_for_four_seconds_is_billed_two_cpu_seconds() {
    let daemon = Daemon::start_with(&["--sample-interval", "1"]);
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let team = &team_of_its_own(&c, "meter-a").await;
    let name = tests::unique("burn");
    // A control: the same container without the burn. Its bill is the container's own start-up
    // (namespaces, mounts, exec — about 50 ms of CPU here, but some 300 ms under TCG in the VM).
    // Two of them, the cheaper counts: the first start also pays cold caches (a loaded VM has
    // measured 0.8 s for it), which the burning container, started warm, does not.
    let controls = [tests::unique("control"), tests::unique("control")];
    for (n, script) in [
        (&controls[0], "read u _ < /proc/uptime"),
        (&controls[1], "read u _ < /proc/uptime"),
        (&name, BURN_4S),
    ] {
        create(&c, spec(n, team, &rootfs, script)).await;
    }
    // The quota, not other load on the host, must be what limits the container: give Corral's
    // subtree and the team the highest CPU weight (a test machine may be busy compiling); the
    // container itself asked for weight 10000.
    let engine = Cgroups::host(&daemon.cgroup_root).unwrap();
    for path in [GroupPath::default(), GroupPath::new([team]).unwrap()] {
        engine
            .open(&path)
            .unwrap()
            .apply(&LimitsUpdate {
                cpu_weight: Some(10_000),
                ..LimitsUpdate::default()
            })
            .unwrap();
    }
    let mut start_up = u64::MAX;
    for control in &controls {
        let before = kernel_usec(&engine, team);
        action(&c, control, "start").await;
        wait_exited(&c, control, Duration::from_secs(30)).await;
        let bill = billed_usec(&c, control).await;
        assert_billed_as_counted(bill, kernel_usec(&engine, team) - before, 1, "a control");
        assert!(container_cgroup_gone(&engine, team, control));
        start_up = start_up.min(bill);
    }
    let before = kernel_usec(&engine, team);
    let started = Instant::now();
    action(&c, &name, "start").await;
    wait_exited(&c, &name, Duration::from_secs(30)).await;
    let wall = started.elapsed();
    let kernel = kernel_usec(&engine, team) - before;
    let billed = billed_usec(&c, &name).await;
    println!(
        "container burning 4 s under --cpus 0.5: burned {:.6} CPU-s (kernel), billed {:.6} CPU-s, of which start-up {:.6} CPU-s (the control container's bill) (wall {:.2} s)",
        kernel as f64 / 1e6,
        billed as f64 / 1e6,
        start_up as f64 / 1e6,
        wall.as_secs_f64()
    );
    assert_billed_as_counted(billed, kernel, 1, "billed = the kernel's final counter");
    let burn = billed.saturating_sub(start_up);
    assert!(
        (1_800_000..=2_200_000).contains(&burn),
        "2.0 ± 0.2 CPU-seconds for the burn, billed {billed} µs - start-up {start_up} µs"
    );
    remove(&c, &name).await;
    for control in &controls {
        remove(&c, control).await;
    }
}

#[tokio::test]
async fn a_100ms_container_is_billed_exactly_its_final_cpu_usage() {
    // The default 5 s interval: no periodic tick is needed, the final reading bills it all.
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let team = &team_of_its_own(&c, "meter-b").await;
    let name = tests::unique("short");
    let mut s = spec(
        &name,
        team,
        &rootfs,
        "while :; do :; done & sleep 0.1; kill $!",
    );
    s["start"] = true.into();
    let started = Instant::now();
    create(&c, s).await;
    wait_exited(&c, &name, Duration::from_secs(30)).await;
    let wall = started.elapsed();
    let engine = Cgroups::host(&daemon.cgroup_root).unwrap();
    let kernel = kernel_usec(&engine, team);
    let billed = billed_usec(&c, &name).await;
    assert!(
        container_cgroup_gone(&engine, team, &name),
        "an exited container's cgroup goes after its final reading"
    );
    println!(
        "~100 ms container: burned {kernel} µs (kernel), billed {billed} µs (wall {:.3} s)",
        wall.as_secs_f64()
    );
    assert!(billed > 0);
    assert_billed_as_counted(billed, kernel, 1, "billed = the final cpu usage");
    remove(&c, &name).await;
    assert_eq!(
        billed_usec(&c, &name).await,
        billed,
        "removal bills nothing more"
    );
}

#[tokio::test]
async fn restarting_a_container_bills_each_run_once() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let team = &team_of_its_own(&c, "meter-c").await;
    let name = tests::unique("again");
    let mut s = spec(
        &name,
        team,
        &rootfs,
        "while :; do :; done & sleep 0.3; kill $!",
    );
    s["start"] = true.into();
    create(&c, s).await;
    wait_exited(&c, &name, Duration::from_secs(30)).await;
    let engine = Cgroups::host(&daemon.cgroup_root).unwrap();
    let first = kernel_usec(&engine, team);
    assert_billed_as_counted(billed_usec(&c, &name).await, first, 1, "the first run");
    // Without a cgroup, an exited container still takes a re-limit: its next start applies it.
    let _: wire::Container = call(
        &c,
        Method::PATCH,
        &format!("/api/v1/containers/{name}/limits"),
        Some(serde_json::json!({"cpus": 0.25})),
    )
    .await
    .unwrap();
    let limits: wire::Limits = call(
        &c,
        Method::GET,
        &format!("/api/v1/containers/{name}/limits"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(limits.cpus, Some(0.25));
    // A new run starts in a fresh cgroup: its counters start at zero and add up.
    action(&c, &name, "start").await;
    wait_exited(&c, &name, Duration::from_secs(30)).await;
    let second = kernel_usec(&engine, team) - first;
    let billed = billed_usec(&c, &name).await;
    println!("two runs: burned {first} + {second} µs (kernel), billed {billed} µs");
    assert!(
        second > 0 && second < first + 1_000_000,
        "fresh counters: {second}"
    );
    assert_billed_as_counted(billed, first + second, 2, "each run billed once");
    remove(&c, &name).await;
}

#[tokio::test]
async fn daemon_kill9_mid_run_keeps_the_bill_continuous() {
    let mut daemon = Daemon::start_with(&["--sample-interval", "1"]);
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let team = &team_of_its_own(&c, "meter-d").await;
    let name = tests::unique("phoenix");
    let mut s = spec(&name, team, &rootfs, "while :; do :; done");
    s["start"] = true.into();
    create(&c, s).await;
    let engine = Cgroups::host(&daemon.cgroup_root).unwrap();
    // A few sampler ticks, then a crash between two ledger flushes.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let billed_before = billed_usec(&c, &name).await;
    let burned_at_kill = kernel_usec(&engine, team);
    daemon.kill9();
    // The container keeps burning while the daemon is down.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let burned_in_outage = kernel_usec(&engine, team) - burned_at_kill;
    daemon.restart();
    let c = daemon.unix_client();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let _: wire::Container = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/stop"),
        Some(serde_json::json!({"timeout": 0})),
    )
    .await
    .unwrap();
    let ct = wait_exited(&c, &name, Duration::from_secs(30)).await;
    assert_eq!(ct.status, "exited");
    let kernel = kernel_usec(&engine, team);
    let billed = billed_usec(&c, &name).await;
    println!(
        "kill -9 of the daemon mid-run: burned {:.6} CPU-s (kernel; {:.3} s during the outage), billed {:.6} CPU-s (billed before the crash: {:.3} s)",
        kernel as f64 / 1e6,
        burned_in_outage as f64 / 1e6,
        billed as f64 / 1e6,
        billed_before as f64 / 1e6,
    );
    assert!(burned_in_outage > 100_000, "it ran during the outage");
    assert_billed_as_counted(billed, kernel, 1, "no CPU-second lost or counted twice");
    remove(&c, &name).await;
}

/// Where criu works (the VM): a burner checkpointed mid-run, left down, and restored is billed
/// what the kernel counted across both runs — nothing while it was down, nothing twice.
#[tokio::test]
async fn a_checkpoint_and_restore_bills_each_run_once_and_not_the_downtime() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    if !tests::containers::checkpoint_works(&c).await {
        return;
    }
    let rootfs = Rootfs::new();
    let team = &team_of_its_own(&c, "meter-ck").await;
    let name = tests::unique("ckburn");
    let mut s = spec(&name, team, &rootfs, "while :; do :; done");
    s["start"] = true.into();
    create(&c, s).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ck: wire::Checkpoint = tests::containers::checkpoint(&c, &name, None).await;
    assert_eq!(ck.status, "exited");
    let engine = Cgroups::host(&daemon.cgroup_root).unwrap();
    let first = kernel_usec(&engine, team);
    assert_billed_as_counted(
        billed_usec(&c, &name).await,
        first,
        1,
        "the run before the checkpoint",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        kernel_usec(&engine, team),
        first,
        "nothing ran while it was down"
    );
    let back: wire::Container = tests::containers::restore(&c, &name, None).await;
    assert_eq!(back.status, "running");
    tokio::time::sleep(Duration::from_secs(2)).await;
    action(&c, &name, "stop").await;
    wait_exited(&c, &name, Duration::from_secs(30)).await;
    let both = kernel_usec(&engine, team);
    let billed = billed_usec(&c, &name).await;
    println!(
        "checkpoint/restore: burned {first} + {} µs (kernel; the second run includes criu's \
         restore), billed {billed} µs",
        both - first
    );
    assert!(both > first, "the restored run burned too");
    assert_billed_as_counted(
        billed,
        both,
        2,
        "each run billed once across the checkpoint",
    );
    remove(&c, &name).await;
}
