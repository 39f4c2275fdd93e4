//! The default seccomp profile, tried from inside a real container: `testload syscalls` calls
//! every syscall the profile blocks — plain and with high bits set in `int` arguments, which the
//! kernel ignores and the filter must ignore too (`socket(0x1_0000_0028, …)` is AF_VSOCK) — and a
//! few allowed ones. The same prober also runs on the host as `nobody` without any filter, to show
//! that the arguments it uses reach the kernel and get a different answer there.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    collections::BTreeMap,
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tests::{
    Daemon,
    containers::{Reaper, create, facts, logs, remove, wait_exited},
    rootfs::Rootfs,
};

/// The prober: `$CORRAL_TESTLOAD` (the VM points it at its copy) or the one cargo built.
fn testload() -> PathBuf {
    std::env::var_os("CORRAL_TESTLOAD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_testload")))
}

/// Copies the dynamically linked `bin` into `root` at `dest`, with the loader and the libraries
/// it needs at the paths the host's loader reports (`LD_TRACE_LOADED_OBJECTS`, what `ldd` does;
/// the VM has no `ldd`).
fn install_with_libraries(bin: &Path, root: &Path, dest: &str) {
    let out = Command::new(bin)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let target = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy(path, &target).unwrap_or_else(|e| panic!("copy {path}: {e}"));
    }
    let target = root.join(dest.trim_start_matches('/'));
    fs::copy(bin, &target).unwrap();
}

/// Calls the allowed list must keep answering as the kernel does, with what they answer.
const ALLOWED: &[(&str, &str)] = &[
    ("getpid", "ok"),
    ("socket_inet", "ok"),
    ("socket_unix", "ok"),
    // The kernel reads socket's family as an int: this is AF_INET.
    ("socket_inet+hi", "ok"),
    // No namespace flag: past the filter, and the kernel's own EINVAL (SIGHAND without VM).
    ("clone_sighand", "EINVAL"),
    ("clone_sighand+hiall", "EINVAL"),
    ("fork", "ok"),
    ("fork+hiall", "ok"),
    // posix_spawn: clone3 answers ENOSYS, libc falls back to clone.
    ("spawn", "ok"),
    ("thread", "ok"),
    ("personality_query", "ok"),
    ("personality_query+hi", "ok"),
    ("personality_linux", "ok"),
    ("adjtimex_read", "ok"),
    // Allowed by the filter as in Docker; setting needs CAP_SYS_TIME, which a container lacks.
    ("adjtimex_set", "EPERM"),
];

/// Blocked calls that answer something other than EPERM.
const NOT_EPERM: &[(&str, &str)] = &[("clone3", "ENOSYS"), ("clone3+hi", "ENOSYS")];

/// Every blocked call the prober must have tried (each also as `NAME+hi`); the argument-checked
/// ones also as `NAME+hiall`.
const BLOCKED: &[&str] = &[
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "perf_event_open",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "open_by_handle_at",
    "swapon",
    "swapoff",
    "syslog",
    "iopl",
    "ioperm",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "acct",
    "quotactl",
    "quotactl_fd",
];
const ARG_CHECKED: &[&str] = &[
    "clone_newns",
    "clone_newuts",
    "clone_newipc",
    "clone_newuser",
    "clone_newpid",
    "clone_newnet",
    "clone_newcgroup",
    "socket_vsock",
    "socket_alg",
    "personality_addr_no_randomize",
    "personality_read_implies_exec",
    "personality_addr_compat_layout",
    "personality_mmap_page_zero",
];

/// The prober's answers, one per line: NAME=RESULT.
fn parse(out: &str) -> BTreeMap<String, String> {
    let f = facts(out);
    assert!(f.len() > 100, "the prober printed too little:\n{out}");
    f
}

#[tokio::test]
async fn seccomp_refuses_blocked_syscalls_also_with_high_bits() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    install_with_libraries(&testload(), rootfs.path(), "/bin/testload");

    // The same prober on the host, unconfined, as nobody (no capabilities): what the kernel says
    // to these arguments when no filter stands in the way.
    let host = Command::new(rootfs.path().join("bin/testload"))
        .arg("syscalls")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let host_out = String::from_utf8_lossy(&host.stdout).into_owned();
    assert!(host.status.success(), "{host:?}");
    let host = parse(&host_out);

    let name = tests::unique("seccomp");
    create(
        &c,
        serde_json::json!({
            "name": name,
            "rootfs": rootfs.path(),
            // A child of the shell (PID 1 has its own test below).
            "command": ["/bin/sh", "-c", "/bin/testload syscalls; echo prober_exit=$?"],
            "start": true,
        }),
    )
    .await;
    let ct = wait_exited(&c, &name, Duration::from_secs(60)).await;
    let out = logs(&c, &name).await;
    remove(&c, &name).await;
    assert_eq!(ct.exit_code, Some(0), "{out}");
    let inside = parse(&out);

    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for (n, v) in ALLOWED.iter().chain(NOT_EPERM) {
        expected.insert((*n).into(), (*v).into());
    }
    for n in BLOCKED {
        for suffix in ["", "+hi"] {
            expected.insert(format!("{n}{suffix}"), "EPERM".into());
        }
    }
    for n in ARG_CHECKED {
        for suffix in ["", "+hi", "+hiall"] {
            expected.insert(format!("{n}{suffix}"), "EPERM".into());
        }
    }
    // The x32 ABI's numbers are not in the allowlist; an i386 `int 0x80` fails the arch check.
    expected.insert("x32_getpid".into(), "EPERM".into());
    let i386_expected = if host.get("i386_getpid").map(String::as_str) == Some("ok") {
        "killed:SIGSYS"
    } else {
        // No 32-bit emulation in this kernel: int 0x80 faults with or without the filter.
        "killed:SIGSEGV"
    };
    expected.insert("i386_getpid".into(), i386_expected.into());

    let mut wrong = Vec::new();
    for (n, want) in &expected {
        let got = inside.get(n).map(String::as_str).unwrap_or("(not tried)");
        if got != want {
            wrong.push(format!(
                "{n}: {got} in the container, want {want} (unconfined: {})",
                host.get(n).map(String::as_str).unwrap_or("-")
            ));
        }
    }
    // Not a syscall answer: whether the prober shares its children's time namespace (it does,
    // as a forked child; a PID 1 that unshared one and exec'd does not on Linux 6.1, and there
    // its threads and posix_spawn get EINVAL).
    expected.insert("info_timens".into(), "same".into());
    expected.insert("prober_exit".into(), "0".into());
    for n in inside.keys().filter(|n| !expected.contains_key(*n)) {
        wrong.push(format!("{n}: tried but not checked by this test"));
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}\n\ncontainer:\n{out}",
        wrong.len(),
        wrong.join("\n")
    );

    // The allowed calls answer in the container as they do unconfined.
    for (n, want) in ALLOWED {
        assert_eq!(host[*n], *want, "{n} unconfined:\n{host_out}");
    }
    // Where the kernel answers the prober's arguments with something other than EPERM, the
    // container's EPERM can only have come from the filter. (The rest check a capability first;
    // `backend::runtime::seccomp`'s unit test runs the compiled filter on those.)
    let proven: Vec<&String> = expected
        .iter()
        .filter(|(n, want)| *want == "EPERM" && host.get(*n).is_some_and(|h| h != "EPERM"))
        .map(|(n, _)| n)
        .collect();
    for n in [
        "socket_vsock+hi",
        "socket_vsock+hiall",
        "clone_newuser",
        "clone_newuser+hi",
        "unshare",
        "setns",
        "keyctl",
        "mount",
        "open_tree",
        "mount_setattr",
        "ptrace",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "process_vm_readv",
        "clock_settime",
        "settimeofday",
    ] {
        assert!(
            proven.iter().any(|p| *p == n),
            "{n} answers EPERM unconfined too, so the container's answer proves nothing:\n{host_out}"
        );
    }
    eprintln!(
        "seccomp: {} attempts, {} refused by the filter where the kernel would have answered otherwise",
        inside.len(),
        proven.len()
    );
}

/// The container's PID 1 is born inside its time namespace, so it can start threads and
/// `posix_spawn`: an init that unshared the namespace itself stayed outside it on kernels before
/// 6.3 (an exec did not move it in), and every CLONE_VM clone of a multi-threaded PID 1 (a Go or
/// Java server) got EINVAL — found in the v2 VM's 6.1 kernel.
#[tokio::test]
async fn pid1_is_in_its_time_namespace_and_starts_threads() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    install_with_libraries(&testload(), rootfs.path(), "/bin/testload");
    let name = tests::unique("pid1");
    create(
        &c,
        serde_json::json!({
            "name": name,
            "rootfs": rootfs.path(),
            "command": ["/bin/testload", "syscalls"],
            "start": true,
        }),
    )
    .await;
    wait_exited(&c, &name, Duration::from_secs(60)).await;
    let out = logs(&c, &name).await;
    remove(&c, &name).await;
    let f = parse(&out);
    if Path::new("/proc/self/ns/time").exists() {
        assert_eq!(f["info_timens"], "same", "{out}");
    }
    assert_eq!(f["thread"], "ok", "{out}");
    assert_eq!(f["spawn"], "ok", "{out}");
}
