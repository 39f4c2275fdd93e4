//! The OOM killer's choice: the daemon (-500) and the container monitors (-999) are the last it
//! picks, a container's init and what `corral exec` runs in it the first (+500), and a
//! container cannot lower its own value below that; `corral serve --default-memory` gives a
//! container created without a memory limit that limit, in the kernel.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{fs, path::PathBuf, process::Command};

use tests::{
    Daemon,
    containers::{Reaper, cgroup_mounts, create, exec, remove},
    rootfs::Rootfs,
};

fn oom_score_adj(pid: i32) -> i32 {
    fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether this process has CAP_SYS_RESOURCE (needed to lower an oom_score_adj).
fn has_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    eff & (1 << 24) != 0
}

/// The container's memory limit as the kernel holds it: `memory.max` (v2) or
/// `memory.limit_in_bytes` (v1), wherever the memory controller of its cgroup is.
fn kernel_memory_limit(d: &Daemon, team: &str, name: &str) -> Option<String> {
    cgroup_mounts().into_iter().find_map(|m| {
        let dir: PathBuf = m.join(&d.cgroup_root).join(team).join(name);
        ["memory.max", "memory.limit_in_bytes"]
            .iter()
            .find_map(|f| fs::read_to_string(dir.join(f)).ok())
            .map(|s| s.trim().to_owned())
    })
}

#[tokio::test]
async fn the_control_plane_is_the_oom_killers_last_choice_and_containers_its_first() {
    let d = Daemon::start_with(&["--default-memory", "64M"]);
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let c = d.unix_client();
    let name = tests::unique("oom");
    let ct = create(
        &c,
        serde_json::json!({"name": name, "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", "exec sleep 1000"], "start": true}),
    )
    .await;
    assert_eq!(ct.status, "running");
    let st: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(
            d.state
                .path()
                .join("state/containers")
                .join(&ct.id)
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let (shim, init) = (
        st["shim_pid"].as_i64().unwrap() as i32,
        st["init_pid"].as_i64().unwrap() as i32,
    );
    let daemon = d.pid().unwrap() as i32;
    let seen = (
        oom_score_adj(daemon),
        oom_score_adj(shim),
        oom_score_adj(init),
    );
    println!(
        "oom_score_adj: daemon {}, monitor {}, container init {}",
        seen.0, seen.1, seen.2
    );
    // Lowering needs CAP_SYS_RESOURCE, which some sandboxes take from root (the VM has it).
    let privileged = has_sys_resource();
    if privileged {
        assert_eq!(seen, (-500, -999, 500));
    } else {
        println!("no CAP_SYS_RESOURCE here: the daemon and monitor keep their inherited value");
        let inherited = oom_score_adj(std::process::id() as i32);
        assert_eq!(seen, (inherited, inherited, 500));
    }

    // What exec runs is a container process too, and none can buy itself protection.
    let r = exec(
        &c,
        &name,
        &[
            "/bin/sh",
            "-c",
            "cat /proc/self/oom_score_adj; echo -999 > /proc/self/oom_score_adj && echo lowered || echo refused; echo 0 > /proc/1/oom_score_adj && echo init-lowered || echo init-refused",
        ],
    )
    .await;
    let out = r.stdout.clone();
    println!("inside: {out:?}");
    assert!(out.starts_with("500"), "exec'd process: {out:?}");
    assert!(
        out.contains("\nrefused") && !out.contains("\nlowered"),
        "below what the daemon's side ever had: {out:?}"
    );
    if privileged {
        // Written with CAP_SYS_RESOURCE, 500 is the container's floor (oom_score_adj_min).
        assert!(out.contains("init-refused"), "{out:?}");
        assert_eq!(oom_score_adj(init), 500);
    }

    // No --memory: the --default-memory limit, in the kernel and in the record.
    assert_eq!(ct.spec.limits.memory_max, Some(64 << 20));
    let k = kernel_memory_limit(&d, &ct.team, &name).expect("memory limit file");
    assert_eq!(k, (64u64 << 20).to_string(), "kernel memory limit");
    // An explicit limit wins.
    let big = tests::unique("oom");
    let ct2 = create(
        &c,
        serde_json::json!({"name": big, "rootfs": rootfs.path(),
            "command": ["/bin/true"], "limits": {"memory_max": 96u64 << 20}}),
    )
    .await;
    assert_eq!(
        kernel_memory_limit(&d, &ct2.team, &big).unwrap(),
        (96u64 << 20).to_string()
    );
    // Shown by the host API and `corral info`.
    let host: wire::HostInfo =
        tests::containers::call(&c, hyper::Method::GET, "/api/v1/host", None)
            .await
            .unwrap();
    assert_eq!(host.default_memory, Some(64 << 20));
    let out = Command::new(tests::corral_bin())
        .arg("--host")
        .arg(format!("unix://{}", d.socket.display()))
        .arg("info")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Default mem:  64 MiB"), "{text}");
    remove(&c, &big).await;
    remove(&c, &name).await;
}
