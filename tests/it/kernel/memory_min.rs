//! `memory_min` (cgroup2 `memory.min`, hard memory protection) reaches the container's group
//! and clears back to the kernel's 0. Only where the host can set it (`GET /api/v1/host` calls
//! it available: a cgroup2 memory controller, as in the pure-v2 VM); elsewhere it returns at
//! once — the refusal there is `api::container_limits`' to test.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::json;
use tests::{Daemon, call, containers::Reaper, rootfs::Rootfs};

/// Whether the daemon's host can set `memory_min`.
fn settable(d: &Daemon, admin: &str) -> bool {
    let h = call(d, admin, "GET", "/api/v1/host", None).json();
    h["knobs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["name"] == "memory_min" && k["available"] == true)
}

/// The container's `memory.min`, from whichever hierarchy has the file.
fn memory_min(d: &Daemon, team: &str, name: &str) -> String {
    tests::containers::cgroup_mounts()
        .into_iter()
        .find_map(|m| {
            let f = m
                .join(&d.cgroup_root)
                .join(team)
                .join(name)
                .join("memory.min");
            std::fs::read_to_string(f).ok()
        })
        .expect("memory.min in the container's group")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn memory_min_is_written_and_cleared() {
    let d = Daemon::start();
    let admin = d.admin_token();
    if !settable(&d, &admin) {
        eprintln!("skipped: this host has no cgroup2 memory controller (memory.min)");
        return;
    }
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let name = tests::unique("mmin");
    let spec = json!({"name": name, "rootfs": rootfs.path(), "command": ["sleep", "1"],
        "limits": {"memory_min": 16 << 20}});
    let r = call(&d, &admin, "POST", "/api/v1/containers", Some(spec));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(memory_min(&d, "default", &name), "16777216");

    let path = format!("/api/v1/containers/{name}/limits");
    for clear in [json!("max"), json!(null)] {
        let r = call(
            &d,
            &admin,
            "PATCH",
            &path,
            Some(json!({"memory_min": clear})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.json()["spec"]["limits"].get("memory_min").is_none());
        assert_eq!(
            memory_min(&d, "default", &name),
            "0",
            "cleared with {clear}"
        );
        let r = call(
            &d,
            &admin,
            "PATCH",
            &path,
            Some(json!({"memory_min": 8 << 20})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(memory_min(&d, "default", &name), "8388608");
    }
}
