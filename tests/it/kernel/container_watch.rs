//! Exits noticed as they happen (issue 17): the daemon holds a pidfd of each live container's
//! monitor and init, so an exit is recorded, billed and acted on at once — not at the next
//! sweep (every 30 s) or when someone reads the container. Proved without any API read while
//! it happens: a `--rm` container's cgroup and record go within seconds of its exit, and a
//! container whose restart policy starts it again is watched through each new init.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

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
    // The record goes last (a crash half way leaves it for the sweep), a moment after the
    // directory: the removal already ran without a read, so asking now cannot have caused it.
    let path = format!("/api/v1/containers/{name}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while call::<wire::Container>(&c, Method::GET, &path, None)
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "the record went too");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

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

/// The arguments of the process whose `/proc` directory is `proc` (a forked monitor pads its
/// rewritten command line with NULs).
fn cmdline(proc: &std::path::Path) -> Vec<String> {
    std::fs::read(proc.join("cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The PIDs of `daemon`'s monitor zygote (`corral __zygote`, a child of the daemon).
fn zygotes(daemon: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|p| p.trim().parse::<u32>().ok());
        if ppid == Some(daemon) && cmdline.split(|b| *b == 0).any(|a| a == b"__zygote") {
            out.push(pid);
        }
    }
    out
}

/// Monitors are forked by one zygote per daemon (issue 17: no exec, shared pages), and the
/// zygote never outlives its daemon: killed with -9, the daemon leaves its containers running
/// (their monitors are not the zygote's children) but no zygote; the restarted daemon starts
/// containers through a zygote of its own (a dead one is replaced, each container keeping
/// exactly one monitor), and a stopped one leaves none either.
#[tokio::test]
async fn the_monitor_zygote_ends_with_its_daemon_and_its_monitors_do_not() {
    let mut d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let first = tests::containers::sleeper(&d, &rootfs, "zyg").await;
    let pid = d.pid().unwrap();
    let z = zygotes(pid);
    assert_eq!(z.len(), 1, "one zygote, a child of the daemon: {z:?}");
    let monitor = {
        let ct = tests::containers::get(&d.unix_client(), &first).await;
        let state = std::fs::read_to_string(
            d.state
                .path()
                .join("state/containers")
                .join(&ct.id)
                .join("state.json"),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&state).unwrap();
        v["shim_pid"].as_i64().unwrap()
    };
    // `ps` shows it as an exec'd monitor (the leak check finds leaked ones by it).
    let args = cmdline(&std::path::PathBuf::from(format!("/proc/{monitor}")));
    let ct = tests::containers::get(&d.unix_client(), &first).await;
    let dir = d.state.path().join("state/containers").join(&ct.id);
    assert_eq!(
        args,
        ["corral", "__shim", &dir.display().to_string()],
        "{args:?}"
    );
    let exe = std::fs::read_link(format!("/proc/{monitor}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().starts_with("/memfd:"),
        "a forked monitor still runs from the sealed copy: {exe:?}"
    );

    d.kill9();
    let gone = until(Duration::from_secs(5), || {
        !std::path::Path::new(&format!("/proc/{}", z[0])).exists()
    });
    assert!(gone.is_some(), "the zygote ended with its daemon");
    assert!(
        std::path::Path::new(&format!("/proc/{monitor}")).exists(),
        "the monitor lives on"
    );

    d.restart();
    let c = d.unix_client();
    assert_eq!(tests::containers::get(&c, &first).await.status, "running");
    let second = tests::containers::sleeper(&d, &rootfs, "zyg").await;
    assert_eq!(tests::containers::get(&c, &second).await.status, "running");
    let pid = d.pid().unwrap();
    let z = zygotes(pid);
    assert_eq!(z.len(), 1, "{z:?}");

    // A zygote that died: the next start exec's its monitor instead, the one after that has a
    // new zygote; each container has exactly one monitor.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(z[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for n in 0..2 {
        let name = tests::containers::sleeper(&d, &rootfs, "zyg").await;
        let ct = tests::containers::get(&c, &name).await;
        assert_eq!(ct.status, "running", "start {n} after the zygote died");
        let dir = d.state.path().join("state/containers").join(&ct.id);
        let want = [
            "corral".to_owned(),
            "__shim".into(),
            dir.display().to_string(),
        ];
        let monitors = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| cmdline(&e.path()) == want)
            .count();
        assert_eq!(monitors, 1, "start {n} after the zygote died: one monitor");
    }
    let z = zygotes(pid);
    assert_eq!(z.len(), 1, "a new zygote: {z:?}");
    let _ = d.stop();
    assert!(
        until(Duration::from_secs(5), || {
            !std::path::Path::new(&format!("/proc/{}", z[0])).exists()
        })
        .is_some(),
        "no zygote after a stop"
    );
}
