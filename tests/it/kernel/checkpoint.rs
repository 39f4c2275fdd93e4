//! Checkpoint and restore through CRIU (issue 18). Where `criu check` fails on the kernel (this
//! host: 6.18 with Debian's criu 3.17, "Unexpected rt vDSO area bounds"), `corral info`, the
//! API and the CLI say so in criu's words, and a refused checkpoint or restore changes nothing:
//! the container runs on, same process, its counter still counting; no container is made.

use std::time::Duration;

use backend::client::ClientError;
use hyper::Method;
use tests::{
    Daemon,
    containers::{Reaper, add_team, call, create, exec, get},
    rootfs::Rootfs,
};

/// The counter the container runs: `/tmp/n` holds how far it got.
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done";

async fn counter(c: &backend::client::Client, name: &str) -> u64 {
    let r = exec(c, name, &["cat", "/tmp/n"]).await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    r.stdout.trim().parse().expect("a number")
}

/// The refusal of a checkpoint route: (status, code, message).
fn refusal<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            message,
            ..
        }) => (status.as_u16(), code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn without_a_working_criu_checkpoint_and_restore_refuse_with_its_reason_and_change_nothing() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let host: wire::HostInfo = call(&c, Method::GET, "/api/v1/host", None)
        .await
        .expect("host");
    let ck = host.checkpoint;
    println!("kernel {}: checkpoint {ck:?}", host.kernel);
    if ck.available {
        println!("criu check passes on this kernel: the refusal is not what happens here");
        return;
    }
    assert!(!ck.reason.is_empty(), "an unavailable checkpoint says why");
    if ck.version.is_some() {
        assert!(
            ck.reason.starts_with("criu check failed: "),
            "criu is installed, its check is the reason: {ck:?}"
        );
    }
    // `corral info` says it, in the same words.
    let info = d.corral(&["info"]);
    let line = info
        .lines()
        .find(|l| l.starts_with("Checkpoint:"))
        .unwrap_or_else(|| panic!("a Checkpoint line in corral info:\n{info}"));
    assert!(
        line.contains("unavailable") && line.contains(&ck.reason),
        "{line}"
    );

    let team = tests::unique("ckpt");
    add_team(&c, &team).await;
    let rootfs = Rootfs::new();
    let name = tests::unique("count");
    let other = tests::unique("copy");
    let before = create(
        &c,
        serde_json::json!({"name": name, "team": team, "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", COUNTER], "start": true}),
    )
    .await;
    assert_eq!(before.status, "running");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n0 = counter(&c, &name).await;

    // The API: 503 checkpoint_unavailable with criu's reason, for both routes.
    let expected = format!("checkpoint is unavailable on this host: {}", ck.reason);
    for body in [
        serde_json::json!({}),
        serde_json::json!({"leave_running": true}),
        serde_json::json!({"export": "/tmp/corral-ckpt-never.tar"}),
    ] {
        let r = call::<wire::Checkpoint>(
            &c,
            Method::POST,
            &format!("/api/v1/containers/{name}/checkpoint"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            refusal(r),
            (503, "checkpoint_unavailable".to_owned(), expected.clone()),
            "{body}"
        );
    }
    let r = call::<wire::Container>(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/restore"),
        Some(serde_json::json!({"name": other})),
    )
    .await;
    assert_eq!(
        refusal(r),
        (503, "checkpoint_unavailable".to_owned(), expected.clone())
    );

    // The CLI: one error line with the reason.
    let export = std::env::temp_dir().join(tests::unique("ckpt-export"));
    let export = export.with_extension("tar");
    for args in [
        vec!["checkpoint", name.as_str()],
        vec!["checkpoint", name.as_str(), "--leave-running"],
        vec![
            "checkpoint",
            name.as_str(),
            "--export",
            export.to_str().expect("utf-8"),
        ],
        vec!["restore", name.as_str(), "--name", other.as_str()],
        vec![
            "restore",
            name.as_str(),
            "--import",
            export.to_str().expect("utf-8"),
        ],
    ] {
        let out = d.cli(None, &args, "");
        assert!(!out.ok, "corral {args:?} refused");
        assert_eq!(out.stderr.trim(), format!("error: {expected}"), "{args:?}");
    }

    // Nothing changed: the same init runs on and counts, no export, no restored container, no
    // checkpoint in the state directory.
    let after = get(&c, &name).await;
    assert_eq!(after.status, "running");
    assert_eq!(after.pid, before.pid, "the same process");
    assert_eq!(after.started_at, before.started_at);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n1 = counter(&c, &name).await;
    assert!(n1 > n0, "the counter goes on: {n0} then {n1}");
    assert!(!export.exists(), "no export was written");
    let restored = call::<wire::Container>(
        &c,
        Method::GET,
        &format!("/api/v1/containers/{other}"),
        None,
    )
    .await;
    assert_eq!(refusal(restored).0, 404, "no restored container");
    let state = d.state.path().join("state");
    let left: Vec<_> = walk(&state)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("checkpoint"))
        .collect();
    assert!(left.is_empty(), "no checkpoint files: {left:?}");

    // Audited as refused attempts.
    let audit: Vec<wire::AuditEntry> = call(
        &c,
        Method::GET,
        "/api/v1/audit?action=container.checkpoint",
        None,
    )
    .await
    .expect("audit");
    let ours: Vec<_> = audit
        .iter()
        .filter(|e| e.target.as_deref() == Some(&format!("container:{name}")))
        .collect();
    assert!(ours.len() >= 5, "every attempt is a row: {ours:?}");
    assert!(ours.iter().all(|e| e.result == "failed"), "{ours:?}");

    // Rights and fields are checked before the host: a viewer is refused (403), a bad field
    // is a 400 naming it, a hidden container a 404 — as for the other container actions.
    let viewer = tests::unique("viewer");
    d.add_user(&viewer, "viewer", &[&team]);
    let token = d.token_for(&viewer);
    let path = format!("/api/v1/containers/{name}/checkpoint");
    let r = tests::call(&d, &token, "POST", &path, Some(serde_json::json!({})));
    assert_eq!(r.status, 403, "{}", r.body);
    let r = tests::call(
        &d,
        &token,
        "POST",
        &format!("/api/v1/containers/{name}/restore"),
        Some(serde_json::json!({})),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let outsider = tests::unique("outsider");
    d.add_user(&outsider, "operator", &[]);
    let token = d.token_for(&outsider);
    let r = tests::call(&d, &token, "POST", &path, Some(serde_json::json!({})));
    assert_eq!(r.status, 404, "{}", r.body);
    let operator = tests::unique("operator");
    d.add_user(&operator, "operator", &[&team]);
    let token = d.token_for(&operator);
    let r = tests::call(
        &d,
        &token,
        "POST",
        &path,
        Some(serde_json::json!({"export": "/tmp/x.tar"})),
    );
    assert_eq!(r.status, 403, "export is a host path: admins: {}", r.body);
    for (route, body, field) in [
        (
            "checkpoint",
            serde_json::json!({"export": "x.tar"}),
            "export",
        ),
        (
            "checkpoint",
            serde_json::json!({"export": "/srv/../etc/x"}),
            "export",
        ),
        (
            "checkpoint",
            serde_json::json!({"leave_running": 1}),
            "leave_running",
        ),
        ("restore", serde_json::json!({"name": "-bad"}), "name"),
        (
            "restore",
            serde_json::json!({"import": "rel.tar"}),
            "import",
        ),
        ("restore", serde_json::json!({"nope": true}), "nope"),
    ] {
        let r = tests::call(
            &d,
            &token,
            "POST",
            &format!("/api/v1/containers/{name}/{route}"),
            Some(body.clone()),
        );
        assert_eq!(r.status, 400, "{route} {body}: {}", r.body);
        assert_eq!(
            r.json()["field"]
                .as_str()
                .map(|f| f.split('.').next().unwrap_or(f)),
            Some(field),
            "{route} {body}: {}",
            r.body
        );
    }
    assert_eq!(
        get(&c, &name).await.pid,
        before.pid,
        "still the same process"
    );

    let _: serde_json::Value = call(
        &c,
        Method::DELETE,
        &format!("/api/v1/containers/{name}?force=true"),
        None,
    )
    .await
    .expect("remove");
}

/// Every path under `dir` (not following symlinks).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}
