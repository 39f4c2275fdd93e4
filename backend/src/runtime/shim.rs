//! The hidden subcommands: `corral __shim DIR` (the per-container monitor, also forked by
//! `corral __zygote`, see [`super::zygote`]) and
//! `corral __exec DIR [-e K=V]... [-i] [-t [--size ROWSxCOLS]] -- CMD...` (a command inside a
//! running container; with `-i`/`-t` its stdin is framed by the daemon, see [`super::relay`]).
//!
//! Both run in a fresh, single-threaded exec of the corral binary (from a sealed memfd, see
//! [`super::memfd`]), never under tokio, so they may fork, clone, unshare and setns.
#![allow(unsafe_code)]

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::fd::{AsFd, OwnedFd},
    path::PathBuf,
    time::Duration,
};

use nix::{
    fcntl::OFlag,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sched::{CloneFlags, setns},
    sys::{
        signal::{SigSet, Signal, kill},
        signalfd::{SfdFlags, SignalFd},
        wait::{WaitStatus, waitpid},
    },
    unistd::{ForkResult, Pid, fork, getpid, pipe2, setsid},
};

use super::{
    config::{ContainerDir, ShimConfig},
    init, relay,
    state::{ShimState, ShimStatus, alive, now, proc_start_time},
};

/// If argv names a hidden subcommand, runs it and returns its exit code. Called by `main`
/// before anything else (no tokio runtime, no threads).
pub fn dispatch() -> Option<i32> {
    let args: Vec<String> = std::env::args().collect();
    if matches!(
        args.get(1).map(String::as_str),
        Some("__shim" | "__exec" | "__zygote")
    ) {
        super::restore_open_file_limit();
    }
    match args.get(1).map(String::as_str) {
        Some("__shim") => Some(match args.get(2) {
            Some(dir) => shim_main(ContainerDir(PathBuf::from(dir))),
            None => 2,
        }),
        Some("__exec") => Some(exec_main(&args[2..])),
        Some("__zygote") => Some(super::zygote::zygote_main()),
        _ => None,
    }
}

pub(super) fn set_nondumpable() {
    // SAFETY: PR_SET_DUMPABLE takes integers only.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Closes every fd from 3 up, except `keep`.
fn close_fds_except(keep: Option<i32>) {
    let close = |lo: u32, hi: u32| {
        if lo <= hi {
            // SAFETY: close_range only closes descriptors; nothing in this single-threaded
            // process uses the ones closed (`keep` and stdio stay).
            unsafe {
                libc::syscall(libc::SYS_close_range, lo, hi, 0u32);
            }
        }
    };
    match keep {
        Some(k) if k >= 3 => {
            close(3, k as u32 - 1);
            close(k as u32 + 1, u32::MAX);
        }
        _ => close(3, u32::MAX),
    }
}

/// Exit code of a waited child, Docker style (128 + signal).
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

pub(super) fn shim_main(dir: ContainerDir) -> i32 {
    if let Err(e) = super::memfd::ensure_sealed() {
        println!("error cannot run from a sealed copy: {e}");
        return 1;
    }
    set_nondumpable();
    let cfg = match dir.read_config() {
        Ok(c) => c,
        Err(e) => {
            println!("error {e}");
            return 1;
        }
    };
    // Detach: the parent returns at once (the daemon waits for it), the child leads a new
    // session and is re-parented to init, so it outlives the daemon.
    // SAFETY: this process is single-threaded (no runtime started), so fork is sound.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            println!("error fork monitor: {e}");
            return 1;
        }
    }
    let _ = setsid();
    if let Err(e) = init::set_oom_score_adj(init::MONITOR_OOM_SCORE_ADJ) {
        eprintln!("{e}");
    }
    // stdout is the daemon's pipe: keep it (CLOEXEC) only until the first start is reported.
    let mut report: Option<File> = nix::fcntl::fcntl(
        std::io::stdout().as_fd(),
        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3),
    )
    .ok()
    .map(|fd| {
        // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
        File::from(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    });
    // Nothing the daemon (or whoever started it) left open may stay open for the container's
    // whole life: close every fd but stdio and the report pipe.
    close_fds_except(report.as_ref().map(std::os::fd::AsRawFd::as_raw_fd));
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stdin(&null);
    }
    if let Ok(log) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.shim_log())
    {
        let _ = nix::unistd::dup2_stderr(&log);
    }
    let me = getpid().as_raw();
    let mut st = ShimState {
        shim_pid: me,
        shim_start: proc_start_time(me).unwrap_or(0),
        status: ShimStatus::Starting,
        ..Default::default()
    };
    let mut backoff = Duration::from_millis(100);
    let mut console = super::console::Console::bind(&dir);
    loop {
        let child = match start_init(&cfg, &dir) {
            Ok(c) => c,
            Err(msg) => {
                eprintln!("start failed: {msg}");
                if let Some(mut r) = report.take() {
                    let _ = writeln!(r, "error {}", msg.replace('\n', " "));
                }
                st.status = ShimStatus::Exited;
                st.exit_code = Some(127);
                st.finished_at = Some(now());
                st.init_pid = 0;
                st.done = true;
                let _ = st.write(&dir.state());
                console.close();
                return 1;
            }
        };
        st.init_pid = child.pid.as_raw();
        st.init_start = proc_start_time(st.init_pid).unwrap_or(0);
        st.status = ShimStatus::Running;
        st.exit_code = None;
        st.started_at = Some(now());
        st.finished_at = None;
        // The state is durable before the daemon hears of the start.
        if let Err(e) = st.write(&dir.state()) {
            eprintln!("write state: {e}");
        }
        if let Some(mut r) = report.take() {
            let _ = writeln!(r, "ok {} {}", me, st.init_pid);
        }
        let mut log = LogFile::open(&dir, cfg.log_max);
        console.serve(
            super::console::Stdio {
                stdout: Some(child.stdout),
                stderr: Some(child.stderr),
                master: child.master,
                stdin: child.stdin,
            },
            |data| log.write(data),
        );
        let code = loop {
            match waitpid(child.pid, None) {
                Ok(s) => {
                    if let Some(c) = exit_code(s) {
                        break c;
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("waitpid: {e}");
                    break 255;
                }
            }
        };
        st.status = ShimStatus::Exited;
        st.exit_code = Some(code);
        st.finished_at = Some(now());
        let restart =
            !dir.stop_marker().exists() && cfg.restart.should_restart(code, st.restart_count);
        st.done = !restart;
        if let Err(e) = st.write(&dir.state()) {
            eprintln!("write state: {e}");
        }
        console.exit(code);
        if !restart {
            console.close();
            return 0;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
        if dir.stop_marker().exists() {
            st.done = true;
            let _ = st.write(&dir.state());
            console.close();
            return 0;
        }
        st.restart_count += 1;
    }
}

struct InitChild {
    pid: Pid,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// The terminal's master (`tty`): its output replaces stdout and stderr.
    master: Option<OwnedFd>,
    /// The write end of the process's stdin (`open_stdin` without a terminal).
    stdin: Option<OwnedFd>,
}

/// Clones the container init into new pid, mount, uts, ipc and (optionally) net namespaces,
/// puts it into the container's cgroup, lets it run, and waits until it has exec'd the command
/// (or reported why it could not).
fn start_init(cfg: &ShimConfig, dir: &ContainerDir) -> Result<InitChild, String> {
    let p = |what: &str| {
        let what = what.to_owned();
        move |e: nix::Error| format!("{what}: {e}")
    };
    // A restore (once: a later restart starts the command afresh).
    let plan_file = dir.path().join(RESTORE_PLAN);
    if plan_file.exists() {
        let plan = fs::read(&plan_file)
            .map_err(|e| e.to_string())
            .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
            .map_err(|e| format!("read {}: {e}", plan_file.display()));
        let _ = fs::remove_file(&plan_file);
        return restore_init(cfg, dir, &plan?);
    }
    let (go_rd, go_wr) = pipe2(OFlag::O_CLOEXEC).map_err(p("pipe"))?;
    let (err_rd, err_wr) = pipe2(OFlag::O_CLOEXEC).map_err(p("pipe"))?;
    let (out_rd, out_wr) = pipe2(OFlag::O_CLOEXEC).map_err(p("pipe"))?;
    let (eout_rd, eout_wr) = pipe2(OFlag::O_CLOEXEC).map_err(p("pipe"))?;
    // `run -t`: the init opens its terminal and sends us the master over this pair; `run -i`
    // without one: a pipe we write its stdin into.
    let console = if cfg.tty {
        Some(
            nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Stream,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(p("socketpair"))?,
        )
    } else {
        None
    };
    let stdin = if cfg.open_stdin && !cfg.tty {
        Some(pipe2(OFlag::O_CLOEXEC).map_err(p("pipe"))?)
    } else {
        None
    };
    let (console_ours, console_init) = match console {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let (stdin_rd, stdin_wr) = match stdin {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    // The user namespace is made (and its maps written) before the init exists: the init
    // idmaps the image layers with it while it is still real root, and enters it last.
    let userns = match cfg.userns {
        Some(r) => Some(make_userns(r)?),
        None => None,
    };
    let mut flags =
        libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if let Some(ns) = &cfg.netns {
        // The monitor itself joins the prepared namespace; the init inherits it.
        let f = File::open(ns).map_err(|e| format!("open {}: {e}", ns.display()))?;
        setns(&f, CloneFlags::CLONE_NEWNET).map_err(p("setns network namespace"))?;
    } else if cfg.net_ns {
        flags |= libc::CLONE_NEWNET;
    }
    // A time namespace where the kernel has one, and the init must be born in it: `unshare`
    // moves only the caller's future children, and before Linux 6.3 an exec does not move the
    // caller either, so an init that unshared it itself stayed outside and every CLONE_VM clone
    // (threads, posix_spawn) of PID 1 got EINVAL. `clone` cannot take CLONE_NEWTIME (its bit is
    // the exit signal's), so this process unshares it for its children first.
    if std::path::Path::new("/proc/self/ns/time").exists() {
        nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            .map_err(p("unshare time namespace"))?;
    }
    // On a pure cgroup2 host, born in its group where the kernel can (see
    // `clone_into_cgroup`); otherwise cloned here and attached below.
    let cloned = cgroup2_only(&cfg.cgroup_procs)
        .and_then(|i| clone_into_cgroup(flags, &cfg.cgroup_procs[i]).map(|pid| (pid, Some(i))));
    let (pid, born_in) = match cloned {
        Some(c) => c,
        // SAFETY: a fork-like clone (no new stack, SIGCHLD on exit) from a single-threaded
        // process; the child only runs `init::child_main`, which never returns.
        None => unsafe {
            (
                libc::syscall(
                    libc::SYS_clone,
                    (flags | libc::SIGCHLD) as libc::c_ulong,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                ),
                None,
            )
        },
    };
    if pid < 0 {
        return Err(format!(
            "clone container init: {}",
            nix::errno::Errno::last()
        ));
    }
    if pid == 0 {
        drop((go_wr, err_rd, out_rd, eout_rd, console_ours, stdin_wr));
        let io = init::Stdio {
            stdout: out_wr,
            stderr: eout_wr,
            stdin: stdin_rd,
            console: console_init,
        };
        init::child_main(cfg, dir, go_rd, err_wr, io, userns);
    }
    let pid = Pid::from_raw(pid as i32);
    drop((
        go_rd,
        err_wr,
        out_wr,
        eout_wr,
        userns,
        console_init,
        stdin_rd,
    ));
    let fail = |msg: String| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        msg
    };
    for (i, procs) in cfg.cgroup_procs.iter().enumerate() {
        if born_in == Some(i) {
            continue;
        }
        if let Err(e) = write_procs(procs, pid.as_raw()) {
            return Err(fail(format!("attach to {}: {e}", procs.display())));
        }
    }
    if let Err(e) = nix::unistd::write(&go_wr, b"g") {
        return Err(fail(format!("start signal: {e}")));
    }
    drop(go_wr);
    let mut msg = Vec::new();
    let mut f = File::from(err_rd);
    let _ = std::io::Read::read_to_end(&mut f, &mut msg);
    if !msg.is_empty() {
        let _ = waitpid(pid, None);
        return Err(String::from_utf8_lossy(&msg).into_owned());
    }
    // The init sent its terminal before it exec'd (the error pipe closed on that exec).
    let master = match console_ours {
        Some(sock) => Some(receive_fd(&sock).map_err(fail)?),
        None => None,
    };
    Ok(InitChild {
        pid,
        stdout: out_rd,
        stderr: eout_rd,
        master,
        stdin: stdin_wr,
    })
}

/// The file in a container's directory that makes its next start a restore
/// ([`super::checkpoint::RestorePlan`]).
pub const RESTORE_PLAN: &str = "restore.json";

/// The restore in place of [`start_init`]: a helper process makes the container's root (the
/// overlay, in a mount namespace of its own), joins the container's cgroup and network
/// namespace and becomes `criu restore`, which recreates the checkpointed tree as our child
/// (`--restore-sibling`) with new pipes to us in place of the old ones.
fn restore_init(
    cfg: &ShimConfig,
    dir: &ContainerDir,
    plan: &super::checkpoint::RestorePlan,
) -> Result<InitChild, String> {
    use std::os::fd::AsRawFd;
    let p = |what: &str| {
        let what = what.to_owned();
        move |e: nix::Error| format!("{what}: {e}")
    };
    if cfg.tty || cfg.userns.is_some() {
        return Err("a container with a terminal or a user namespace cannot be restored".into());
    }
    let (out_rd, out_wr) = pipe2(OFlag::O_CLOEXEC).map_err(p("pipe"))?;
    let (eout_rd, eout_wr) = pipe2(OFlag::O_CLOEXEC).map_err(p("pipe"))?;
    let (stdin_rd, stdin_wr) = match cfg.open_stdin {
        true => {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(p("pipe"))?;
            (Some(r), Some(w))
        }
        false => (None, None),
    };
    // The new pipe end for each old descriptor.
    let mut ends = Vec::new();
    for (fd, res) in &plan.pipes {
        let end = match fd {
            0 => stdin_rd.as_ref(),
            1 => Some(&out_wr),
            2 => Some(&eout_wr),
            _ => None,
        };
        ends.push(end.ok_or_else(|| format!("the checkpoint's fd {fd} ({res}) has no pipe here"))?);
    }
    let netns = match &cfg.netns {
        Some(ns) => Some(File::open(ns).map_err(|e| format!("open {}: {e}", ns.display()))?),
        None => None,
    };
    let work = dir.path().join("criu");
    fs::create_dir_all(&work).map_err(|e| format!("mkdir {}: {e}", work.display()))?;
    let pidfile = work.join("restore.pid");
    let _ = fs::remove_file(&pidfile);
    let log = work.join("restore.log");
    let _ = fs::remove_file(&log);

    // SAFETY: this process is single-threaded, so fork is sound; the child only sets itself up
    // and execs criu (or exits).
    let helper = match unsafe { fork() }.map_err(p("fork restore helper"))? {
        ForkResult::Child => {
            let why = (|| -> Result<std::convert::Infallible, String> {
                use std::os::unix::process::CommandExt;
                nix::sched::unshare(CloneFlags::CLONE_NEWNS)
                    .map_err(p("unshare mount namespace"))?;
                nix::mount::mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .map_err(p("make / rprivate"))?;
                init::mount_overlay(dir, &cfg.lower)?;
                let me = getpid().as_raw();
                for procs in &cfg.cgroup_procs {
                    write_procs(procs, me)
                        .map_err(|e| format!("attach to {}: {e}", procs.display()))?;
                }
                let netns_fd = if !plan.external_netns {
                    None
                } else if let Some(f) = &netns {
                    Some(f.as_raw_fd())
                } else {
                    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                        .map_err(p("unshare network namespace"))?;
                    init::loopback_up()?;
                    let f = File::open("/proc/self/ns/net").map_err(|e| format!("netns: {e}"))?;
                    Some(std::os::fd::IntoRawFd::into_raw_fd(f))
                };
                // The inherited descriptors at fixed numbers, open across exec.
                let mut at = Vec::new();
                for (i, end) in ends.iter().enumerate() {
                    let to = 100 + i as i32;
                    // SAFETY: dup2 onto a number this process does not otherwise use.
                    if unsafe { libc::dup2(end.as_raw_fd(), to) } < 0 {
                        return Err(format!("dup2: {}", nix::errno::Errno::last()));
                    }
                    at.push(to);
                }
                let netns_at = match netns_fd {
                    Some(fd) => {
                        // SAFETY: as above.
                        if unsafe { libc::dup2(fd, 110) } < 0 {
                            return Err(format!("dup2: {}", nix::errno::Errno::last()));
                        }
                        Some(110)
                    }
                    None => None,
                };
                let args = super::checkpoint::restore_args(
                    plan,
                    &dir.merged(),
                    &work,
                    &pidfile,
                    &at,
                    netns_at,
                );
                let e = std::process::Command::new(&plan.criu).args(&args).exec();
                Err(format!("exec {}: {e}", plan.criu.display()))
            })();
            let Err(msg) = why;
            let _ = writeln!(std::io::stderr(), "restore helper: {msg}");
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(126) }
        }
        ForkResult::Parent { child } => child,
    };
    drop((out_wr, eout_wr, stdin_rd, netns));
    let status = loop {
        match waitpid(helper, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(p("wait for criu restore"))?,
        }
    };
    if !matches!(status, WaitStatus::Exited(_, 0)) {
        return Err(format!(
            "criu restore failed ({status:?}): {}",
            super::checkpoint::log_tail(&log, "see shim.log")
        ));
    }
    let pid: i32 = fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("criu restore wrote no pid to {}", pidfile.display()))?;
    Ok(InitChild {
        pid: Pid::from_raw(pid),
        stdout: out_rd,
        stderr: eout_rd,
        master: None,
        stdin: stdin_wr,
    })
}

/// One descriptor sent over `sock` with SCM_RIGHTS.
fn receive_fd(sock: &OwnedFd) -> Result<OwnedFd, String> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut b = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut b)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receive the terminal: {e}"))?;
    for c in msg
        .cmsgs()
        .map_err(|e| format!("receive the terminal: {e}"))?
    {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err("the container's init sent no terminal".into())
}

/// A new user namespace mapping container ids `0..size` to `host..host+size`, held by an fd.
/// A forked helper unshares it and waits; this process (real root in the parent namespace)
/// writes the helper's uid_map and gid_map, opens the namespace, and lets the helper exit.
fn make_userns(r: super::config::IdRange) -> Result<OwnedFd, String> {
    let p = |what: &'static str| move |e: nix::Error| format!("{what}: {e}");
    let (ready_rd, ready_wr) = pipe2(OFlag::O_CLOEXEC).map_err(p("pipe"))?;
    let (hold_rd, hold_wr) = pipe2(OFlag::O_CLOEXEC).map_err(p("pipe"))?;
    // SAFETY: the monitor is single-threaded; the child only unshares, writes a byte, waits
    // for the parent to close the pipe and _exits.
    match unsafe { fork() }.map_err(p("fork user-namespace helper"))? {
        ForkResult::Child => {
            drop((ready_rd, hold_wr));
            let ok = nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = nix::unistd::write(&ready_wr, if ok { b"u" } else { b"e" });
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(&hold_rd, &mut b);
            // SAFETY: leave the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop((ready_wr, hold_rd));
            let done = |msg: String| {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                msg
            };
            let mut b = [0u8; 1];
            if !matches!(nix::unistd::read(&ready_rd, &mut b), Ok(1)) || b[0] != b'u' {
                return Err(done("unshare user namespace failed".into()));
            }
            for map in ["uid_map", "gid_map"] {
                let path = format!("/proc/{child}/{map}");
                if let Err(e) = fs::write(&path, r.map_line()) {
                    return Err(done(format!("write {path} ({}): {e}", r.map_line().trim())));
                }
            }
            let path = format!("/proc/{child}/ns/user");
            let ns = File::open(&path).map_err(|e| done(format!("open {path}: {e}")))?;
            drop(hold_wr);
            let _ = waitpid(child, None);
            Ok(OwnedFd::from(ns))
        }
    }
}

/// `Some(0)` when the container's only `cgroup.procs` is on a cgroup2 hierarchy (a pure v2
/// host). On a hybrid host the v1 writes would pay the migration wait instead (measured:
/// no gain), so the init is attached there as before.
fn cgroup2_only(procs: &[PathBuf]) -> Option<usize> {
    let [only] = procs else { return None };
    only.parent()
        .and_then(|dir| nix::sys::statfs::statfs(dir).ok())
        .is_some_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .then_some(0)
}

/// `CLONE_INTO_CGROUP` (Linux 5.7; not in libc as a 64-bit flag).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of `clone3(2)` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A fork-like `clone3` whose child is born in the cgroup2 group of `procs` (its directory),
/// as crun does: the child never migrates on that hierarchy, and a migration into a new group
/// waits for an RCU grace period (5–20 ms; see ARCHITECTURE.md's Performance), the init's only
/// migration on a pure v2 host. `None` where the kernel has no `clone3`/`CLONE_INTO_CGROUP` or
/// refuses the group: the caller clones and attaches as before. `Some(0)` in the child.
fn clone_into_cgroup(flags: libc::c_int, procs: &std::path::Path) -> Option<libc::c_long> {
    use std::os::fd::AsRawFd;
    let dir = File::open(procs.parent()?).ok()?;
    let args = CloneArgs {
        flags: flags as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: a fork-like clone3 (no new stack, SIGCHLD on exit) from a single-threaded
    // process; `args` lives across the call and its size is passed; the child returns 0 and,
    // as after the plain clone, only runs `init::child_main`.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    (pid >= 0).then_some(pid)
}

/// Writes a PID into a `cgroup.procs` file, retrying EINVAL briefly as runc does.
fn write_procs(path: &std::path::Path, pid: i32) -> std::io::Result<()> {
    let mut last = None;
    for _ in 0..5 {
        match fs::write(path, pid.to_string()) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("retry")))
}

/// A log file rotated to `.1` when it grows past `max` bytes.
struct LogFile {
    path: PathBuf,
    rotated: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
}

impl LogFile {
    fn open(dir: &ContainerDir, max: u64) -> Self {
        let path = dir.log();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
            .unwrap_or(0);
        Self {
            path,
            rotated: dir.log_rotated(),
            file,
            size,
            max: max.max(4096),
        }
    }

    fn write(&mut self, buf: &[u8]) {
        if self.size + buf.len() as u64 > self.max {
            let _ = fs::rename(&self.path, &self.rotated);
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
            self.size = 0;
        }
        // A full disk must never block the container: drop what cannot be written.
        if let Some(f) = self.file.as_mut()
            && f.write_all(buf).is_ok()
        {
            self.size += buf.len() as u64;
        }
    }
}

/// `corral __exec DIR [-e K=V]... -- CMD ARGS...`: runs CMD in the running container with all
/// of its restrictions; stdio is inherited; exits with CMD's code (125 for our own failures).
/// SIGTERM, SIGINT or SIGHUP, or the reader of our stdout or stderr going away, kill CMD's
/// session ([`supervise`]).
fn exec_main(args: &[String]) -> i32 {
    match exec_inner(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("corral exec: {msg}");
            125
        }
    }
}

fn exec_inner(args: &[String]) -> Result<i32, String> {
    super::memfd::ensure_sealed().map_err(|e| format!("cannot run from a sealed copy: {e}"))?;
    set_nondumpable();
    close_fds_except(None);
    let (dir, rest) = args.split_first().ok_or("missing container dir")?;
    let dir = ContainerDir(PathBuf::from(dir));
    let mut extra_env = Vec::new();
    let mut it = rest.iter();
    let mut cmd = Vec::new();
    let (mut stdin, mut tty, mut size) = (false, false, (0u16, 0u16));
    while let Some(a) = it.next() {
        match a.as_str() {
            "-e" => extra_env.push(it.next().ok_or("-e needs K=V")?.clone()),
            "-i" => stdin = true,
            "-t" => tty = true,
            "--size" => {
                let v = it.next().ok_or("--size needs ROWSxCOLS")?;
                size = v
                    .split_once('x')
                    .and_then(|(r, c)| Some((r.parse().ok()?, c.parse().ok()?)))
                    .ok_or("--size needs ROWSxCOLS")?;
            }
            "--" => {
                cmd = it.cloned().collect();
                break;
            }
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    if cmd.is_empty() {
        return Err("missing command".into());
    }
    let cfg = dir.read_config()?;
    let st = ShimState::read(&dir.state()).ok_or("container has no state")?;
    if st.status != ShimStatus::Running || !alive(st.init_pid, st.init_start) {
        return Err("container is not running".into());
    }
    let pid = st.init_pid;
    let mut kinds = vec![
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
    ];
    if cfg.net_ns {
        kinds.push(("net", CloneFlags::CLONE_NEWNET));
    }
    kinds.push(("pid", CloneFlags::CLONE_NEWPID));
    kinds.push(("cgroup", CloneFlags::CLONE_NEWCGROUP));
    if std::path::Path::new("/proc/self/ns/time").exists() {
        kinds.push(("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)));
    }
    kinds.push(("mnt", CloneFlags::CLONE_NEWNS));
    // Last: the other namespaces belong to the initial user namespace, joined as real root.
    if cfg.userns.is_some() {
        kinds.push(("user", CloneFlags::CLONE_NEWUSER));
    }
    let mut fds = Vec::new();
    for (name, flag) in &kinds {
        let path = format!("/proc/{pid}/ns/{name}");
        let f = File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
        fds.push((f, *flag, path));
    }
    // The process must not have been replaced while we opened its namespaces.
    if !alive(st.init_pid, st.init_start) {
        return Err("container exited".into());
    }
    // As real root, before entering anything: not the daemon's -500 (see init).
    init::set_oom_score_adj(init::CONTAINER_OOM_SCORE_ADJ)?;
    // The host's /proc, opened before entering the mount namespace (where /proc is the
    // container's): `supervise` finds the command's processes there by their host pids.
    let host_proc = nix::fcntl::open(
        "/proc",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open /proc: {e}"))?;
    let me = getpid().as_raw();
    for procs in &cfg.cgroup_procs {
        write_procs(procs, me).map_err(|e| format!("attach to {}: {e}", procs.display()))?;
    }
    for (f, flag, path) in &fds {
        setns(f, *flag).map_err(|e| format!("setns {path}: {e}"))?;
    }
    drop(fds);
    let mut env = cfg.env.clone();
    for kv in extra_env {
        let key = kv.split('=').next().unwrap_or("").to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    let seccomp = super::seccomp::default_programs().map_err(|e| e.to_string())?;
    // SIGTERM (the daemon ends the session), SIGINT and SIGHUP are read from a signalfd: each
    // kills the command's session, then we exit with its status.
    let mut stop_signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop_signals.add(s);
    }
    stop_signals
        .thread_block()
        .map_err(|e| format!("block signals: {e}"))?;
    let stop = SignalFd::with_flags(
        &stop_signals,
        SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
    )
    .map_err(|e| format!("signalfd: {e}"))?;
    // A terminal from the container's own devpts (we are in its mount namespace now), owned
    // by the user the command runs as; or a pipe for its stdin.
    let pty = if tty {
        let pty = relay::Pty::open()?;
        relay::set_size(pty.master.as_fd(), size.0, size.1);
        let _ = nix::unistd::fchown(
            &pty.slave,
            Some(nix::unistd::Uid::from_raw(cfg.uid)),
            Some(nix::unistd::Gid::from_raw(cfg.gid)),
        );
        Some(pty)
    } else {
        None
    };
    let stdin_pipe = if stdin && !tty {
        Some(pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?)
    } else {
        None
    };
    // SAFETY: single-threaded process; the child only hardens itself and execs.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            // The host's /proc and our signals are the helper's, never the command's.
            drop(host_proc);
            drop(stop);
            // (Every signal unblocked and at its default: `harden_and_exec` does it.)
            // Its own session and process group: the whole command can be killed at once;
            // with a terminal, that session's controlling terminal.
            if let Some(pty) = pty {
                drop(pty.master);
                if let Err(msg) = relay::become_terminal_child(&pty.slave) {
                    eprintln!("corral exec: {msg}");
                    // SAFETY: leave the forked child without running exit handlers.
                    unsafe { libc::_exit(126) }
                }
                drop(pty.slave);
            } else {
                let _ = setsid();
            }
            if let Some((rd, wr)) = stdin_pipe {
                drop(wr);
                if nix::unistd::dup2_stdin(&rd).is_err() {
                    // SAFETY: leave the forked child without running exit handlers.
                    unsafe { libc::_exit(126) }
                }
            }
            // SAFETY: PR_SET_PDEATHSIG takes integers only. A backstop for a helper that is
            // killed outright (the kernel clears it again if the command runs as another uid).
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            }
            let r = init::harden_and_exec(&init::Hardening {
                caps: &cfg.caps,
                uid: cfg.uid,
                gid: cfg.gid,
                cwd: &cfg.cwd,
                args: &cmd,
                env: &env,
                seccomp: &seccomp,
            });
            let Err(msg) = r;
            eprintln!("corral exec: {msg}");
            // SAFETY: leave the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(126) }
        }
        ForkResult::Parent { child } => {
            let io = match (pty, stdin_pipe) {
                (Some(pty), _) => relay::Io::Tty { master: pty.master },
                (None, Some((_rd, wr))) => relay::Io::Pipe { stdin: Some(wr) },
                (None, None) => return supervise(child, &host_proc, &stop),
            };
            supervise_interactive(child, &host_proc, &stop, relay::Relay::new(io))
        }
    }
}

/// [`supervise`] for a session with stdin or a terminal: moves stdin frames to the command and
/// the terminal's output to our stdout while waiting for it. Ending it early hangs the
/// terminal up first (SIGHUP to the command's process group, as a closed terminal does), then
/// kills the session.
fn supervise_interactive(
    child: Pid,
    host_proc: &OwnedFd,
    stop: &SignalFd,
    mut relay: relay::Relay,
) -> Result<i32, String> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers; the returned fd is ours.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
    if pidfd < 0 {
        return Err(format!("pidfd_open: {}", nix::errno::Errno::last()));
    }
    // SAFETY: a fresh descriptor the kernel just returned to us, owned nowhere else.
    let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd as i32) };
    loop {
        match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {}
            Ok(s) => {
                if let Some(c) = exit_code(s) {
                    relay.drain(Duration::from_millis(200));
                    return Ok(c);
                }
            }
            Err(e) => return Err(format!("waitpid: {e}")),
        }
        let (wake, ready) = relay.step(&[stop.as_fd(), pidfd.as_fd()])?;
        let told = ready.first().copied().unwrap_or(false);
        if wake == relay::Wake::ReaderGone || told {
            let _ = nix::sys::signal::killpg(child, Signal::SIGHUP);
            let mut hung_up = None;
            for _ in 0..20 {
                match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {
                        std::thread::sleep(Duration::from_millis(25));
                    }
                    Ok(s) => {
                        hung_up = exit_code(s);
                        if hung_up.is_some() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            // What it started is killed either way (its session outlives its leader).
            kill_session(child, host_proc);
            if let Some(c) = hung_up {
                return Ok(c);
            }
            return reap(child);
        }
    }
}

/// Waits for the exec'd command. When told to stop (SIGTERM from the daemon: the client went
/// away, the timeout passed, the output cap was hit) or when the daemon closes its ends of our
/// stdout and stderr (it died), kills the command's whole session inside the container, so
/// nothing it started lingers, and returns its status (137). A pipe nobody reads only blocks
/// the command's writes.
fn supervise(child: Pid, host_proc: &OwnedFd, stop: &SignalFd) -> Result<i32, String> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers; the returned fd is ours.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
    let pidfd = (pidfd >= 0).then(|| {
        use std::os::fd::FromRawFd;
        // SAFETY: a fresh descriptor the kernel just returned to us, owned nowhere else.
        unsafe { OwnedFd::from_raw_fd(pidfd as i32) }
    });
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    loop {
        match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {}
            Ok(s) => {
                if let Some(c) = exit_code(s) {
                    return Ok(c);
                }
            }
            Err(e) => return Err(format!("waitpid: {e}")),
        }
        // Events 0 on the pipes: a pipe's write end reports POLLERR once no reader is left.
        let mut fds = vec![
            PollFd::new(stdout.as_fd(), PollFlags::empty()),
            PollFd::new(stderr.as_fd(), PollFlags::empty()),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        // Without a pidfd (kernel < 5.3), look at the child every 100 ms.
        let timeout = if pidfd.is_some() {
            PollTimeout::NONE
        } else {
            PollTimeout::from(100u16)
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let gone = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
        let reader_gone = fds[..2]
            .iter()
            .any(|f| f.revents().is_some_and(|r| r.intersects(gone)));
        let told = fds[2].revents().is_some_and(|r| !r.is_empty());
        drop(fds);
        if reader_gone || told {
            kill_session(child, host_proc);
            return reap(child);
        }
    }
}

/// Waits for `child` to end; its exit code.
fn reap(child: Pid) -> Result<i32, String> {
    loop {
        match waitpid(child, None) {
            Ok(s) => {
                if let Some(c) = exit_code(s) {
                    return Ok(c);
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waitpid: {e}")),
        }
    }
}

/// SIGKILLs `leader` (the exec'd command, leader of its own session) and every process that
/// descends from it or shares its session or process group, as seen in the host's /proc. The
/// set is taken before the first kill (a killed parent's children are re-parented to the
/// container's init); later rounds catch what was forked meanwhile. A process that left the
/// session and was re-parented before the kill (a deliberate daemon) is not found, as with
/// `docker exec`.
fn kill_session(leader: Pid, host_proc: &OwnedFd) {
    for round in 0..20 {
        let victims = session_members(leader.as_raw(), host_proc);
        if victims.is_empty() {
            return;
        }
        for v in &victims {
            let _ = kill(Pid::from_raw(*v), Signal::SIGKILL);
        }
        if round == 0 {
            let _ = nix::sys::signal::killpg(leader, Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Live (not zombie) processes of `leader`'s tree, session or process group.
fn session_members(leader: i32, host_proc: &OwnedFd) -> Vec<i32> {
    // (pid, ppid, pgrp, session) of every live process.
    let mut procs = Vec::new();
    let Ok(mut dir) = nix::dir::Dir::openat(
        host_proc,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return Vec::new();
    };
    for entry in dir.iter().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .ok()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(p) = proc_relations(host_proc, pid) {
            procs.push(p);
        }
    }
    let mut set: Vec<i32> = procs
        .iter()
        .filter(|p| p.0 == leader || p.2 == leader || p.3 == leader)
        .map(|p| p.0)
        .collect();
    loop {
        let before = set.len();
        for p in &procs {
            if set.contains(&p.1) && !set.contains(&p.0) {
                set.push(p.0);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// (pid, ppid, pgrp, session) from `/proc/PID/stat`, `None` for a zombie or a vanished pid.
fn proc_relations(host_proc: &OwnedFd, pid: i32) -> Option<(i32, i32, i32, i32)> {
    let fd = nix::fcntl::openat(
        host_proc,
        format!("{pid}/stat").as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let mut stat = String::new();
    std::io::Read::read_to_string(&mut File::from(fd), &mut stat).ok()?;
    parse_relations(pid, &stat)
}

fn parse_relations(pid: i32, stat: &str) -> Option<(i32, i32, i32, i32)> {
    // comm may hold spaces and parentheses: fields resume after the last ')'.
    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let mut n = || f.next()?.parse::<i32>().ok();
    Some((pid, n()?, n()?, n()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_rotate_at_the_cap() {
        let dir = std::env::temp_dir().join(format!("corral-log-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let cd = ContainerDir(dir.clone());
        let mut log = LogFile::open(&cd, 4096);
        for _ in 0..10 {
            log.write(&[b'x'; 1000]);
        }
        let cur = fs::metadata(cd.log()).unwrap().len();
        let old = fs::metadata(cd.log_rotated()).unwrap().len();
        assert!(cur <= 4096 && old <= 4096, "{cur} {old}");
        assert_eq!((cur + old) % 1000, 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relations_read_past_a_hostile_comm() {
        let stat = "4242 (a) 1 2 3 (x) S 100 200 300 0 -1 4194560 0 0 0 0";
        assert_eq!(parse_relations(4242, stat), Some((4242, 100, 200, 300)));
        let zombie = "4243 (sh) Z 100 200 300 0 -1";
        assert_eq!(parse_relations(4243, zombie), None);
        assert_eq!(parse_relations(1, "garbage"), None);
    }

    #[test]
    fn exit_codes_follow_docker() {
        let p = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(p, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
    }
}
