//! Team pools over the API (issue 13, part 1): `GET /api/v1/teams/{name}` (inspect),
//! `GET|PATCH /api/v1/teams/{name}/limits`: validation (400 naming the field, nothing changed),
//! clearing with `"max"`/`null`, re-applying at daemon start, who may read and change them,
//! audit rows, and a team with containers that cannot be removed.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use tests::{
    Daemon, call,
    containers::{Reaper, cgroup_mounts},
    rootfs::Rootfs,
};

fn add_team(d: &Daemon, admin: &str, team: &str) {
    let r = call(
        d,
        admin,
        "POST",
        "/api/v1/teams",
        Some(json!({"name": team})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

fn team_dirs(d: &Daemon, team: &str) -> Vec<std::path::PathBuf> {
    cgroup_mounts()
        .into_iter()
        .filter(|m| m.join(&d.cgroup_root).is_dir())
        .map(|m| m.join(&d.cgroup_root).join(team))
        .collect()
}

/// `MAJ:MIN` of a whole disk of this host (not a partition, not a loop or zram device).
fn whole_disk() -> Option<String> {
    let mut found: Vec<String> = std::fs::read_dir("/sys/dev/block")
        .ok()?
        .flatten()
        .filter(|e| !e.path().join("partition").exists())
        .filter_map(|e| {
            let uevent = std::fs::read_to_string(e.path().join("uevent")).ok()?;
            let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
            (!name.starts_with("loop") && !name.starts_with("zram") && !name.starts_with("ram"))
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

#[test]
fn team_limits_are_validated_cleared_audited_and_reapplied_at_start() {
    let mut d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    add_team(&d, &admin, "pool-a");
    let limits = "/api/v1/teams/pool-a/limits";
    let none = call(&d, &admin, "GET", limits, None);
    assert_eq!(none.status, 200, "{}", none.body);

    for (body, field) in [
        (json!({"cpus": 0}), "cpus"),
        (json!({"cpus": 2000}), "cpus"),
        (json!({"cpu_weight": 0}), "cpu_weight"),
        (json!({"io_weight": 10001}), "io_weight"),
        (json!({"memory_max": 1000}), "memory_max"),
        (json!({"pids_max": 0}), "pids_max"),
        (json!({"cpuset_cpus": "x-y"}), "cpuset_cpus"),
        (json!({"io_max": ["sda fast"]}), "io_max"),
        // Allowed by the format, refused against the parent's CPUs: cpus not changed either.
        (json!({"cpus": 0.25, "cpuset_cpus": "4000"}), "cpuset_cpus"),
    ] {
        let r = call(&d, &admin, "PATCH", limits, Some(body.clone()));
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{body}: {}", r.body);
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            m.contains("between")
                || m.contains("allowed")
                || m.contains("minimum")
                || m.contains("like"),
            "{body}: the message says what is allowed: {m}"
        );
        let now = call(&d, &admin, "GET", limits, None);
        assert_eq!(now.json(), none.json(), "{body}: nothing changed");
    }
    for body in [
        json!({"pids_max": -1}),
        json!({"pids_max": "lots"}),
        json!({"cpu": 1}),
    ] {
        let r = call(&d, &admin, "PATCH", limits, Some(body.clone()));
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }

    let r = call(
        &d,
        &admin,
        "PATCH",
        limits,
        Some(json!({"cpus": 0.5, "memory_max": 64 << 20, "pids_max": 50})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let l = r.json();
    assert_eq!(l["cpus"], 0.5);
    assert_eq!(l["memory_max"], 64 << 20);
    assert_eq!(l["pids_max"], 50);

    let t = call(&d, &admin, "GET", "/api/v1/teams/pool-a", None);
    assert_eq!(t.status, 200, "{}", t.body);
    let t = t.json();
    assert_eq!(t["limits"], l, "inspect shows the kernel's limits");
    assert_eq!(t["containers"], json!([]));
    assert!(t["budget"].is_null(), "{t}");
    assert!(t["usage"]["pids"].is_number(), "{t}");

    // Cleared, by "max" and by null; the rest stays.
    let r = call(
        &d,
        &admin,
        "PATCH",
        limits,
        Some(json!({"memory_max": "max", "pids_max": null})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let l = r.json();
    assert!(l.get("memory_max").is_none(), "{l}");
    assert!(l.get("pids_max").is_none(), "{l}");
    assert_eq!(l["cpus"], 0.5);

    // Per-device IO limits, set and removed live, on a whole disk of this host.
    match whole_disk() {
        None => println!("no whole block device: skipping io_max"),
        Some(dev) => {
            let r = call(
                &d,
                &admin,
                "PATCH",
                limits,
                Some(json!({"io_max": [format!("{dev} rbps=1048576 wiops=100")]})),
            );
            assert_eq!(r.status, 200, "{}", r.body);
            let line = r.json()["io_max"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                line.starts_with(&dev)
                    && line.contains("rbps=1048576")
                    && line.contains("wiops=100"),
                "{}",
                r.body
            );
            let r = call(&d, &admin, "PATCH", limits, Some(json!({"io_max": "max"})));
            assert_eq!(r.status, 200, "{}", r.body);
            assert!(r.json().get("io_max").is_none(), "{}", r.body);
            let r = call(&d, &admin, "PATCH", limits, Some(json!({"io_max": "fast"})));
            assert_eq!(r.status, 400, "{}", r.body);
        }
    }

    let audit = call(&d, &admin, "GET", "/api/v1/audit?action=team.limits", None);
    assert_eq!(audit.status, 200);
    assert!(
        audit.body.matches("team:pool-a").count() >= 2,
        "{}",
        audit.body
    );

    // Re-applied at start: even when the team's group is gone meanwhile.
    d.stop();
    for dir in team_dirs(&d, "pool-a") {
        if dir.is_dir() {
            std::fs::remove_dir(&dir).unwrap();
        }
    }
    d.restart();
    let r = call(&d, &admin, "GET", limits, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["cpus"], 0.5, "re-applied at start: {}", r.body);
    assert!(team_dirs(&d, "pool-a").iter().all(|p| p.is_dir()));
}

#[test]
fn admins_change_team_limits_members_read_them_others_do_not() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    add_team(&d, &admin, "team-a");
    add_team(&d, &admin, "team-b");
    for (name, role) in [("opa", "operator"), ("viewa", "viewer")] {
        d.add_user(name, role, &["team-a"]);
    }
    let (op, viewer) = (d.token_for("opa"), d.token_for("viewa"));
    for who in [&op, &viewer] {
        let r = call(&d, who, "GET", "/api/v1/teams/team-a", None);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.json()["budget"].is_null());
        assert_eq!(
            call(&d, who, "GET", "/api/v1/teams/team-a/limits", None).status,
            200
        );
        let r = call(
            &d,
            who,
            "PATCH",
            "/api/v1/teams/team-a/limits",
            Some(json!({"cpus": 0.5})),
        );
        assert_eq!(r.status, 403, "only admins change limits: {}", r.body);
        for path in ["/api/v1/teams/team-b", "/api/v1/teams/team-b/limits"] {
            assert_eq!(call(&d, who, "GET", path, None).status, 403, "{path}");
        }
    }
    // PATCH /teams/{name}: operators change the description, only admins the limits.
    let r = call(
        &d,
        &op,
        "PATCH",
        "/api/v1/teams/team-a",
        Some(json!({"description": "ours"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &d,
        &op,
        "PATCH",
        "/api/v1/teams/team-a",
        Some(json!({"description": "ours, capped", "limits": {"cpus": 0.5}})),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = call(&d, &admin, "GET", "/api/v1/teams/team-a", None).json();
    assert_eq!(r["description"], "ours", "nothing changed: {r}");
    assert!(r["limits"].get("cpus").is_none(), "unchanged: {r}");
    let r = call(
        &d,
        &admin,
        "PATCH",
        "/api/v1/teams/team-a",
        Some(json!({"limits": {"pids_max": 0}})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "limits.pids_max");
    let r = call(
        &d,
        &admin,
        "PATCH",
        "/api/v1/teams/team-a",
        Some(json!({"limits": {"pids_max": 20}})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(&d, &admin, "GET", "/api/v1/teams/team-a/limits", None);
    assert_eq!(r.json()["pids_max"], 20, "{}", r.body);
    let r = call(
        &d,
        &admin,
        "PATCH",
        "/api/v1/teams/team-a",
        Some(json!({"limits": {"pids_max": "max"}})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(&d, &admin, "GET", "/api/v1/teams/team-a/limits", None);
    assert!(r.json().get("pids_max").is_none(), "cleared: {}", r.body);
    for (method, body) in [("GET", None), ("PATCH", Some(json!({"cpus": 1})))] {
        let r = call(&d, &admin, method, "/api/v1/teams/nope/limits", body);
        assert_eq!(r.status, 404, "{method}: {}", r.body);
    }
    let audit = call(&d, &admin, "GET", "/api/v1/audit?action=team.limits", None);
    assert!(audit.body.contains("denied"), "{}", audit.body);
}

#[test]
fn a_team_with_containers_cannot_be_removed_and_its_cgroup_outlives_them() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    let rootfs = Rootfs::new();
    add_team(&d, &admin, "busy");
    assert!(team_dirs(&d, "busy").iter().all(|p| p.is_dir()));
    let r = call(
        &d,
        &admin,
        "PATCH",
        "/api/v1/teams/busy/limits",
        Some(json!({"memory_max": 64 << 20, "pids_max": 100})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The container's own limit may exceed its team's: the hierarchy enforces the pool.
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/containers",
        Some(
            json!({"name": "busy-one", "team": "busy", "rootfs": rootfs.path(),
                    "command": ["/bin/true"], "limits": {"memory_max": 128 << 20, "pids_max": 10}}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let c = call(&d, &admin, "GET", "/api/v1/containers/busy-one", None).json();
    assert_eq!(c["limits"]["memory_max"], 128 << 20, "{c}");
    assert_eq!(c["team_limits"]["memory_max"], 64 << 20, "{c}");
    assert_eq!(c["effective_limits"]["memory_max"], 64 << 20, "{c}");
    assert_eq!(c["effective_limits"]["pids_max"], 10, "{c}");
    // On cgroup v1 the kernel refuses a CPU quota above the team's: a clear conflict, not a
    // server error. cgroup2 takes it.
    let r = call(
        &d,
        &admin,
        "PATCH",
        "/api/v1/teams/busy/limits",
        Some(json!({"cpus": 0.5})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &d,
        &admin,
        "PATCH",
        "/api/v1/containers/busy-one/limits",
        Some(json!({"cpus": 1.5})),
    );
    println!(
        "container above its team's CPU ceiling: {} {}",
        r.status, r.body
    );
    assert!(
        r.status == 200 || (r.status == 400 && r.json()["field"] == "limits.cpus"),
        "{}",
        r.body
    );
    let r = call(&d, &admin, "DELETE", "/api/v1/teams/busy", None);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.contains("busy-one"),
        "names the container: {}",
        r.body
    );
    let t = call(&d, &admin, "GET", "/api/v1/teams/busy", None).json();
    assert_eq!(t["containers"], json!(["busy-one"]));

    let r = call(
        &d,
        &admin,
        "DELETE",
        "/api/v1/containers/busy-one?force=true",
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        team_dirs(&d, "busy").iter().all(|p| p.is_dir()),
        "the team's cgroup outlives its last container"
    );
    let r = call(&d, &admin, "DELETE", "/api/v1/teams/busy", None);
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(team_dirs(&d, "busy").iter().all(|p| !p.exists()));
}

/// The CLI contract: `corral team update NAME --cpus N|max --memory SIZE|max …` and `corral team
/// inspect NAME` (JSON: limits as the kernel enforces them, usage, `budget: null`).
#[test]
fn cli_team_update_and_inspect() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let run = |args: &[&str]| {
        let out = d.cli(None, args, "");
        (out.ok, out.stdout, out.stderr)
    };
    let (ok, _, err) = run(&["team", "add", "cli-pool"]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&[
        "team",
        "update",
        "cli-pool",
        "--cpus",
        "1.5",
        "--memory",
        "256M",
        "--pids",
        "100",
        "--cpu-weight",
        "200",
    ]);
    assert!(ok, "{err}");
    let l: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(l["cpus"], 1.5, "{out}");
    assert_eq!(l["memory_max"], 256 << 20, "{out}");
    assert_eq!(l["pids_max"], 100, "{out}");
    assert_eq!(l["cpu_weight"], 200, "{out}");

    let (ok, out, err) = run(&[
        "team", "update", "cli-pool", "--memory", "max", "--pids", "max",
    ]);
    assert!(ok, "{err}");
    let (ok, out2, err) = run(&["team", "inspect", "cli-pool"]);
    assert!(ok, "{err}");
    let t: Value = serde_json::from_str(&out2).unwrap();
    assert_eq!(t["name"], "cli-pool");
    assert_eq!(t["limits"]["cpus"], 1.5, "{out2}");
    assert!(t["limits"].get("memory_max").is_none(), "{out} {out2}");
    assert!(t["limits"].get("pids_max").is_none(), "{out2}");
    assert!(t["budget"].is_null(), "{out2}");
    assert!(t["usage"].is_object(), "{out2}");

    let (ok, _, err) = run(&["team", "update", "cli-pool", "--cpu-weight", "0"]);
    assert!(!ok && err.contains("cpu_weight"), "{err}");
    let (ok, _, err) = run(&["team", "update", "cli-pool", "--cpus", "lots"]);
    assert!(!ok && err.contains("lots"), "{err}");
    let (ok, _, err) = run(&["team", "rm", "cli-pool"]);
    assert!(ok, "{err}");
}

/// The value of a `/metrics` sample line starting with `series` (e.g. `name{team="a"}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn metrics(d: &Daemon, admin: &str) -> String {
    let r = call(d, admin, "GET", "/metrics", None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Polls `/metrics` until `ok` holds for the text (the sampler ticks every second here).
fn metrics_until(d: &Daemon, admin: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = metrics(d, admin);
        if ok(&text) {
            return text;
        }
        assert!(std::time::Instant::now() < deadline, "{what}:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Issue 13 part 3: a team is metered for its whole life. Its `/metrics` series stay (and stay
/// cumulative) after its only container exited and was removed, its ceilings are gauges, and
/// `GET /api/v1/teams/{name}/history` answers like a container's history — for admins and
/// members, 403 for others, 404 for no such team.
#[test]
fn team_history_and_metrics_outlive_the_teams_containers() {
    let mut d = Daemon::start_with(&["--sample-interval", "1"]);
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    let rootfs = Rootfs::new();
    add_team(&d, &admin, "hist");
    add_team(&d, &admin, "other");
    for (name, team) in [("histv", "hist"), ("otherv", "other")] {
        d.add_user(name, "viewer", &[team]);
    }
    let cpu = "corral_team_cpu_seconds_total{team=\"hist\"}";
    // Metered from its creation, before any container.
    metrics_until(&d, &admin, "the new team's series", |t| {
        sample(t, cpu).is_some()
    });
    let r = call(
        &d,
        &admin,
        "PATCH",
        "/api/v1/teams/hist/limits",
        Some(json!({"cpus": 1.5, "memory_max": 256 << 20})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/containers",
        Some(
            json!({"name": "hist-burn", "team": "hist", "rootfs": rootfs.path(), "start": true,
                    "command": ["/bin/sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"]}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while call(&d, &admin, "GET", "/api/v1/containers/hist-burn", None).json()["status"] != "exited"
    {
        assert!(std::time::Instant::now() < deadline, "the burn did not end");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = call(
        &d,
        &admin,
        "DELETE",
        "/api/v1/containers/hist-burn?force=true",
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    // The team has no container now; its counter holds what the container burnt.
    let text = metrics_until(&d, &admin, "the team's CPU after its container", |t| {
        sample(t, cpu).is_some_and(|v| v > 0.0)
    });
    let last = sample(&text, cpu).unwrap();
    assert!(
        !text.contains("name=\"hist-burn\""),
        "the container's series went with it"
    );
    assert_eq!(
        sample(&text, "corral_team_limit_cpus{team=\"hist\"}"),
        Some(1.5)
    );
    assert_eq!(
        sample(&text, "corral_team_limit_memory_max_bytes{team=\"hist\"}"),
        Some((256u64 << 20) as f64)
    );
    assert_eq!(
        sample(&text, "corral_team_limit_pids_max{team=\"hist\"}"),
        None,
        "only limits that are set"
    );
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let text = metrics(&d, &admin);
    let now = sample(&text, cpu).unwrap_or_else(|| panic!("the series stays:\n{text}"));
    assert!(now >= last, "cumulative: {now} after {last}");

    // History: the same shape and tiers as a container's.
    let path = "/api/v1/teams/hist/history?range=10m&step=1s";
    let r = call(&d, &admin, "GET", path, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let h: wire::billing::History = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (h.name.as_str(), h.tier.as_str(), h.step_secs),
        ("hist", "raw", 1)
    );
    let burnt: f64 = h.points.iter().map(|p| p.cpu_seconds).sum();
    assert!(
        burnt > 0.0,
        "the container's CPU is in its team's history: {h:?}"
    );
    let viewer = d.token_for("histv");
    assert_eq!(call(&d, &viewer, "GET", path, None).status, 200);
    let outsider = d.token_for("otherv");
    let r = call(&d, &outsider, "GET", path, None);
    assert_eq!(r.status, 403, "same rule as GET /teams/hist: {}", r.body);
    let r = call(&d, &admin, "GET", "/api/v1/teams/nope/history", None);
    assert_eq!(r.status, 404, "{}", r.body);
    let r = call(
        &d,
        &admin,
        "GET",
        "/api/v1/teams/hist/history?range=soon",
        None,
    );
    assert_eq!((r.status, r.json()["field"].clone()), (400, json!("range")));
    let r = call(
        &d,
        &admin,
        "GET",
        "/api/v1/teams/hist/history?colour=red",
        None,
    );
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (400, json!("colour"))
    );

    // A restarted daemon meters the team from its start, without containers, from the same
    // cumulative counter.
    assert!(d.stop().success(), "clean stop: {}", d.log());
    d.restart();
    let text = metrics_until(&d, &admin, "the team's series after a restart", |t| {
        sample(t, cpu).is_some()
    });
    let after = sample(&text, cpu).unwrap();
    assert!(
        after >= now,
        "cumulative across restarts: {after} after {now}"
    );

    // Removing the team ends its series.
    let r = call(&d, &admin, "DELETE", "/api/v1/teams/hist", None);
    assert_eq!(r.status, 204, "{}", r.body);
    let text = metrics(&d, &admin);
    assert!(sample(&text, cpu).is_none(), "{text}");
    assert!(!text.contains("corral_team_limit_cpus{team=\"hist\"}"));
}

/// Issue 14 part 4: `/metrics` carries PSI stall time, the memory peak, IO operations and this
/// month's cost; operators and viewers may scrape it and see only their teams' series (no
/// other team's, none of the host's); no credentials is 401. Both scoped and full texts pass
/// promtool and the OpenMetrics parser.
#[test]
fn metrics_are_scoped_to_the_callers_teams_with_psi_peak_io_ops_and_cost() {
    let d = Daemon::start_with(&["--sample-interval", "1", "--ledger-flush", "1"]);
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    let rootfs = Rootfs::new();
    add_team(&d, &admin, "mt-a");
    add_team(&d, &admin, "mt-b");
    d.add_user("mt-viewer", "viewer", &["mt-a"]);
    let viewer = d.token_for("mt-viewer");
    // Direct IO to the rootfs (the block device behind the state dir) and a few MiB of memory.
    let work = "dd if=/dev/zero of=/io.bin bs=4096 count=64 oflag=direct; \
                dd if=/io.bin of=/dev/null bs=4096 iflag=direct; \
                dd if=/dev/zero of=/dev/null bs=8M count=1; sleep 600";
    for (name, team) in [("mt-a-web", "mt-a"), ("mt-b-web", "mt-b")] {
        let r = call(
            &d,
            &admin,
            "POST",
            "/api/v1/containers",
            Some(
                json!({"name": name, "team": team, "rootfs": rootfs.path(), "start": true,
                        "command": ["/bin/sh", "-c", work]}),
            ),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // A rate card in force since the month began (seeded: the API never prices the past) and
    // an hour of one core booked to mt-a-web, as the sampler books it.
    let now_ms = backend::metering::sampler::wall_ms();
    let month_start = backend::metering::calendar::month_start(now_ms / 1000);
    let store = backend::store::Store::open(&d.state.path().join("state/corral.db")).unwrap();
    store
        .lock()
        .execute(
            "INSERT INTO rate_card (effective_from, currency, cpu_core_hour_used_micros,
               cpu_core_hour_reserved_micros, mem_gib_hour_used_micros,
               mem_gib_hour_reserved_micros, io_gib_micros, created_at_ms)
             VALUES (?1, 'EUR', 40000, 0, 0, 0, 0, 0)",
            [month_start],
        )
        .unwrap();
    let id = call(&d, &admin, "GET", "/api/v1/containers/mt-a-web", None).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut batch = backend::metering::store::Batch::default();
    batch.add_ledger(
        &backend::metering::store::LedgerOwner {
            container_id: id,
            name: "mt-a-web".into(),
            team: "mt-a".into(),
            labels: "{}".into(),
        },
        now_ms,
        &backend::metering::Usage {
            duration_ns: 1_000_000_000,
            cpu_usec: 3_600_000_000,
            ..Default::default()
        },
    );
    backend::metering::store::commit(&mut store.lock(), &batch).unwrap();
    drop(store);

    let web_a = "name=\"mt-a-web\",team=\"mt-a\"";
    let write_ops = format!("corral_container_io_ops_total{{{web_a},op=\"write\"}}");
    let text = metrics_until(&d, &admin, "both containers' peaks and IO", |t| {
        sample(t, &format!("corral_container_memory_peak_bytes{{{web_a}}}"))
            .is_some_and(|v| v >= 8e6)
            && t.contains("corral_container_memory_peak_bytes{name=\"mt-b-web\"")
            && sample(t, &write_ops).is_some_and(|v| v >= 64.0)
    });
    // The admin sees both teams and the host's backlog.
    assert!(text.contains("team=\"mt-b\""), "{text}");
    assert!(text.contains("corral_metering_failed_commits_total 0"));
    let peak = sample(
        &text,
        &format!("corral_container_memory_peak_bytes{{{web_a}}}"),
    )
    .unwrap();
    assert!(
        sample(
            &text,
            &format!("corral_container_io_ops_total{{{web_a},op=\"read\"}}")
        )
        .is_some()
    );
    // PSI where the container has a cgroup2 directory (pure v2, or hybrid with the unified
    // hierarchy mounted).
    let psi = cgroup_mounts().iter().any(|m| {
        m.join(&d.cgroup_root)
            .join("mt-a")
            .join("cpu.pressure")
            .exists()
    });
    let psi_cpu = format!(
        "corral_container_pressure_seconds_total{{{web_a},resource=\"cpu\",kind=\"some\"}}"
    );
    println!(
        "mt-a-web: peak {peak} B, write ops {:?}, psi {psi} ({:?} s cpu some)",
        sample(&text, &write_ops),
        sample(&text, &psi_cpu)
    );
    if psi {
        assert!(sample(&text, &psi_cpu).is_some(), "{text}");
        assert!(
            sample(
                &text,
                "corral_team_pressure_seconds_total{team=\"mt-a\",resource=\"memory\",kind=\"full\"}"
            )
            .is_some(),
            "{text}"
        );
    }
    // This month's cost: the seeded core-hour at 0.04 EUR, plus what the sampler booked since.
    let text = metrics_until(&d, &admin, "the month's cost", |t| {
        sample(t, "corral_team_cost_month{team=\"mt-a\",currency=\"EUR\"}").is_some()
    });
    let cost = sample(
        &text,
        &format!("corral_container_cost_month{{{web_a},currency=\"EUR\"}}"),
    )
    .unwrap_or_else(|| panic!("{text}"));
    assert!((0.04..0.05).contains(&cost), "cost {cost}");
    super::billing::promtool_check(&text);

    // The viewer of mt-a: its team and container, nothing of mt-b, nothing host-wide.
    let r = call(&d, &viewer, "GET", "/metrics", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let mine = r.body;
    assert!(
        mine.contains(&format!("corral_container_cpu_seconds_total{{{web_a}}}")),
        "{mine}"
    );
    assert!(mine.contains("corral_team_cpu_seconds_total{team=\"mt-a\"}"));
    assert!(
        sample(
            &mine,
            &format!("corral_container_cost_month{{{web_a},currency=\"EUR\"}}")
        )
        .is_some(),
        "{mine}"
    );
    assert!(!mine.contains("mt-b"), "another team's series: {mine}");
    assert!(
        !mine.contains("corral_metering_"),
        "host-wide series: {mine}"
    );
    super::billing::promtool_check(&mine);
    let om = d.http(
        "GET",
        "/metrics",
        &[
            ("authorization", &format!("Bearer {viewer}")),
            ("accept", "application/openmetrics-text;version=1.0.0"),
        ],
        None,
    );
    assert_eq!(om.status, 200);
    super::billing::openmetrics_check(&om.body);
    // No credentials: 401.
    assert_eq!(d.http("GET", "/metrics", &[], None).status, 401);

    for name in ["mt-a-web", "mt-b-web"] {
        let r = call(
            &d,
            &admin,
            "DELETE",
            &format!("/api/v1/containers/{name}?force=true"),
            None,
        );
        assert_eq!(r.status, 204, "{}", r.body);
    }
}
