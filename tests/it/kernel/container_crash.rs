//! A daemon killed (SIGKILL) in the middle of creating or starting a container: the next
//! start removes every leftover of the interrupted create (record, directory, cgroup, network
//! namespace and address) and adopts a container whose start the crash cut off, without
//! touching a live container. The crash comes from the daemon's fault-injection marker
//! (`<state>/containers/.crash-at`), which makes it SIGKILL itself at a named point.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use backend::client::Client;
use hyper::Method;
use tests::{
    containers::{Reaper, cgroup_mounts},
    net::{NetGuard, bridged_daemon, link_exists, netns},
    rootfs::Rootfs,
};

async fn call(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), backend::client::ClientError> {
    let (status, bytes) = match c
        .request(method, path, body.map(|b| serde_json::to_vec(&b).unwrap()))
        .await
    {
        Ok(r) => r,
        Err(backend::client::ClientError::Api {
            status, message, ..
        }) => return Ok((status.as_u16(), serde_json::json!({ "message": message }))),
        Err(e) => return Err(e),
    };
    let v = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    };
    Ok((status.as_u16(), v))
}

/// Every cgroup directory named `name` under the daemon's subtree, in any hierarchy.
fn cgroup_dirs(root: &str, name: &str) -> Vec<PathBuf> {
    cgroup_mounts()
        .into_iter()
        .map(|m| m.join(root).join("default").join(name))
        .filter(|p| p.is_dir())
        .collect()
}

fn status_in_db(state: &Path, name: &str) -> Option<String> {
    let db = rusqlite::Connection::open(state.join("corral.db")).unwrap();
    db.query_row(
        "SELECT status FROM containers WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .ok()
}

fn dirs(containers: &Path) -> Vec<String> {
    fs::read_dir(containers)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_create_is_swept_and_a_cut_off_start_adopted() {
    let (mut daemon, bridge, table) = bridged_daemon(false, &[]);
    let state = daemon.state.path().join("state");
    let containers = state.join("containers");
    let _net = NetGuard::new(&daemon, &bridge, &table);
    let _reaper = Reaper::new(&daemon);
    let rootfs = Rootfs::new();
    let mut c = daemon.unix_client();

    // A live bridged container that no sweep may touch.
    let keep = tests::unique("keep");
    let (code, k) = call(
        &c,
        Method::POST,
        "/api/v1/containers",
        Some(
            serde_json::json!({"name": keep, "rootfs": rootfs.path(), "network": "bridge",
            "command": ["sleep", "1000"], "start": true}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(code, 201, "{k}");
    let keep_id = k["id"].as_str().unwrap().to_owned();
    let keep_pid = k["pid"].as_i64().unwrap();

    // Each point is after one more step of create; the last one is after the network.
    for point in [
        "create:record",
        "create:dirs",
        "create:cgroup",
        "create:config",
        "create:network",
    ] {
        let name = tests::unique("crash");
        fs::write(containers.join(".crash-at"), point).unwrap();
        let r = call(
            &c,
            Method::POST,
            "/api/v1/containers",
            Some(serde_json::json!({"name": name, "rootfs": rootfs.path(),
                "network": "bridge", "command": ["sleep", "1000"], "start": true})),
        )
        .await;
        assert!(
            r.is_err(),
            "{point}: the daemon should have died mid-request (is corral built with \
             `--features fault-injection`? `cargo xtask test` does): {r:?}"
        );
        daemon.kill9();

        // What the crash left: a record that says 'creating', and the resources made so far.
        assert_eq!(
            status_in_db(&state, &name).as_deref(),
            Some("creating"),
            "{point}"
        );
        let left: Vec<String> = dirs(&containers)
            .into_iter()
            .filter(|d| *d != keep_id)
            .collect();
        if point != "create:record" {
            assert_eq!(left.len(), 1, "{point}: the new directory {left:?}");
        }
        if matches!(point, "create:cgroup" | "create:config" | "create:network") {
            assert!(
                !cgroup_dirs(&daemon.cgroup_root, &name).is_empty(),
                "{point}: its cgroup exists"
            );
        }
        if point == "create:network" {
            assert!(netns(&left[0]).exists(), "its network namespace exists");
        }

        daemon.restart();
        c = daemon.unix_client();
        let (code, body) = call(&c, Method::GET, &format!("/api/v1/containers/{name}"), None)
            .await
            .unwrap();
        assert_eq!(code, 404, "{point}: the record is gone: {body}");
        assert_eq!(status_in_db(&state, &name), None, "{point}");
        assert_eq!(
            dirs(&containers),
            vec![keep_id.clone()],
            "{point}: only the live container's directory is left"
        );
        assert!(
            cgroup_dirs(&daemon.cgroup_root, &name).is_empty(),
            "{point}: no cgroup left"
        );
        for d in &left {
            assert!(!netns(d).exists(), "{point}: no network namespace left");
        }
        let (_, eps) = call(&c, Method::GET, "/api/v1/network", None)
            .await
            .unwrap();
        let owners: Vec<&str> = eps["endpoints"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["container"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            owners.iter().all(|o| *o == keep_id),
            "{point}: no address left but the live container's: {eps}"
        );

        // The live container is untouched: same process, its network still up.
        let (_, k) = call(&c, Method::GET, &format!("/api/v1/containers/{keep}"), None)
            .await
            .unwrap();
        assert_eq!(k["status"], "running", "{point}: {k}");
        assert_eq!(k["pid"].as_i64(), Some(keep_pid), "{point}");
        assert!(netns(&keep_id).exists(), "{point}");
        let (_, ex) = call(
            &c,
            Method::POST,
            &format!("/api/v1/containers/{keep}/exec"),
            Some(serde_json::json!({"command": ["ip", "-4", "addr", "show", "eth0"]})),
        )
        .await
        .unwrap();
        let ip = k["network"]["ip_address"].as_str().unwrap_or("?");
        assert!(
            ex["stdout"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("inet {ip}/")),
            "{point}: {ip} on eth0: {ex}"
        );
    }

    // A start cut off after the monitor reported but before the record said 'running': the
    // next daemon adopts the running container.
    let name = tests::unique("adopt");
    fs::write(containers.join(".crash-at"), "start:monitor").unwrap();
    let r = call(
        &c,
        Method::POST,
        "/api/v1/containers",
        Some(serde_json::json!({"name": name, "rootfs": rootfs.path(),
            "command": ["sleep", "1000"], "start": true})),
    )
    .await;
    assert!(r.is_err(), "the daemon died mid-start: {r:?}");
    daemon.kill9();
    assert_eq!(status_in_db(&state, &name).as_deref(), Some("created"));
    daemon.restart();
    c = daemon.unix_client();
    let (_, a) = call(&c, Method::GET, &format!("/api/v1/containers/{name}"), None)
        .await
        .unwrap();
    assert_eq!(a["status"], "running", "adopted: {a}");
    let pid = a["pid"].as_i64().unwrap();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(
        cmdline, b"sleep\x001000\x00",
        "the adopted pid is the container's init"
    );

    for n in [&name, &keep] {
        let (code, body) = call(
            &c,
            Method::DELETE,
            &format!("/api/v1/containers/{n}?force=true"),
            None,
        )
        .await
        .unwrap();
        assert!(code < 300, "rm {n}: {body}");
    }
    assert!(!netns(&keep_id).exists());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while link_exists(&bridge) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !link_exists(&bridge),
        "the bridge goes with the last container"
    );
}
