//! Right-sizing on the real kernel (issue 14 part 3): a busy loop starved by `--cpus 0.1` gets
//! an "increase" with its throttling figure, an idle `sleep` under `--cpus 1.5 --memory 512M`
//! gets "decrease" for both, a team whose pooled ceiling starves its container gets an
//! increase of the ceiling, and `corral recommend … --apply` writes the kernel's files
//! (`cpu.max`/`memory.max`, or v1 `cpu.cfs_quota_us`/`memory.limit_in_bytes`). The daemon
//! samples every second, so 30 samples take about half a minute.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use hyper::Method;
use tests::{
    Daemon,
    containers::{Reaper, cgroup_mounts},
    rootfs::Rootfs,
};

async fn call<T: serde::de::DeserializeOwned>(
    c: &backend::client::Client,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> T {
    let (_, bytes) = c
        .request(method, path, body.map(|b| serde_json::to_vec(&b).unwrap()))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let bytes = if bytes.is_empty() {
        &b"null"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{path}: {e}: {bytes:?}"))
}

/// The first of `files` found in the group `rel` (below the daemon's subtree) of any cgroup
/// hierarchy: the v2 name or its v1 equivalent, wherever the controller is mounted.
fn kernel_file(d: &Daemon, rel: &str, files: &[&str]) -> String {
    cgroup_mounts()
        .into_iter()
        .map(|m| m.join(&d.cgroup_root).join(rel))
        .find_map(|dir: PathBuf| {
            files
                .iter()
                .find_map(|f| fs::read_to_string(dir.join(f)).ok())
        })
        .unwrap_or_else(|| panic!("none of {files:?} for {rel}"))
        .trim()
        .to_owned()
}

/// The CPU quota in µs per 100 ms period (`cpu.max` or v1 `cpu.cfs_quota_us`).
fn quota_usec(d: &Daemon, rel: &str) -> u64 {
    let v = kernel_file(d, rel, &["cpu.max", "cpu.cfs_quota_us"]);
    v.split_whitespace().next().unwrap().parse().unwrap()
}

fn memory_limit(d: &Daemon, rel: &str) -> u64 {
    kernel_file(d, rel, &["memory.max", "memory.limit_in_bytes"])
        .parse()
        .unwrap()
}

/// Polls a recommendation until it has items (30 samples).
async fn recommendation(c: &backend::client::Client, path: &str) -> wire::Recommendation {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r: wire::Recommendation = call(c, Method::GET, path, None).await;
        if !r.items.is_empty() {
            assert_eq!(r.note, None);
            assert!(r.samples >= r.min_samples, "{r:?}");
            return r;
        }
        let note = r.note.clone().unwrap_or_default();
        assert!(note.starts_with("not enough history: "), "{r:?}");
        assert!(
            Instant::now() < deadline,
            "no recommendation after 120 s: {r:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn item<'a>(r: &'a wire::Recommendation, knob: &str) -> &'a wire::RecommendationItem {
    r.items
        .iter()
        .find(|i| i.knob == knob)
        .unwrap_or_else(|| panic!("no {knob} item: {r:?}"))
}

/// The throttled percentage a line reports (`…, throttled 90 %…`).
fn throttled_pct(line: &str) -> f64 {
    let rest = line
        .split("throttled ")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"));
    rest.split(' ').next().unwrap().parse().unwrap()
}

/// The quota (µs per 100 ms) of the `cpus FROM → X:` line `corral recommend` printed.
fn applied_quota(out: &str, from: &str) -> u64 {
    let to = out
        .split(&format!("cpus {from} → "))
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap_or_else(|| panic!("{out}"));
    (to.parse::<f64>().unwrap() * 100_000.0).round() as u64
}

#[tokio::test]
async fn starved_containers_get_more_idle_ones_less_and_applying_writes_the_kernel_files() {
    let d = Daemon::start_with(&["--sample-interval", "1"]);
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let rootfs = Rootfs::new();
    let team = tests::unique("reco");
    let _: serde_json::Value = call(
        &c,
        Method::POST,
        "/api/v1/teams",
        Some(serde_json::json!({"name": team})),
    )
    .await;
    let pooled = tests::unique("recp");
    let _: serde_json::Value = call(
        &c,
        Method::POST,
        "/api/v1/teams",
        Some(serde_json::json!({"name": pooled})),
    )
    .await;
    let _: wire::Limits = call(
        &c,
        Method::PATCH,
        &format!("/api/v1/teams/{pooled}/limits"),
        Some(serde_json::json!({"cpus": 0.1})),
    )
    .await;
    let (starved, idle, pool_burn) = (
        tests::unique("starved"),
        tests::unique("idle"),
        tests::unique("poolburn"),
    );
    // Busy loops bounded by their 0.1 quota (their own, or their team's), so parallel tests
    // keep the CPU.
    for (name, t, limits, cmd) in [
        (
            &starved,
            &team,
            serde_json::json!({"cpus": 0.1}),
            "while :; do :; done",
        ),
        (
            &idle,
            &team,
            serde_json::json!({"cpus": 1.5, "memory_max": 512u64 << 20}),
            "exec sleep 1000",
        ),
        (
            &pool_burn,
            &pooled,
            serde_json::json!({}),
            "while :; do :; done",
        ),
    ] {
        let ct: wire::Container = call(
            &c,
            Method::POST,
            "/api/v1/containers",
            Some(
                serde_json::json!({"name": name, "team": t, "rootfs": rootfs.path(),
                "command": ["/bin/sh", "-c", cmd], "limits": limits, "start": true}),
            ),
        )
        .await;
        assert_eq!(ct.status, "running");
    }

    // The starved one: increase, with the throttling figure.
    let r = recommendation(&c, &format!("/api/v1/containers/{starved}/recommendation")).await;
    println!("{starved}: {:#?}", r.items);
    let cpus = item(&r, "cpus");
    assert_eq!(cpus.action, wire::RecommendationAction::Increase, "{r:?}");
    assert_eq!(cpus.current, Some(0.1));
    // max(p99 × 1.3, 0.1 × 1.5) rounded up to 0.05: 0.15 when the one-second points sit at
    // the quota, more where they jitter above it (the VM's TCG clock has shown p99 0.17 and
    // so 0.25). Always above the limit, a multiple of 0.05, and nowhere near a whole core.
    let to_starved = modest_increase(cpus);
    assert!(cpus.line.starts_with("cpus 0.1 → 0."), "{}", cpus.line);
    let throttled = throttled_pct(&cpus.line);
    assert!(
        throttled >= 50.0,
        "a busy loop under 0.1 CPU: {}",
        cpus.line
    );
    assert_eq!(r.patch.cpus, wire::Setting::Set(to_starved));

    // The idle one: decrease CPU to the 0.1 floor and memory to at least its peak.
    let r = recommendation(&c, &format!("/api/v1/containers/{idle}/recommendation")).await;
    println!("{idle}: {:#?}", r.items);
    let cpus = item(&r, "cpus");
    assert_eq!(cpus.action, wire::RecommendationAction::Decrease, "{r:?}");
    // The 0.1 floor, or p99 × 1.3 where starting the shell took a third of a core for a
    // second (the VM); below half the limit and never below the peak.
    let to_idle = cpus.recommended.unwrap();
    assert!((0.1..=0.75).contains(&to_idle), "{cpus:?}");
    assert!(cpus.line.contains("throttled 0 %"), "{}", cpus.line);
    let mem = item(&r, "memory_max");
    assert_eq!(mem.action, wire::RecommendationAction::Decrease, "{r:?}");
    let to_mem = mem.recommended.unwrap() as u64;
    assert!((16 << 20..512 << 20).contains(&to_mem), "{mem:?}");
    assert!(mem.line.starts_with("memory 512M → "), "{}", mem.line);

    // The team whose ceiling starves its container: increase the ceiling.
    let r = recommendation(&c, &format!("/api/v1/teams/{pooled}/recommendation")).await;
    println!("{pooled}: {:#?}", r.items);
    assert_eq!(r.scope, wire::RecommendationScope::Team);
    let cpus = item(&r, "cpus");
    assert_eq!(cpus.action, wire::RecommendationAction::Increase, "{r:?}");
    modest_increase(cpus);
    assert!(throttled_pct(&cpus.line) >= 50.0, "{}", cpus.line);

    // Applying through the CLI writes the kernel's files.
    assert_eq!(quota_usec(&d, &format!("{team}/{starved}")), 10_000);
    let out = d.corral(&["recommend", &starved, "--apply"]);
    assert!(out.contains("cpus 0.1 → 0."), "{out}");
    assert!(
        out.contains(&format!("applied to {starved}: cpus")),
        "{out}"
    );
    // What the CLI applied is what it printed (the history moved on since the GET above).
    assert_eq!(
        quota_usec(&d, &format!("{team}/{starved}")),
        applied_quota(&out, "0.1")
    );

    assert_eq!(memory_limit(&d, &format!("{team}/{idle}")), 512 << 20);
    let out = d.corral(&["recommend", &idle, "--apply"]);
    assert!(
        out.contains(&format!("applied to {idle}: cpus, memory_max")),
        "{out}"
    );
    assert_eq!(
        quota_usec(&d, &format!("{team}/{idle}")),
        applied_quota(&out, "1.5")
    );
    assert_eq!(memory_limit(&d, &format!("{team}/{idle}")), to_mem);
    let ct: wire::Container =
        call(&c, Method::GET, &format!("/api/v1/containers/{idle}"), None).await;
    assert_eq!(
        ct.status, "running",
        "the lower limits hold the idle container"
    );
    assert_eq!(ct.limits.memory_max, Some(to_mem));
    // An ordinary re-limit: audited on the container's timeline, so it can be undone.
    let events: Vec<wire::AuditEntry> = call(
        &c,
        Method::GET,
        &format!("/api/v1/containers/{idle}/events"),
        None,
    )
    .await;
    assert!(
        events.iter().any(|e| e.action == "container.update"),
        "{events:?}"
    );

    assert_eq!(quota_usec(&d, &pooled), 10_000);
    let out = d.corral(&["recommend", "--team", &pooled, "--apply"]);
    assert!(out.contains(&format!("applied to {pooled}: cpus")), "{out}");
    assert_eq!(quota_usec(&d, &pooled), applied_quota(&out, "0.1"));
    assert!(
        [15_000, 20_000].contains(&applied_quota(&out, "0.1")),
        "{out}"
    );

    // Every visible container, one line per item, the name first.
    let out = d.corral(&["recommend"]);
    for name in [&starved, &idle, &pool_burn] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{name}  cpus "))),
            "{out}"
        );
    }

    for name in [&starved, &idle, &pool_burn] {
        let (status, _) = c
            .request(
                Method::DELETE,
                &format!("/api/v1/containers/{name}?force=true"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 204);
    }
}

/// The increase for a busy loop under 0.1 CPU: above the limit, a multiple of 0.05, and
/// nowhere near a whole core.
fn modest_increase(cpus: &wire::RecommendationItem) -> f64 {
    let to = cpus.recommended.unwrap();
    assert!((0.15..=0.5).contains(&to), "{cpus:?}");
    assert!(
        ((to / 0.05) - (to / 0.05).round()).abs() < 1e-9,
        "not a multiple of 0.05: {cpus:?}"
    );
    to
}
