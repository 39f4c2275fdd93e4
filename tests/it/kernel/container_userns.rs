//! A user namespace as an option: container root is an unprivileged host range. Inside, `id -u`
//! is 0 and /proc/self/uid_map shows the range; on the host the processes run as the range's
//! first id, files the container creates land with mapped owners, image files (idmapped layers)
//! stay writable for container root, and the cgroup limits still hold.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{fs, path::Path, time::Duration};

use backend::client::{Client, ClientError};
use hyper::Method;
use tests::{
    Daemon,
    containers::{Reaper, call, facts, remove},
    rootfs::Rootfs,
};

async fn exec(c: &Client, name: &str, script: &str) -> (i64, String) {
    let r = tests::containers::exec(c, name, &["/bin/sh", "-c", script]).await;
    (i64::from(r.exit_code), format!("{}{}", r.stdout, r.stderr))
}

/// `Uid:` / `Gid:` of /proc/PID/status: (real, effective, saved, fs).
fn ids(pid: i64, key: &str) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

fn owner(p: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

#[tokio::test]
async fn user_namespace_maps_root_to_a_host_range() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    // A range of our own per test process (other daemons' records are not ours to see).
    let base: u32 = 1_500_000_000 + (std::process::id() % 2000) * 65536;
    let name = tests::unique("userns");
    let created = call::<serde_json::Value>(
        &c,
        Method::POST,
        "/api/v1/containers",
        Some(serde_json::json!({"name": name, "rootfs": rootfs.path(),
            "command": ["sleep", "1000"], "userns": format!("{base}:65536"),
            "limits": {"pids_max": 10}, "start": true})),
    )
    .await;
    // Where a layer cannot be idmapped (tmpfs before 6.3, as in the VM) the daemon uses a
    // copy owned by the range: the container must run everywhere.
    let ct = created.unwrap_or_else(|e| panic!("create with a user namespace: {e:?}"));
    assert_eq!(ct["status"], "running", "{ct}");
    assert_eq!(ct["spec"]["userns"], format!("{base}:65536"), "recorded");
    let id = ct["id"].as_str().unwrap().to_owned();
    let pid = ct["pid"].as_i64().unwrap();

    // On the host: the init runs as the first id of the range, in its own user namespace.
    assert_eq!(ids(pid, "Uid:"), vec![base; 4]);
    assert_eq!(ids(pid, "Gid:"), vec![base; 4]);
    let map = fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", &base.to_string(), "65536"]
    );
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/user")).unwrap(),
        fs::read_link("/proc/self/ns/user").unwrap()
    );

    // Inside (exec enters the user namespace too): root, the map, image files owned by root
    // and writable, new files owned by root, a low port bindable, no real privilege.
    let (code, out) = exec(
        &c,
        &name,
        r#"
        echo uid=$(id -u) gid=$(id -g)
        echo map=$(cat /proc/self/uid_map)
        echo gmap=$(cat /proc/self/gid_map)
        echo image_owner=$(stat -c %u:%g /etc/passwd)
        echo 'x:x:1:1::/:/bin/sh' >> /etc/passwd && echo append=ok
        echo data > /created && mkdir /madedir && chown 1000:1000 /madedir && echo create=ok
        echo created_owner=$(stat -c %u:%g /created)
        nc -l -p 80 >/dev/null 2>&1 & sleep 0.3
        echo low_port=$(netstat -ltn 2>/dev/null | grep -c ':80 ')
        kill $! 2>/dev/null
        echo sysrq=$(echo h > /proc/sysrq-trigger 2>/dev/null && echo written || echo refused)
        echo hostname_change=$(hostname other 2>/dev/null && echo ok || echo refused)
        "#,
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let f = facts(&out);
    assert_eq!(f["uid"], "0 gid=0", "{out}");
    assert_eq!(f["map"], format!("0 {base} 65536"), "{out}");
    assert_eq!(f["gmap"], format!("0 {base} 65536"), "{out}");
    assert_eq!(f["image_owner"], "0:0", "idmapped layers: {out}");
    assert_eq!(f["append"], "ok", "{out}");
    assert_eq!(f["create"], "ok", "{out}");
    assert_eq!(f["created_owner"], "0:0", "{out}");
    assert_eq!(f["low_port"], "1", "{out}");
    assert_eq!(f["sysrq"], "refused", "{out}");
    assert_eq!(f["hostname_change"], "refused", "{out}");

    // Files land on the host with mapped owners.
    let upper = daemon
        .state
        .path()
        .join("state/containers")
        .join(&id)
        .join("upper");
    assert_eq!(owner(&upper.join("created")), (base, base));
    assert_eq!(
        owner(&upper.join("madedir")),
        (base + 1000, base + 1000),
        "container uid 1000 is host uid base+1000"
    );
    assert_eq!(owner(&upper.join("etc/passwd")), (base, base), "copied up");
    assert_eq!(
        owner(&rootfs.path().join("etc/passwd")),
        (0, 0),
        "the image itself is untouched"
    );
    assert!(
        !fs::read_to_string(rootfs.path().join("etc/passwd"))
            .unwrap()
            .contains("x:x:1:1"),
    );

    // The cgroup limit holds for the mapped root.
    let (code, out) = exec(
        &c,
        &name,
        "(for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 5 & done) 2>/dev/null; set -- /proc/[0-9]*; echo procs=$#; exit 0",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let procs: u32 = facts(&out)["procs"].parse().unwrap();
    assert!(procs <= 10, "pids.max 10 holds: {out}");

    // `auto` takes a free range; a range that overlaps another container's is refused.
    let auto = tests::unique("userns-auto");
    let a = call::<serde_json::Value>(
        &c,
        Method::POST,
        "/api/v1/containers",
        Some(serde_json::json!({"name": auto, "rootfs": rootfs.path(),
            "command": ["sleep", "1000"], "userns": "auto", "start": true})),
    )
    .await
    .unwrap();
    let range = a["spec"]["userns"].as_str().unwrap().to_owned();
    let (host, size) = range.split_once(':').unwrap();
    let (host, size): (u32, u32) = (host.parse().unwrap(), size.parse().unwrap());
    assert_eq!(size, 65536);
    assert!(host >= 1_000_000_000, "{range}");
    assert!(
        u64::from(host) + 65536 <= u64::from(base) || host >= base + 65536,
        "{range} does not overlap {base}:65536"
    );
    assert_eq!(ids(a["pid"].as_i64().unwrap(), "Uid:"), vec![host; 4]);
    let clash = call::<serde_json::Value>(
        &c,
        Method::POST,
        "/api/v1/containers",
        Some(
            serde_json::json!({"name": tests::unique("userns-clash"), "rootfs": rootfs.path(),
            "command": ["true"], "userns": format!("{}:10", base + 100)}),
        ),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&clash, ClientError::Api { status, field, message, .. }
            if status.as_u16() == 400 && field.as_deref() == Some("userns") && message.contains(&name)),
        "{clash:?}"
    );

    for n in [&name, &auto] {
        remove(&c, n).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !daemon
            .state
            .path()
            .join("state/containers")
            .join(&id)
            .exists(),
        "removed"
    );
}
