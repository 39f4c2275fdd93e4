//! `GET /api/v1/host`, `GET /api/v1/host/cgroups` and `corral info` against a real daemon,
//! which detects the host's cgroups and creates its own subtree at start.

use backend::cgroup::{Cgroups, Roots};
use tests::Daemon;

#[tokio::test]
async fn host_info_shows_the_capability_matrix() {
    let mut daemon = Daemon::start();
    let client = daemon.unix_client();
    let expected_mode = Cgroups::layout(&Roots::host()).unwrap().mode.to_string();

    let h: wire::HostInfo = client.get("/api/v1/host").await.unwrap();
    assert_eq!(h.cgroup_mode, expected_mode);
    assert_eq!(h.cgroup_root, daemon.cgroup_root);
    assert!(
        h.cpus >= 1 && h.memory_bytes > 0 && !h.kernel.is_empty(),
        "{h:?}"
    );
    for knob in ["cpu_max", "memory_max", "pids_max"] {
        let k = h.knobs.iter().find(|k| k.name == knob).unwrap();
        assert!(k.available && k.live && !k.files.is_empty(), "{k:?}");
    }
    // memory.min exists on a cgroup2 memory controller only: available exactly there, and
    // where it is not, the note says why.
    let memory_v2 = h
        .controllers
        .iter()
        .any(|c| c.name == "memory" && c.version.as_deref() == Some("v2"));
    let min = h.knobs.iter().find(|k| k.name == "memory_min").unwrap();
    assert_eq!(min.available, memory_v2, "{min:?}");
    assert!(min.available || min.note.is_some(), "{min:?}");
    assert!(
        h.controllers
            .iter()
            .any(|c| c.name == "memory" && c.version.is_some())
    );
    assert!(h.freeze.is_some());

    let health: wire::Health = client.get("/api/v1/health").await.unwrap();
    assert_eq!(health.cgroup_mode.as_deref(), Some(expected_mode.as_str()));

    // The read-only tree shows the whole host, Corral's subtree included.
    let tree: wire::CgroupTree = client.get("/api/v1/host/cgroups").await.unwrap();
    assert_eq!(tree.cgroup_mode, expected_mode);
    let own = format!("/{}", daemon.cgroup_root);
    for hier in &tree.hierarchies {
        assert_eq!(hier.nodes[0].path, "/", "{} starts at its root", hier.name);
        let node = hier.nodes.iter().find(|n| n.path == own);
        assert!(
            node.is_some_and(|n| n.corral && n.depth == 1),
            "{own} in {}",
            hier.name
        );
    }
    assert!(
        tree.hierarchies
            .iter()
            .flat_map(|h| &h.nodes)
            .any(|n| n.cpu_usage_usec.is_some()),
        "usage is reported"
    );

    // `corral info` prints the same.
    let out = std::process::Command::new(tests::corral_bin())
        .arg("--host")
        .arg(format!("unix://{}", daemon.socket.display()))
        .arg("info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("Cgroups:      {expected_mode}")),
        "{text}"
    );
    assert!(text.contains("memory_max"), "{text}");
    let table = text.split("LIMIT").nth(1).unwrap_or_default();
    let table = table.split("Not settable").next().unwrap_or_default();
    assert_eq!(
        table.contains("memory_min"),
        memory_v2,
        "only settable knobs in the table: {text}"
    );
    assert!(
        text.contains("Devices:") && text.contains("c 1:3 rwm /dev/null"),
        "{text}"
    );

    // A refused command says why in one line, with no backtrace even when the user's
    // environment asks for backtraces.
    let out = std::process::Command::new(tests::corral_bin())
        .arg("--host")
        .arg(format!("unix://{}", daemon.socket.display()))
        .args(["rm", "no-such-container"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");

    // The empty subtree goes away with the daemon.
    let dirs: Vec<_> = tree
        .hierarchies
        .iter()
        .map(|h| std::path::Path::new(&h.mount).join(&daemon.cgroup_root))
        .collect();
    assert!(dirs.iter().all(|d| d.is_dir()));
    assert!(daemon.stop().success(), "{}", daemon.log());
    for d in dirs {
        assert!(!d.exists(), "{} removed at shutdown", d.display());
    }
}
