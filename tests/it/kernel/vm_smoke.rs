//! Smoke test of the pure cgroup-v2 VM (`cargo xtask vm`): the kernel the suite runs on there
//! really is cgroup2-only with every controller delegated, a child group takes and reports a
//! limit, overlay and the networking modules are loaded, and the root can be pivot_root'ed away
//! from. Outside the VM (no `CORRAL_IN_VM=1`) these tests return at once.

use std::{fs, path::Path};

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn in_vm() -> bool {
    std::env::var_os("CORRAL_IN_VM").is_some_and(|v| v == "1")
}

fn words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Removes the cgroup directory even when an assertion fails.
struct CgroupDir(std::path::PathBuf);

impl Drop for CgroupDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn vm_is_pure_cgroup_v2_with_all_controllers() {
    if !in_vm() {
        return;
    }
    let root = Path::new(CGROUP_ROOT);
    let st = statfs(root).expect("statfs /sys/fs/cgroup");
    assert_eq!(
        st.filesystem_type(),
        CGROUP2_SUPER_MAGIC,
        "/sys/fs/cgroup is not cgroup2"
    );
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let v1: Vec<&str> = mountinfo
        .lines()
        .filter(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup "))
        })
        .collect();
    assert!(v1.is_empty(), "cgroup v1 hierarchies are mounted: {v1:?}");

    let controllers = words(&root.join("cgroup.controllers"));
    let subtree = words(&root.join("cgroup.subtree_control"));
    for c in ["cpu", "memory", "io", "pids", "cpuset"] {
        assert!(
            controllers.iter().any(|x| x == c),
            "{c} missing from cgroup.controllers {controllers:?}"
        );
        assert!(
            subtree.iter().any(|x| x == c),
            "{c} missing from cgroup.subtree_control {subtree:?}"
        );
    }

    let dir = CgroupDir(root.join(tests::unique("corral-vm-smoke")));
    fs::create_dir(&dir.0).expect("create child cgroup");
    let child_controllers = words(&dir.0.join("cgroup.controllers"));
    assert!(
        child_controllers.iter().any(|c| c == "memory"),
        "memory not delegated to the child: {child_controllers:?}"
    );
    fs::write(dir.0.join("memory.max"), "33554432").expect("write memory.max");
    let max = fs::read_to_string(dir.0.join("memory.max")).expect("read memory.max");
    assert_eq!(max.trim(), "33554432");
    fs::write(dir.0.join("pids.max"), "5").expect("write pids.max");
    assert_eq!(
        fs::read_to_string(dir.0.join("pids.max"))
            .expect("read pids.max")
            .trim(),
        "5"
    );
    fs::remove_dir(&dir.0).expect("remove child cgroup");
    assert!(!dir.0.exists(), "{} still exists", dir.0.display());
}

#[test]
fn vm_has_overlay_and_network_modules() {
    if !in_vm() {
        return;
    }
    let filesystems = fs::read_to_string("/proc/filesystems").expect("/proc/filesystems");
    assert!(
        filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some("overlay")),
        "overlay missing from /proc/filesystems:\n{filesystems}"
    );
    // Debian builds these as modules; the VM runner carries and loads them.
    for m in ["veth", "bridge", "nf_tables"] {
        assert!(
            Path::new("/sys/module").join(m).exists(),
            "kernel module {m} is not loaded"
        );
    }
}

#[test]
fn vm_root_is_not_rootfs() {
    if !in_vm() {
        return;
    }
    // pivot_root (containers) fails on the initramfs rootfs; the init switch_roots into a tmpfs.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let root_fs = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .and_then(|l| l.split(" - ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .expect("a mount at /");
    assert_eq!(root_fs, "tmpfs", "the VM's root is {root_fs}");
}

#[test]
fn vm_runs_the_carried_binaries() {
    if !in_vm() {
        return;
    }
    // The corral binary and its shared libraries made it into the VM.
    let out = std::process::Command::new(tests::corral_bin())
        .arg("--version")
        .output()
        .expect("run $CORRAL_BIN --version");
    assert!(out.status.success(), "corral --version: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("corral"),
        "corral --version printed {out:?}"
    );
    // Tests spawn shell commands.
    let sh = std::process::Command::new("/bin/sh")
        .args(["-c", "test -w /tmp && test -c /dev/null && echo ok"])
        .output()
        .expect("run /bin/sh");
    assert_eq!(String::from_utf8_lossy(&sh.stdout).trim(), "ok", "{sh:?}");
    if let Some(load) = std::env::var_os("CORRAL_TESTLOAD") {
        let meta = fs::metadata(&load).expect("$CORRAL_TESTLOAD exists");
        assert!(meta.is_file(), "{load:?} is not a file");
    }
}
