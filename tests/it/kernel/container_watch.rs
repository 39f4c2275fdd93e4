//! Exits noticed as they happen (issue 17): the daemon holds a pidfd of each live container's
//! monitor and init, so an exit is recorded, billed and acted on at once — not at the next
//! sweep (every 30 s) or when someone reads the container. Proved without any API read while
//! it happens: a `--rm` container's cgroup and record go within seconds of its exit, and a
//! container whose restart policy starts it again is watched through each new init.

use std::time::{Duration, Instant};

use hyper::Method;
use tests::{
    Daemon,
    containers::{Reaper, add_team, call, cgroup_mounts, create},
    rootfs::Rootfs,
};

/// The container's cgroup directories in every hierarchy that holds the daemon's subtree.
fn cgroup_dirs(d: &Daemon, team: &str, name: &str) -> Vec<std::path::PathBuf> {
    cgroup_mounts()
        .into_iter()
        .filter(|m| m.join(&d.cgroup_root).is_dir())
        .map(|m| m.join(&d.cgroup_root).join(team).join(name))
        .collect()
}

/// Waits, reading only the filesystem, until `done`; how long it took.
fn until(within: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < within {
        if done() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test]
async fn an_exit_is_acted_on_at_once_without_a_read_or_a_sweep() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let rootfs = Rootfs::new();
    let team = tests::unique("watch");
    add_team(&c, &team).await;

    // --rm: removed (cgroup, directory, record) soon after its exit, with nobody asking.
    let name = tests::unique("rm");
    let ct = create(
        &c,
        serde_json::json!({"name": name, "team": team, "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", "sleep 1"], "auto_remove": true, "start": true}),
    )
    .await;
    assert_eq!(ct.status, "running");
    let dirs = cgroup_dirs(&d, &team, &name);
    assert!(dirs.iter().any(|p| p.is_dir()), "its cgroup while it runs");
    let container_dir = d.state.path().join("state/containers").join(&ct.id);
    assert!(container_dir.is_dir());
    let took = until(Duration::from_secs(10), || {
        dirs.iter().all(|p| !p.exists()) && !container_dir.exists()
    });
    println!("--rm container: gone {took:?} after start (it sleeps 1 s; the sweep is every 30 s)");
    let took = took.expect("removed within 10 s of a 1 s run, long before a 30 s sweep");
    assert!(
        took >= Duration::from_millis(900),
        "{took:?}: it ran its second"
    );
    let gone =
        call::<wire::Container>(&c, Method::GET, &format!("/api/v1/containers/{name}"), None).await;
    assert!(gone.is_err(), "the record went too");

    // A restart policy: each new init is watched; the last exit is recorded at once.
    let name = tests::unique("again");
    let ct = create(
        &c,
        serde_json::json!({"name": name, "team": team, "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", "sleep 0.5; exit 3"], "restart": "on-failure:2",
            "start": true}),
    )
    .await;
    let dirs = cgroup_dirs(&d, &team, &name);
    // Three runs of 0.5 s (and the monitor's back-off between them), then the exit releases
    // the cgroup — noticed by the watch, not by a read.
    let took = until(Duration::from_secs(20), || dirs.iter().all(|p| !p.exists()));
    println!("on-failure:2 container: cgroup released {took:?} after start");
    took.expect("the final exit was acted on within 20 s");
    let after: wire::Container = call(&c, Method::GET, &format!("/api/v1/containers/{name}"), None)
        .await
        .expect("record");
    assert_eq!(after.status, "exited");
    assert_eq!(after.exit_code, Some(3));
    assert_eq!(after.restart_count, 2, "{after:?}");
    let _ = ct;
    let _: serde_json::Value = call(
        &c,
        Method::DELETE,
        &format!("/api/v1/containers/{name}"),
        None,
    )
    .await
    .unwrap_or_default();
}

/// The list (`GET /containers`) is served from the registry's serialized records (issue 17):
/// after each change — a freeze, a kill, a start — each row is the container as `GET` shows it
/// (but for the team's ceilings only `GET` adds), and `?all` decides whether exited ones show.
#[tokio::test]
async fn the_list_shows_each_change_as_get_does() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let rootfs = Rootfs::new();
    let name = tests::containers::sleeper(&d, &rootfs, "listed").await;
    let row = |all: bool| {
        let c = c.clone();
        let name = name.clone();
        async move {
            let path = if all {
                "/api/v1/containers?all=true"
            } else {
                "/api/v1/containers"
            };
            let list = call::<serde_json::Value>(&c, Method::GET, path, None)
                .await
                .unwrap();
            list.as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == name.as_str())
                .cloned()
        }
    };
    let shown = || {
        let c = c.clone();
        let name = name.clone();
        async move {
            let mut v = call::<serde_json::Value>(
                &c,
                Method::GET,
                &format!("/api/v1/containers/{name}"),
                None,
            )
            .await
            .unwrap();
            let fields = v.as_object_mut().unwrap();
            fields.remove("team_limits");
            fields.remove("effective_limits");
            v
        }
    };
    let listed = row(false).await.expect("a running container is listed");
    assert_eq!(listed["status"], "running");
    assert_eq!(listed, shown().await);

    tests::containers::action(&c, &name, "freeze").await;
    let listed = row(false).await.expect("a paused container is listed");
    assert_eq!(listed["status"], "paused", "{listed}");
    assert_eq!(listed, shown().await);

    tests::containers::action(&c, &name, "thaw").await;
    tests::containers::action(&c, &name, "kill").await;
    assert_eq!(row(false).await, None, "an exited container only with ?all");
    let listed = row(true).await.expect("listed with ?all");
    assert_eq!(listed["status"], "exited", "{listed}");
    assert!(listed["exit_code"].is_number(), "{listed}");
    assert_eq!(listed, shown().await);

    tests::containers::action(&c, &name, "start").await;
    let listed = row(false).await.expect("started again");
    assert_eq!(listed["status"], "running", "{listed}");
    assert_eq!(listed, shown().await);
}
