//! `testload syscalls`: run inside a container, tries every syscall the default seccomp profile
//! blocks — plain, and again with high bits set in the arguments the kernel reads as 32-bit
//! `int`s — plus a few allowed calls, and prints one `NAME=RESULT` line per attempt: `ok`, an
//! errno name (`EPERM`, `ENOSYS`, `EINVAL`, …) or `killed:SIGNAL`.
//!
//! Arguments are chosen so that a call the filter lets through answers something other than
//! EPERM where the kernel allows it (a bad pointer → EFAULT, fd -1 → EBADF, unknown flags →
//! EINVAL, a pid that cannot exist → ESRCH), and so that none of them can do anything even if it
//! got through: clone's namespace probes carry CLONE_SIGHAND without CLONE_VM (EINVAL before any
//! namespace is made), unshare carries an invalid bit. A few calls check a capability before
//! their arguments (pivot_root, fsopen, move_mount, kexec, modules, reboot, swap, acct); for those
//! EPERM is all a container can see, and the backend's unit test, which runs the compiled filter,
//! is the proof that the filter itself refuses them.
//!
//! Which answer each line must have is the kernel test's business
//! (`tests/it/kernel/container_seccomp.rs`); this binary only reports.
#![allow(unsafe_code)] // raw syscalls with deliberately odd arguments; each block says why it is sound

use std::io::Write;

/// High bits OR-ed into `int` arguments: the kernel ignores them, the filter must too.
const HI: u64 = 0x0000_0001_0000_0000;
const HI_ALL: u64 = 0xffff_ffff_0000_0000;

/// A pid above any pid_max (at most 2^22), so a call that looks it up answers ESRCH.
const NO_PID: u64 = 999_999_999;
/// A pointer no process can map (the kernel answers EFAULT).
const BAD_PTR: u64 = 8;
/// `-1` as a 32-bit int argument (high bits clear, as a C caller passes it).
const FD_NONE32: u64 = 0xffff_ffff;

/// One blocked call: its name, number, arguments, and which of them are `int`s (those get a
/// second attempt with high bits set).
struct Probe {
    name: &'static str,
    nr: i64,
    args: [u64; 6],
    ints: &'static [usize],
}

const fn p(name: &'static str, nr: i64, args: [u64; 6], ints: &'static [usize]) -> Probe {
    Probe {
        name,
        nr,
        args,
        ints,
    }
}

const CLONE_NS: &[(&str, u64)] = &[
    ("newns", libc::CLONE_NEWNS as u64),
    ("newuts", libc::CLONE_NEWUTS as u64),
    ("newipc", libc::CLONE_NEWIPC as u64),
    ("newuser", libc::CLONE_NEWUSER as u64),
    ("newpid", libc::CLONE_NEWPID as u64),
    ("newnet", libc::CLONE_NEWNET as u64),
    ("newcgroup", libc::CLONE_NEWCGROUP as u64),
];

const SIGHAND: u64 = libc::CLONE_SIGHAND as u64;

/// Every call the profile refuses with EPERM, as (name, nr, args, int args). What each would
/// answer past the filter is in the trailing comment ("cap" = the container's missing
/// capability, EPERM either way).
#[cfg(target_arch = "x86_64")]
fn blocked() -> Vec<Probe> {
    use libc::*;
    let z = [0u64; 6];
    vec![
        // Namespaces.
        p(
            "unshare",
            SYS_unshare,
            [CLONE_NEWUSER as u64 | 1, 0, 0, 0, 0, 0],
            &[],
        ), // EINVAL
        p(
            "setns",
            SYS_setns,
            [FD_NONE32, CLONE_NEWNET as u64, 0, 0, 0, 0],
            &[0, 1],
        ), // EBADF
        // Keys.
        p("keyctl", SYS_keyctl, [9999, 0, 0, 0, 0, 0], &[0]), // EOPNOTSUPP
        p("add_key", SYS_add_key, [0, 0, 0, 0, FD_NONE32, 0], &[4]), // EFAULT
        p("request_key", SYS_request_key, z, &[3]),           // EFAULT
        // bpf, io_uring, userfaultfd, perf.
        p("bpf", SYS_bpf, [9999, 0, 0, 0, 0, 0], &[0, 2]), // EINVAL (6.1: EPERM, sysctl)
        p(
            "io_uring_setup",
            SYS_io_uring_setup,
            [0, BAD_PTR, 0, 0, 0, 0],
            &[0],
        ), // EFAULT
        p(
            "io_uring_enter",
            SYS_io_uring_enter,
            [FD_NONE32, 0, 0, 0, 0, 0],
            &[0, 1, 2, 3],
        ), // EBADF
        p(
            "io_uring_register",
            SYS_io_uring_register,
            [FD_NONE32, 0, 0, 0, 0, 0],
            &[0, 1, 3],
        ), // EBADF
        p("userfaultfd", SYS_userfaultfd, [1 | 2, 0, 0, 0, 0, 0], &[0]), // EINVAL
        p(
            "perf_event_open",
            SYS_perf_event_open,
            [0, 0, FD_NONE32, FD_NONE32, !0, 0],
            &[1, 2, 3],
        ), // EINVAL
        // Other processes' memory.
        p(
            "ptrace",
            SYS_ptrace,
            [PTRACE_PEEKUSER as u64, NO_PID, 0, 0, 0, 0],
            &[],
        ), // ESRCH
        p(
            "process_vm_readv",
            SYS_process_vm_readv,
            [0, 0, 0, 0, 0, 1],
            &[0],
        ), // EINVAL
        p(
            "process_vm_writev",
            SYS_process_vm_writev,
            [0, 0, 0, 0, 0, 1],
            &[0],
        ), // EINVAL
        p("kcmp", SYS_kcmp, [NO_PID, NO_PID, 0, 0, 0, 0], &[0, 1, 2]), // ESRCH
        // The mount family.
        p("mount", SYS_mount, z, &[]), // EFAULT
        p("umount2", SYS_umount2, [0, 0xffff_ffff, 0, 0, 0, 0], &[1]), // EINVAL
        p("pivot_root", SYS_pivot_root, z, &[]), // cap
        p("fsopen", SYS_fsopen, z, &[1]), // cap
        p(
            "fsconfig",
            SYS_fsconfig,
            [FD_NONE32, 9999, 0, 0, 0, 0],
            &[0, 1, 4],
        ), // EINVAL
        p(
            "fsmount",
            SYS_fsmount,
            [FD_NONE32, 0xffff_ffff, 0, 0, 0, 0],
            &[0, 1, 2],
        ), // cap
        p(
            "fspick",
            SYS_fspick,
            [FD_NONE32, 0, 0xffff_ffff, 0, 0, 0],
            &[0, 2],
        ), // cap
        p(
            "open_tree",
            SYS_open_tree,
            [FD_NONE32, 0, 0xffff_ffff, 0, 0, 0],
            &[0, 2],
        ), // EINVAL
        p(
            "move_mount",
            SYS_move_mount,
            [FD_NONE32, 0, FD_NONE32, 0, 0xffff_ffff, 0],
            &[0, 2, 4],
        ), // cap
        p(
            "mount_setattr",
            SYS_mount_setattr,
            [FD_NONE32, 0, 0xffff_ffff, 0, 0, 0],
            &[0, 2],
        ), // EINVAL
        // The machine.
        p("kexec_load", SYS_kexec_load, [0, 0, 0, !0, 0, 0], &[]), // cap
        p(
            "kexec_file_load",
            SYS_kexec_file_load,
            [FD_NONE32, FD_NONE32, 0, 0, !0, 0],
            &[0, 1],
        ), // cap
        p("init_module", SYS_init_module, z, &[]),                 // cap
        p(
            "finit_module",
            SYS_finit_module,
            [FD_NONE32, 0, 0xffff_ffff, 0, 0, 0],
            &[0, 2],
        ), // cap
        p("delete_module", SYS_delete_module, z, &[1]),            // cap
        p("reboot", SYS_reboot, z, &[0, 1, 2]),                    // cap
        p(
            "open_by_handle_at",
            SYS_open_by_handle_at,
            [FD_NONE32, 0, 0, 0, 0, 0],
            &[0, 2],
        ), // cap/EBADF
        p("swapon", SYS_swapon, z, &[1]),                          // cap
        p("swapoff", SYS_swapoff, z, &[]),                         // cap
        p("syslog", SYS_syslog, [9999, 0, 0, 0, 0, 0], &[0, 2]),   // cap/EINVAL
        p("iopl", SYS_iopl, [4, 0, 0, 0, 0, 0], &[0]),             // EINVAL
        p("ioperm", SYS_ioperm, [0, 0, 1, 0, 0, 0], &[2]),         // EINVAL
        // Time.
        p(
            "settimeofday",
            SYS_settimeofday,
            [BAD_PTR, 0, 0, 0, 0, 0],
            &[],
        ), // EFAULT
        p(
            "clock_settime",
            SYS_clock_settime,
            [CLOCK_REALTIME as u64, 0, 0, 0, 0, 0],
            &[0],
        ), // EFAULT
        p(
            "clock_adjtime",
            SYS_clock_adjtime,
            [CLOCK_REALTIME as u64, 0, 0, 0, 0, 0],
            &[0],
        ), // EFAULT
        // Accounting and quotas.
        p("acct", SYS_acct, z, &[]), // cap
        p("quotactl", SYS_quotactl, [0xff, 0, 0, 0, 0, 0], &[0, 2]), // EINVAL
        p(
            "quotactl_fd",
            SYS_quotactl_fd,
            [FD_NONE32, 0xff, 0, 0, 0, 0],
            &[0, 1, 2],
        ), // EBADF
    ]
}

/// The probes whose answer depends on an argument: clone with each namespace flag, socket with
/// the refused families, personality with unsafe values. Each plain, with bit 32 set, and with
/// all high bits set.
#[cfg(target_arch = "x86_64")]
fn argument_checked() -> Vec<(String, i64, [u64; 6])> {
    use libc::*;
    let mut v = Vec::new();
    let mut three = |name: &str, nr: i64, a0: u64, rest: [u64; 5]| {
        for (suffix, hi) in [("", 0), ("+hi", HI), ("+hiall", HI_ALL)] {
            let mut args = [a0 | hi, 0, 0, 0, 0, 0];
            args[1..].copy_from_slice(&rest);
            v.push((format!("{name}{suffix}"), nr, args));
        }
    };
    for (flag_name, flag) in CLONE_NS {
        // CLONE_SIGHAND without CLONE_VM: EINVAL in copy_process before any namespace exists.
        three(
            &format!("clone_{flag_name}"),
            SYS_clone,
            flag | SIGHAND,
            [0; 5],
        );
    }
    for (fam_name, fam) in [("vsock", AF_VSOCK as u64), ("alg", AF_ALG as u64)] {
        // Past the filter: a socket (closed again) or EAFNOSUPPORT where the family is absent.
        three(
            &format!("socket_{fam_name}"),
            SYS_socket,
            fam,
            [SOCK_SEQPACKET as u64, 0, 0, 0, 0],
        );
    }
    for (pers_name, pers) in [
        ("addr_no_randomize", ADDR_NO_RANDOMIZE as u64),
        ("read_implies_exec", READ_IMPLIES_EXEC as u64),
        ("addr_compat_layout", ADDR_COMPAT_LAYOUT as u64),
        ("mmap_page_zero", MMAP_PAGE_ZERO as u64),
    ] {
        // Past the filter: ok (the persona is put back at once).
        three(
            &format!("personality_{pers_name}"),
            SYS_personality,
            pers,
            [0; 5],
        );
    }
    v
}

fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EBADF => "EBADF",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::ENOSYS => "ENOSYS",
        libc::E2BIG => "E2BIG",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        _ => return format!("errno{e}"),
    };
    name.to_owned()
}

fn report(name: &str, result: &str) {
    println!("{name}={result}");
}

/// `syscall(nr, args...)`: Ok(return value) or Err(errno).
fn raw(nr: i64, a: [u64; 6]) -> Result<i64, i32> {
    // SAFETY: every probe passes null, small or non-canonical pointers the kernel checks (EFAULT)
    // or fds that are not open; the ones that could create something (clone, socket,
    // personality) are handled by their callers, which undo or reap what was made.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r == -1 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

/// Runs one attempt and prints its line; undoes what a successful call made.
fn attempt(name: &str, nr: i64, args: [u64; 6]) {
    let result = match raw(nr, args) {
        Ok(r) => {
            undo(nr, r);
            "ok".to_owned()
        }
        Err(e) => errno_name(e),
    };
    report(name, &result);
}

/// Cleans up after a call that should have been refused but got through.
fn undo(nr: i64, r: i64) {
    if nr == libc::SYS_socket || nr == libc::SYS_userfaultfd || nr == libc::SYS_io_uring_setup {
        // SAFETY: r is an fd this call just returned to us.
        unsafe { libc::close(r as i32) };
    } else if nr == libc::SYS_personality {
        let _ = raw(libc::SYS_personality, [0, 0, 0, 0, 0, 0]);
    } else if (nr == libc::SYS_clone || nr == libc::SYS_clone3) && r == 0 {
        // The child of a clone that should never have worked.
        let _ = raw(libc::SYS_exit_group, [0; 6]);
    } else if nr == libc::SYS_clone {
        reap(r as i32);
    }
}

/// Waits for `pid`; "ok" if it exited 0, else how it ended.
fn reap(pid: i32) -> String {
    let mut status = 0;
    // SAFETY: waitpid writes the status into our local.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r != pid {
        return format!("wait:{}", errno_name(errno()));
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let name = match sig {
            libc::SIGSYS => "SIGSYS".to_owned(),
            libc::SIGSEGV => "SIGSEGV".to_owned(),
            libc::SIGKILL => "SIGKILL".to_owned(),
            other => format!("{other}"),
        };
        return format!("killed:{name}");
    }
    match libc::WEXITSTATUS(status) {
        0 => "ok".to_owned(),
        c => format!("exit{c}"),
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `clone(flags)` without CLONE_VM, i.e. a fork: the child exits 0 at once.
fn fork_with(flags: u64) -> String {
    match raw(libc::SYS_clone, [flags, 0, 0, 0, 0, 0]) {
        Ok(0) => {
            let _ = raw(libc::SYS_exit_group, [0; 6]);
            unreachable!("exit_group returned")
        }
        Ok(pid) => reap(pid as i32),
        Err(e) => errno_name(e),
    }
}

/// A child that makes an i386 `int 0x80` getpid: the profile's architecture check must kill it
/// (SIGSYS; SIGSEGV where the kernel has no 32-bit emulation). Past the filter it would exit 0.
#[cfg(target_arch = "x86_64")]
fn i386_syscall() -> String {
    match raw(libc::SYS_clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]) {
        Ok(0) => {
            // SAFETY: i386 getpid (20) takes no arguments and touches no memory; int 0x80
            // clobbers r8-r11 in a 64-bit process, declared below. The child exits right after.
            unsafe {
                std::arch::asm!(
                    "int 0x80",
                    inout("eax") 20u32 => _,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                );
            }
            let _ = raw(libc::SYS_exit_group, [0; 6]);
            unreachable!("exit_group returned")
        }
        Ok(pid) => reap(pid as i32),
        Err(e) => errno_name(e),
    }
}

#[cfg(target_arch = "x86_64")]
pub fn run() {
    use libc::*;
    // Allowed calls first (the blocked personality probes could change what spawn inherits, were
    // they to get through).
    report(
        "getpid",
        &raw(SYS_getpid, [0; 6]).map_or_else(errno_name, |_| "ok".into()),
    );
    for (name, fam, ty) in [
        ("socket_inet", AF_INET as u64, SOCK_STREAM as u64),
        ("socket_unix", AF_UNIX as u64, SOCK_STREAM as u64),
        ("socket_inet+hi", AF_INET as u64 | HI, SOCK_STREAM as u64),
    ] {
        attempt(name, SYS_socket, [fam, ty, 0, 0, 0, 0]);
    }
    // CLONE_SIGHAND without CLONE_VM and no namespace flag: the filter lets it through, the
    // kernel says EINVAL (the namespace probes below would say the same past the filter).
    attempt("clone_sighand", SYS_clone, [SIGHAND, 0, 0, 0, 0, 0]);
    attempt(
        "clone_sighand+hiall",
        SYS_clone,
        [SIGHAND | HI_ALL, 0, 0, 0, 0, 0],
    );
    report("fork", &fork_with(SIGCHLD as u64));
    // The kernel reads clone's flags as 32 bits: high bits do not stop a plain fork.
    report("fork+hiall", &fork_with(SIGCHLD as u64 | HI_ALL));
    // posix_spawn tries clone3 first and falls back to clone on ENOSYS.
    report(
        "spawn",
        &match std::process::Command::new("/bin/true").status() {
            Ok(s) if s.success() => "ok".to_owned(),
            Ok(s) => format!("exit:{s}"),
            Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
        },
    );
    // A thread: clone(CLONE_VM|CLONE_THREAD|...) through clone3's ENOSYS fallback.
    report(
        "thread",
        &match std::thread::Builder::new().spawn(|| 7).map(|h| h.join()) {
            Ok(Ok(7)) => "ok".to_owned(),
            Ok(_) => "join-failed".to_owned(),
            Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
        },
    );
    // Whether this process is in the time namespace its children get (a process that unshared
    // one and exec'd without forking is not, before Linux 6.x: then CLONE_VM clones get EINVAL).
    let ns = |f: &str| std::fs::read_link(format!("/proc/self/ns/{f}")).ok();
    report(
        "info_timens",
        if ns("time") == ns("time_for_children") {
            "same"
        } else {
            "differs"
        },
    );
    attempt(
        "personality_query",
        SYS_personality,
        [0xffff_ffff, 0, 0, 0, 0, 0],
    );
    attempt(
        "personality_query+hi",
        SYS_personality,
        [0xffff_ffff | HI, 0, 0, 0, 0, 0],
    );
    // PER_LINUX (0).
    attempt("personality_linux", SYS_personality, [0, 0, 0, 0, 0, 0]);
    // adjtimex is allowed (as in Docker): reading works, setting needs CAP_SYS_TIME.
    let mut tx: timex = unsafe_zeroed_timex();
    attempt(
        "adjtimex_read",
        SYS_adjtimex,
        [&raw mut tx as u64, 0, 0, 0, 0, 0],
    );
    tx.modes = ADJ_OFFSET;
    attempt(
        "adjtimex_set",
        SYS_adjtimex,
        [&raw mut tx as u64, 0, 0, 0, 0, 0],
    );

    // clone3: ENOSYS, so libc falls back to clone (past the filter: EINVAL for size 0).
    attempt("clone3", SYS_clone3, [0; 6]);
    attempt("clone3+hi", SYS_clone3, [0, HI, 0, 0, 0, 0]);

    for probe in blocked() {
        attempt(probe.name, probe.nr, probe.args);
        let mut hi = probe.args;
        for &i in probe.ints {
            hi[i] |= HI;
        }
        attempt(&format!("{}+hi", probe.name), probe.nr, hi);
    }
    for (name, nr, args) in argument_checked() {
        attempt(&name, nr, args);
    }
    // The x32 ABI (syscall numbers with bit 30 set) has its own numbers: none is allowed.
    attempt("x32_getpid", SYS_getpid | 0x4000_0000, [0; 6]);
    report("i386_getpid", &i386_syscall());
    let _ = std::io::stdout().flush();
}

#[cfg(target_arch = "x86_64")]
fn unsafe_zeroed_timex() -> libc::timex {
    // SAFETY: timex is plain old data; all-zero is a valid value (modes 0 = read only).
    unsafe { std::mem::zeroed() }
}

#[cfg(not(target_arch = "x86_64"))]
pub fn run() {
    eprintln!("testload syscalls: x86_64 only");
    std::process::exit(2)
}
