//! The container and image API's validation: every bad request is a JSON 4xx naming the field.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use backend::client::{Client, ClientError};
use hyper::Method;
use tests::{Daemon, TempDir};

async fn send(
    c: &Client,
    method: Method,
    path: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, ClientError> {
    let (_, b) = c
        .request(method, path, Some(serde_json::to_vec(&body).unwrap()))
        .await?;
    Ok(if b.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&b).unwrap()
    })
}

fn expect_err(
    r: Result<serde_json::Value, ClientError>,
    want_status: u16,
    want_field: Option<&str>,
) -> String {
    match r {
        Err(ClientError::Api {
            status,
            field,
            message,
            ..
        }) => {
            assert_eq!(status.as_u16(), want_status, "{message}");
            assert_eq!(field.as_deref(), want_field, "{message}");
            message
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

struct CgroupCleanup(String);
impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for l in text.lines() {
            if let Some((pre, post)) = l.split_once(" - ") {
                let fstype = post.split_whitespace().next().unwrap_or("");
                if fstype == "cgroup" || fstype == "cgroup2" {
                    let mp = pre.split_whitespace().nth(4).unwrap_or("");
                    let root = std::path::Path::new(mp).join(&self.0);
                    if let Ok(rd) = std::fs::read_dir(&root) {
                        for e in rd.flatten() {
                            if e.path().is_dir() {
                                let _ = std::fs::remove_dir(e.path());
                            }
                        }
                    }
                    let _ = std::fs::remove_dir(root);
                }
            }
        }
    }
}

#[tokio::test]
async fn create_validation_names_the_field() {
    let daemon = Daemon::start();
    let _cg = CgroupCleanup(daemon.cgroup_root.clone());
    let c = daemon.unix_client();
    let rootfs = TempDir::new("corral-api-rootfs");
    let r = rootfs.path().display().to_string();
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            serde_json::json!({"name": "bad/name", "rootfs": r, "command": ["true"]}),
            "name",
        ),
        (
            serde_json::json!({"name": "-x", "rootfs": r, "command": ["true"]}),
            "name",
        ),
        (
            serde_json::json!({"team": "a b", "rootfs": r, "command": ["true"]}),
            "team",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "bogus": 1}),
            "bogus",
        ),
        (
            serde_json::json!({"rootfs": r, "image": "x", "command": ["true"]}),
            "image",
        ),
        (serde_json::json!({"command": ["true"]}), "image"),
        (
            serde_json::json!({"rootfs": "relative/dir", "command": ["true"]}),
            "rootfs",
        ),
        (
            serde_json::json!({"rootfs": "/nonexistent-corral-dir", "command": ["true"]}),
            "rootfs",
        ),
        (serde_json::json!({"rootfs": r}), "command"),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "env": ["NOEQUALS"]}),
            "env",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "workdir": "rel"}),
            "workdir",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "hostname": "bad_host!"}),
            "hostname",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "user": "root"}),
            "user",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "network": "bridge0"}),
            "network",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "restart": "sometimes"}),
            "restart",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "mounts": [{"type": "bind", "source": r, "destination": "rel"}]}),
            "mounts[0].destination",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "mounts": [{"type": "bind", "destination": "/x"}]}),
            "mounts[0].source",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "mounts": [{"type": "nfs", "destination": "/x"}]}),
            "mounts[0].type",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "mounts": [{"type": "tmpfs", "destination": "/a/../b"}]}),
            "mounts[0].destination",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "limits": {"cpu_weight": 0}}),
            "limits.cpu_weight",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "limits": {"cpus": 0}}),
            "limits.cpus",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "limits": {"memory_max": 10}}),
            "limits.memory_max",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "limits": {"pids_max": 0}}),
            "limits.pids_max",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "limits": {"cpuset_cpus": "x"}}),
            "limits.cpuset_cpus",
        ),
        (
            serde_json::json!({"rootfs": r, "command": ["true"], "limits": {"memroy": 1}}),
            "limits.memroy",
        ),
        (
            serde_json::json!({"image": "no-such-image:1", "command": ["true"]}),
            "image",
        ),
    ];
    for (body, field) in cases {
        let r = send(&c, Method::POST, "/api/v1/containers", body.clone()).await;
        expect_err(r, 400, Some(field));
    }
    let list = send(
        &c,
        Method::GET,
        "/api/v1/containers?all=true",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(
        list,
        serde_json::json!([]),
        "no invalid request left a record"
    );
}

#[tokio::test]
async fn lifecycle_errors_are_json() {
    let daemon = Daemon::start();
    let _cg = CgroupCleanup(daemon.cgroup_root.clone());
    let c = daemon.unix_client();
    let rootfs = TempDir::new("corral-api-rootfs");
    let created = send(&c, Method::POST, "/api/v1/containers",
        serde_json::json!({"name": "web", "team": "t1", "rootfs": rootfs.path(), "command": ["true"]})).await.unwrap();
    assert_eq!(created["status"], "created");
    assert_eq!(created["limits"]["pids_max"], 2048, "default pids limit");
    let dup = send(
        &c,
        Method::POST,
        "/api/v1/containers",
        serde_json::json!({"name": "web", "rootfs": rootfs.path(), "command": ["true"]}),
    )
    .await;
    expect_err(dup, 409, None);
    // More log lines than the schema allows: a field error, before any log is read.
    expect_err(
        send(
            &c,
            Method::GET,
            "/api/v1/containers/web/logs?tail=1000001",
            serde_json::json!({}),
        )
        .await,
        400,
        Some("tail"),
    );
    expect_err(
        send(
            &c,
            Method::GET,
            "/api/v1/containers/nope",
            serde_json::json!({}),
        )
        .await,
        404,
        None,
    );
    expect_err(
        send(
            &c,
            Method::POST,
            "/api/v1/containers/web/exec",
            serde_json::json!({"command": ["ls"]}),
        )
        .await,
        409,
        None,
    );
    expect_err(
        send(
            &c,
            Method::POST,
            "/api/v1/containers/web/exec",
            serde_json::json!({"command": []}),
        )
        .await,
        400,
        Some("command"),
    );
    expect_err(
        send(
            &c,
            Method::POST,
            "/api/v1/containers/web/kill",
            serde_json::json!({"signal": "SIGNOPE"}),
        )
        .await,
        400,
        Some("signal"),
    );
    expect_err(
        send(
            &c,
            Method::POST,
            "/api/v1/containers/web/freeze",
            serde_json::json!({}),
        )
        .await,
        409,
        None,
    );
    expect_err(
        send(
            &c,
            Method::POST,
            "/api/v1/containers/web/stop",
            serde_json::json!({"timeout": "soon"}),
        )
        .await,
        400,
        Some("timeout"),
    );
    expect_err(
        send(
            &c,
            Method::PATCH,
            "/api/v1/containers/web/limits",
            serde_json::json!({"cpu_weight": 20000}),
        )
        .await,
        400,
        Some("limits.cpu_weight"),
    );
    expect_err(
        send(
            &c,
            Method::DELETE,
            "/api/v1/images/none:1",
            serde_json::json!({}),
        )
        .await,
        404,
        None,
    );
    expect_err(
        send(
            &c,
            Method::POST,
            "/api/v1/images/import",
            serde_json::json!({"path": "relative.tar"}),
        )
        .await,
        400,
        Some("path"),
    );
    expect_err(
        send(
            &c,
            Method::POST,
            "/api/v1/images/import",
            serde_json::json!({"path": rootfs.path()}),
        )
        .await,
        400,
        Some("path"),
    );
    let got = send(
        &c,
        Method::GET,
        "/api/v1/containers/web",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(
        got["limits"]["pids_max"], 2048,
        "the rejected update changed nothing"
    );
    send(
        &c,
        Method::DELETE,
        "/api/v1/containers/web",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    expect_err(
        send(
            &c,
            Method::GET,
            "/api/v1/containers/web",
            serde_json::json!({}),
        )
        .await,
        404,
        None,
    );
}

/// No mount may cover /, /proc, /sys or /dev (a tmpfs over /proc/sys/kernel could forge what
/// the kernel reports), whoever asks: refused at create, through the API and the CLI, naming
/// the field, and nothing is created.
#[tokio::test]
async fn mounts_over_proc_sys_dev_are_refused() {
    let daemon = Daemon::start();
    let _cg = CgroupCleanup(daemon.cgroup_root.clone());
    let c = daemon.unix_client();
    let rootfs = TempDir::new("corral-api-rootfs");
    let src = TempDir::new("corral-api-src");
    for dest in [
        "/proc/sys/kernel",
        "/proc",
        "/proc/",
        "//proc/./sys",
        "/sys",
        "/sys/fs/cgroup",
        "/dev",
        "/dev/shm",
        "/",
        "/./",
    ] {
        for mount in [
            serde_json::json!({"type": "tmpfs", "destination": dest}),
            serde_json::json!({"type": "bind", "source": src.path(), "destination": dest}),
        ] {
            let r = send(
                &c,
                Method::POST,
                "/api/v1/containers",
                serde_json::json!({"rootfs": rootfs.path(), "command": ["true"], "mounts": [{"type": "tmpfs", "destination": "/ok"}, mount]}),
            )
            .await;
            let msg = expect_err(r, 400, Some("mounts[1].destination"));
            assert!(msg.contains("/proc, /sys or /dev"), "{dest}: {msg}");
        }
    }
    // Lookalikes elsewhere are fine.
    for dest in ["/procfs", "/devices", "/srv/proc", "/system"] {
        let r = send(
            &c,
            Method::POST,
            "/api/v1/containers",
            serde_json::json!({"rootfs": rootfs.path(), "command": ["true"], "mounts": [{"type": "tmpfs", "destination": dest}]}),
        )
        .await
        .unwrap_or_else(|e| panic!("{dest}: {e}"));
        let name = r["name"].as_str().unwrap().to_owned();
        send(
            &c,
            Method::DELETE,
            &format!("/api/v1/containers/{name}"),
            serde_json::json!({}),
        )
        .await
        .unwrap();
    }

    // The CLI shows the same refusal (its message names the path given to --tmpfs).
    let out = std::process::Command::new(tests::corral_bin())
        .arg("--host")
        .arg(format!("unix://{}", daemon.socket.display()))
        .args(["run", "-d", "--tmpfs", "/proc/sys/kernel", "--rootfs"])
        .arg(rootfs.path())
        .arg("true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("\"/proc/sys/kernel\" is not allowed")
            && stderr.contains("/proc, /sys or /dev"),
        "{stderr}"
    );
    let list = send(
        &c,
        Method::GET,
        "/api/v1/containers?all=true",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(
        list,
        serde_json::json!([]),
        "no refused request left a record"
    );
}
