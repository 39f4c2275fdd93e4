//! `PATCH /api/v1/containers/{name}/limits` keep/clear/set for every knob, checked in the
//! stored spec and in the real cgroup files; refused values named and changing nothing; undo
//! (`POST /api/v1/containers/{name}/undo`) and who may do it. The container is created, not
//! started: its cgroup exists from create on, so no process is needed.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use tests::{Daemon, call, containers::Reaper, rootfs::Rootfs};

#[track_caller]
fn ok(r: &tests::RawResponse, what: &str) -> Value {
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    r.json()
}

/// The first of `files` that exists in the container's group, in any hierarchy, trimmed.
fn kernel(d: &Daemon, team: &str, name: &str, files: &[&str]) -> Option<(String, String)> {
    for m in tests::containers::cgroup_mounts() {
        let dir = m.join(&d.cgroup_root).join(team).join(name);
        for f in files {
            if let Ok(t) = std::fs::read_to_string(dir.join(f)) {
                return Some(((*f).to_owned(), t.trim().to_owned()));
            }
        }
    }
    None
}

/// The parent's (team's) value of a cpuset file.
fn team_cpuset(d: &Daemon, team: &str, file: &str) -> Option<String> {
    tests::containers::cgroup_mounts()
        .into_iter()
        .find_map(|m| {
            std::fs::read_to_string(m.join(&d.cgroup_root).join(team).join(file))
                .ok()
                .map(|t| t.trim().to_owned())
        })
}

/// The knobs this host can set (`GET /api/v1/host`).
fn available(d: &Daemon, admin: &str) -> Vec<String> {
    let h = ok(&call(d, admin, "GET", "/api/v1/host", None), "host");
    h["knobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["available"] == true)
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect()
}

fn spec_limits(d: &Daemon, admin: &str, name: &str) -> Value {
    let c = ok(
        &call(d, admin, "GET", &format!("/api/v1/containers/{name}"), None),
        "get",
    );
    c["spec"]["limits"].clone()
}

fn patch(d: &Daemon, token: &str, name: &str, body: Value) -> tests::RawResponse {
    call(
        d,
        token,
        "PATCH",
        &format!("/api/v1/containers/{name}/limits"),
        Some(body),
    )
}

#[tokio::test]
async fn every_knob_keeps_clears_and_sets() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    let rootfs = Rootfs::new();
    let name = tests::unique("lim");
    let team = "default";
    let spec = json!({"name": name, "rootfs": rootfs.path(), "command": ["sleep", "1"],
        "limits": {"cpus": 0.5, "memory_max": 256 << 20, "pids_max": 100, "cpu_weight": 50,
                   "cpuset_cpus": "0"}});
    let r = call(&d, &admin, "POST", "/api/v1/containers", Some(spec));
    assert_eq!(r.status, 201, "{}", r.body);
    let avail = available(&d, &admin);

    // Keep: a field left out stays; set: the value lands in spec and kernel.
    let c = ok(&patch(&d, &admin, &name, json!({"cpus": 1.5})), "set cpus");
    assert_eq!(c["spec"]["limits"]["cpus"], 1.5);
    assert_eq!(c["spec"]["limits"]["memory_max"], 256 << 20, "kept");
    let (f, v) = kernel(&d, team, &name, &["cpu.max", "cpu.cfs_quota_us"]).unwrap();
    assert!(v.starts_with("150000"), "{f}: {v}");

    // Clear, each way of saying it: the field leaves the spec, the kernel is back at its default.
    let c = ok(
        &patch(
            &d,
            &admin,
            &name,
            json!({"cpus": "max", "memory_max": null, "pids_max": "max", "cpu_weight": null,
                   "cpuset_cpus": "max"}),
        ),
        "clear",
    );
    let l = &c["spec"]["limits"];
    for f in [
        "cpus",
        "memory_max",
        "pids_max",
        "cpu_weight",
        "cpuset_cpus",
    ] {
        assert!(l.get(f).is_none(), "{f} still in the spec: {l}");
    }
    let (f, v) = kernel(&d, team, &name, &["cpu.max", "cpu.cfs_quota_us"]).unwrap();
    assert!(v.starts_with("max") || v == "-1", "{f}: {v}");
    let (f, v) = kernel(&d, team, &name, &["pids.max"]).unwrap();
    assert_eq!(v, "max", "{f}");
    let (f, v) = kernel(&d, team, &name, &["memory.max", "memory.limit_in_bytes"]).unwrap();
    assert!(
        v == "max" || v.parse::<u64>().unwrap() > 1 << 60,
        "{f}: {v}"
    );
    let (f, v) = kernel(&d, team, &name, &["cpu.weight", "cpu.shares"]).unwrap();
    assert!(v == "100" || v == "1024", "{f}: {v}");
    let (f, v) = kernel(&d, team, &name, &["cpuset.cpus"]).unwrap();
    assert_eq!(Some(v), team_cpuset(&d, team, &f), "the parent's cpus");

    // Set then clear every other knob this host has.
    let knobs: [(&str, Value); 7] = [
        ("memory_high", json!(512 << 20)),
        ("memory_low", json!(16 << 20)),
        ("memory_min", json!(16 << 20)),
        ("swap_max", json!(64 << 20)),
        ("io_weight", json!(200)),
        ("cpuset_mems", json!("0")),
        ("cpu_weight", json!(300)),
    ];
    for (k, v) in knobs {
        if !avail.iter().any(|a| a == k) {
            continue;
        }
        let body = if k == "swap_max" {
            // v1 swap lives in memory + swap: it needs a memory limit.
            json!({k: v, "memory_max": 256 << 20})
        } else {
            json!({k: v})
        };
        let c = ok(&patch(&d, &admin, &name, body), k);
        assert_eq!(c["spec"]["limits"][k], v, "{k} set");
        let c = ok(&patch(&d, &admin, &name, json!({k: "max"})), k);
        assert!(c["spec"]["limits"].get(k).is_none(), "{k} cleared");
        let back = ok(
            &call(
                &d,
                &admin,
                "GET",
                &format!("/api/v1/containers/{name}/limits"),
                None,
            ),
            "kernel limits",
        );
        match k {
            // The kernel's default weight.
            "cpu_weight" | "io_weight" => {}
            // The parent's list (cgroup v1 holds it written out).
            "cpuset_mems" => {
                if let Some(m) = back.get(k) {
                    assert_eq!(
                        m.as_str(),
                        team_cpuset(&d, team, "cpuset.mems").as_deref(),
                        "{back}"
                    );
                }
            }
            _ => assert!(back.get(k).is_none(), "{k} back to no limit: {back}"),
        }
    }

    // Refused values name the field and what is allowed, and change nothing.
    let before = spec_limits(&d, &admin, &name);
    let pids_before = kernel(&d, team, &name, &["pids.max"]).unwrap();
    for (body, field) in [
        (json!({"cpus": 0, "pids_max": 5}), "limits.cpus"),
        (json!({"cpu_weight": 0}), "limits.cpu_weight"),
        (json!({"io_weight": 20000}), "limits.io_weight"),
        (json!({"memory_max": 5, "pids_max": 5}), "limits.memory_max"),
        (json!({"pids_max": 0}), "limits.pids_max"),
        (
            json!({"memory_min": 64 << 20, "memory_max": 32 << 20}),
            "limits.memory_min",
        ),
        (
            json!({"cpuset_cpus": "x", "pids_max": 5}),
            "limits.cpuset_cpus",
        ),
        (json!({"io_max": ["nonsense"]}), "limits.io_max"),
    ] {
        let r = patch(&d, &admin, &name, body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let e = r.json();
        assert_eq!(e["field"], field, "{body}: {e}");
        assert!(
            ["must", "allowed"]
                .iter()
                .any(|w| e["message"].as_str().unwrap().contains(w)),
            "the message says what is allowed: {e}"
        );
    }
    // A knob this host cannot set (memory.min without a cgroup2 memory controller) is
    // refused by name, not half-applied.
    if !avail.iter().any(|a| a == "memory_min") {
        let r = patch(
            &d,
            &admin,
            &name,
            json!({"memory_min": 16 << 20, "pids_max": 7}),
        );
        assert!((400..500).contains(&r.status), "{}", r.body);
        let e = r.json();
        assert_eq!(e["field"], "limits.memory_min", "{e}");
        assert!(e["message"].as_str().unwrap().contains("memory_min"), "{e}");
    }
    for bad in [json!({"pids_max": "lots"}), json!({"cpu": 1})] {
        let r = patch(&d, &admin, &name, bad.clone());
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    assert_eq!(
        spec_limits(&d, &admin, &name),
        before,
        "refused: spec unchanged"
    );
    assert_eq!(
        kernel(&d, team, &name, &["pids.max"]).unwrap(),
        pids_before,
        "refused: kernel unchanged"
    );

    // A body of old clients (values only) still works.
    let c = ok(
        &patch(
            &d,
            &admin,
            &name,
            json!({"pids_max": 64, "memory_max": 128 << 20}),
        ),
        "old body",
    );
    assert_eq!(c["spec"]["limits"]["pids_max"], 64);
}

#[tokio::test]
async fn undo_restores_the_limits_before_a_change() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    let r = call(
        &d,
        &admin,
        "POST",
        "/api/v1/teams",
        Some(json!({"name": "t-undo"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    for (u, role) in [("op-u", "operator"), ("view-u", "viewer")] {
        let body = json!({"name": u, "role": role, "teams": ["t-undo"],
                          "password": "a long password 123"});
        let r = call(&d, &admin, "POST", "/api/v1/users", Some(body));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let (op, viewer) = (d.token_for("op-u"), d.token_for("view-u"));
    let rootfs = Rootfs::new();
    let name = tests::unique("undo");
    let spec = json!({"name": name, "team": "t-undo", "rootfs": rootfs.path(),
        "command": ["sleep", "1"], "limits": {"pids_max": 100}});
    let r = call(&d, &admin, "POST", "/api/v1/containers", Some(spec));
    assert_eq!(r.status, 201, "{}", r.body);
    let undo = format!("/api/v1/containers/{name}/undo");

    // Nothing to undo yet.
    assert_eq!(call(&d, &op, "POST", &undo, Some(json!({}))).status, 409);
    ok(&patch(&d, &op, &name, json!({"pids_max": 50})), "first");
    ok(
        &patch(&d, &op, &name, json!({"pids_max": "max", "cpus": 1})),
        "second",
    );

    // A viewer may not; the latest change is undone by default.
    assert_eq!(
        call(&d, &viewer, "POST", &undo, Some(json!({}))).status,
        403
    );
    let c = ok(
        &call(&d, &op, "POST", &undo, Some(json!({}))),
        "undo latest",
    );
    assert_eq!(c["spec"]["limits"], json!({"pids_max": 50}));
    assert_eq!(kernel(&d, "t-undo", &name, &["pids.max"]).unwrap().1, "50");

    // The timeline holds every change with old and new limits; undo names one by id.
    let ev = ok(
        &call(
            &d,
            &viewer,
            "GET",
            &format!("/api/v1/containers/{name}/events"),
            None,
        ),
        "events",
    );
    let changes: Vec<&Value> = ev
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["result"] == "ok" && e["action"] == "container.update")
        .collect();
    assert_eq!(changes.len(), 2, "{ev}");
    let undone = ev
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "container.undo" && e["result"] == "ok")
        .unwrap();
    assert_eq!(undone["actor"], "op-u");
    let first = changes[0]["id"].as_i64().unwrap();
    let c = ok(
        &call(&d, &admin, "POST", &undo, Some(json!({"event": first}))),
        "undo the first",
    );
    assert_eq!(c["spec"]["limits"], json!({"pids_max": 100}));
    assert_eq!(kernel(&d, "t-undo", &name, &["pids.max"]).unwrap().1, "100");
    let r = call(&d, &admin, "POST", &undo, Some(json!({"event": 1})));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "event");

    // The OpenAPI document says how to clear, and has the undo route.
    let doc = ok(
        &call(&d, &admin, "GET", "/api/v1/openapi.json", None),
        "doc",
    );
    let body = &doc["paths"]["/api/v1/containers/{name}/limits"]["patch"]["requestBody"];
    assert!(
        body["description"].as_str().unwrap().contains("max"),
        "{body}"
    );
    assert!(
        body.to_string().contains("LimitsPatch"),
        "the body is a LimitsPatch: {body}"
    );
    assert!(doc["paths"]["/api/v1/containers/{name}/undo"]["post"].is_object());
}

#[tokio::test]
async fn cli_update_takes_max_and_undo() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let admin = d.admin_token();
    let rootfs = Rootfs::new();
    let name = tests::unique("cli");
    let spec = json!({"name": name, "rootfs": rootfs.path(), "command": ["sleep", "1"],
        "limits": {"cpus": 0.5, "memory_max": 256 << 20}});
    let r = call(&d, &admin, "POST", "/api/v1/containers", Some(spec));
    assert_eq!(r.status, 201, "{}", r.body);
    let out = d.corral(&[
        "update",
        &name,
        "--memory",
        "max",
        "--cpus",
        "max",
        "--pids-limit",
        "77",
    ]);
    let l: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(l, json!({"pids_max": 77}), "{out}");
    assert_eq!(kernel(&d, "default", &name, &["pids.max"]).unwrap().1, "77");
    let out = d.corral(&["update", &name, "--undo"]);
    let l: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(l["cpus"], 0.5, "{out}");
    assert_eq!(l["memory_max"], 256 << 20, "{out}");
    // Docker's device flags: one key of one device, by /dev path; DEVICE:max removes it.
    if std::path::Path::new("/dev/vda").exists() {
        let out = d.corral(&[
            "update",
            &name,
            "--device-read-bps",
            "/dev/vda:10M",
            "--device-write-iops",
            "254:0:100",
        ]);
        let l: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            l["io_max"],
            json!(["254:0 rbps=10485760 wiops=100"]),
            "{out}"
        );
        let (f, v) = kernel(
            &d,
            "default",
            &name,
            &["io.max", "blkio.throttle.read_bps_device"],
        )
        .unwrap();
        assert!(v.contains("254:0") && v.contains("10485760"), "{f}: {v}");
        let out = d.corral(&["update", &name, "--device-read-bps", "/dev/vda:max"]);
        let l: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(l["io_max"], json!(["254:0 wiops=100"]), "{out}");
        let (f, v) = kernel(
            &d,
            "default",
            &name,
            &["io.max", "blkio.throttle.read_bps_device"],
        )
        .unwrap();
        assert!(!v.contains("10485760"), "{f}: {v}");
        let out = d.corral(&["update", &name, "--device-write-iops", "max"]);
        let l: Value = serde_json::from_str(out.trim()).unwrap();
        assert!(l.get("io_max").is_none(), "{out}");
    }
    // `run`/create refuses max; an update without a knob says so.
    let out = std::process::Command::new(tests::corral_bin())
        .arg("--host")
        .arg(format!("unix://{}", d.socket.display()))
        .args(["update", &name])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// A refused `corral run` prints `error: …` naming the flag's field, with no backtrace even
/// when the user's environment asks for one (`RUST_BACKTRACE`), and nothing is created.
#[tokio::test]
async fn cli_refusal_prints_no_backtrace() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let root = rootfs.path().display().to_string();
    // Refused by the daemon (400 naming limits.cpus), and by the CLI's own parser.
    let cases: [(&[&str], &str); 2] = [
        (&["--cpus", "0"], "--cpus: 0 must be"),
        (&["--memory", "lots"], "--memory"),
    ];
    for bt in ["1", "full"] {
        for (flags, names) in cases {
            let out = std::process::Command::new(tests::corral_bin())
                .arg("--host")
                .arg(format!("unix://{}", d.socket.display()))
                .arg("run")
                .arg("-d")
                .args(flags)
                .args(["--rootfs", &root, "true"])
                .env("RUST_BACKTRACE", bt)
                .env("RUST_LIB_BACKTRACE", bt)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{flags:?}: {err}");
            assert!(err.starts_with("error: "), "{flags:?}: {err}");
            assert!(err.contains(names), "{flags:?} names {names}: {err}");
            let frames = err
                .lines()
                .filter(|l| {
                    let t = l.trim_start();
                    t.split_once(':').is_some_and(|(n, _)| {
                        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                    })
                })
                .count();
            assert!(
                !err.to_lowercase().contains("backtrace") && frames == 0,
                "RUST_BACKTRACE={bt} {flags:?}: {err}"
            );
        }
    }
    let admin = d.admin_token();
    let list = ok(&call(&d, &admin, "GET", "/api/v1/containers", None), "list");
    assert_eq!(list, json!([]), "nothing created");
}
