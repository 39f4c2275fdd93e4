//! The container side: what the cloned init does in its new namespaces before it becomes the
//! user's command, and the hardening shared with `exec` ([`harden_and_exec`]).
//!
//! Runs only in a single-threaded child of the monitor (a fresh exec of the corral binary), never
//! in the daemon. Paths inside the rootfs are resolved with `openat2(RESOLVE_IN_ROOT)` and
//! mounts go onto `/proc/self/fd/N` of the opened target (CVE-2021-30465 class).
#![allow(unsafe_code)]

use std::{
    convert::Infallible,
    ffi::CString,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    str::FromStr,
};

use nix::{
    errno::Errno,
    fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2},
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, unshare},
    sys::stat::{Mode, SFlag, fstat, makedev, mkdirat, umask},
    unistd::{Gid, Uid, chdir, fchdir, pivot_root, setgroups, setresgid, setresuid, symlinkat},
};
use seccompiler::BpfProgram;

use super::config::{ContainerDir, DEFAULT_PATH, MountConfig, ShimConfig};

/// Docker's masked paths: files get /dev/null bound over them, directories a read-only tmpfs.
pub const MASKED_PATHS: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/sched_debug",
    "proc/scsi",
    "proc/timer_list",
    "proc/timer_stats",
    "sys/devices/virtual/powercap",
    "sys/firmware",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// Device nodes of the container's /dev: (name, major, minor). The /dev tmpfs is `nodev`, so
/// each is the host's node bind-mounted onto an empty file (as runc does in user namespaces);
/// the cgroup device allowlist (`cgroup::devices::ALLOWED`) covers exactly these plus pts.
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

type SetupResult<T> = Result<T, String>;

/// `oom_score_adj` of the daemon: like dockerd's, far below any container but not immune (a
/// daemon that leaks still goes before the host dies).
pub const DAEMON_OOM_SCORE_ADJ: i32 = -500;
/// `oom_score_adj` of a container monitor (`corral __shim`): small and fixed-size, and its death
/// orphans a container's logs and exit status; like containerd's shims, next to unkillable.
pub const MONITOR_OOM_SCORE_ADJ: i32 = -999;
/// `oom_score_adj` of a container's init and of `corral exec` in it: when the host runs out of
/// memory, containers go first. Written as real root (CAP_SYS_RESOURCE) before anything is
/// dropped, so it also becomes the floor the container's processes cannot go below
/// (`oom_score_adj_min`): nothing in a container inherits the monitor's or the daemon's value.
pub const CONTAINER_OOM_SCORE_ADJ: i32 = 500;

/// Writes this process's `oom_score_adj` (inherited by its children).
pub fn set_oom_score_adj(value: i32) -> SetupResult<()> {
    std::fs::write("/proc/self/oom_score_adj", value.to_string())
        .map_err(|e| format!("write /proc/self/oom_score_adj {value}: {e}"))
}

fn ctx(what: impl FnOnce() -> String) -> impl FnOnce(Errno) -> String {
    move |e| format!("{}: {e}", what())
}

/// What `harden_and_exec` applies, in its order.
pub struct Hardening<'a> {
    pub caps: &'a [String],
    pub uid: u32,
    pub gid: u32,
    pub cwd: &'a str,
    pub args: &'a [String],
    pub env: &'a [String],
    pub seccomp: &'a [BpfProgram],
}

/// The init child's whole life: never returns. On any failure the message goes to `err` (the
/// monitor reads it) and the child exits 127. A successful exec closes `err` (CLOEXEC).
pub fn child_main(
    cfg: &ShimConfig,
    dir: &ContainerDir,
    go: OwnedFd,
    err: OwnedFd,
    io: Stdio,
    userns: Option<OwnedFd>,
) -> ! {
    // First, as real root: never leave a container with the monitor's -999.
    let r = set_oom_score_adj(CONTAINER_OOM_SCORE_ADJ)
        .and_then(|()| child_setup(cfg, dir, go, io, userns));
    let msg = match r {
        Err(m) => m,
        Ok(never) => match never {},
    };
    let _ = nix::unistd::write(&err, msg.as_bytes());
    // SAFETY: _exit ends this forked child without running the parent's atexit handlers.
    unsafe { libc::_exit(127) }
}

/// The init's stdio ends.
pub struct Stdio {
    /// Write ends of the pipes the monitor reads into the log.
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The read end of the stdin pipe the monitor writes (`run -i`).
    pub stdin: Option<OwnedFd>,
    /// A socket to hand the monitor the master of the terminal the init opens in its devpts
    /// (`run -t`).
    pub console: Option<OwnedFd>,
}

fn child_setup(
    cfg: &ShimConfig,
    dir: &ContainerDir,
    go: OwnedFd,
    term: Stdio,
    userns: Option<OwnedFd>,
) -> SetupResult<Infallible> {
    let (stdout, stderr) = (term.stdout, term.stderr);
    let stdin_null = term.stdin.is_none() && term.console.is_none();
    let devnull = nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(ctx(|| "open /dev/null".into()))?;
    match &term.stdin {
        Some(p) => nix::unistd::dup2_stdin(p).map_err(ctx(|| "dup2 stdin".into()))?,
        None => nix::unistd::dup2_stdin(&devnull).map_err(ctx(|| "dup2 stdin".into()))?,
    }
    drop(term.stdin);
    nix::unistd::dup2_stdout(&stdout).map_err(ctx(|| "dup2 stdout".into()))?;
    nix::unistd::dup2_stderr(&stderr).map_err(ctx(|| "dup2 stderr".into()))?;
    drop((devnull, stdout, stderr));

    // Wait until the monitor has put us into the container's cgroup.
    let mut b = [0u8; 1];
    match nix::unistd::read(&go, &mut b) {
        Ok(1) => {}
        _ => return Err("monitor went away before the start signal".into()),
    }
    drop(go);
    // The cgroup namespace is rooted at the container's cgroup, so unshare after the attach.
    unshare(CloneFlags::CLONE_NEWCGROUP).map_err(ctx(|| "unshare cgroup namespace".into()))?;
    // (The time namespace: the monitor unshared it before cloning us, so we were born in it.)
    umask(Mode::empty());
    setup_rootfs(cfg, dir, userns.as_ref())?;
    if stdin_null {
        // The container's own /dev/null, not the host's: every descriptor of the process then
        // names a file of its own mount namespace, which a checkpoint needs (CRIU cannot dump
        // a file of a mount it does not see).
        let null = nix::fcntl::open(
            "/dev/null",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(ctx(|| "open the container's /dev/null".into()))?;
        nix::unistd::dup2_stdin(&null).map_err(ctx(|| "dup2 stdin".into()))?;
    }
    if term.console.is_none() {
        // A session of its own, as a terminal's process gets from `become_terminal_child`: the
        // process tree is then closed under sessions, as a checkpoint needs.
        nix::unistd::setsid().map_err(ctx(|| "setsid".into()))?;
    }
    nix::unistd::sethostname(&cfg.hostname)
        .map_err(ctx(|| format!("sethostname {}", cfg.hostname)))?;
    if cfg.net_ns {
        loopback_up()?;
    }
    if let Some(ns) = userns {
        // Everything that needs real root is done: enter the user namespace. The other
        // namespaces stay owned by the initial one (so its root cannot reconfigure them).
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWUSER)
            .map_err(ctx(|| "enter the user namespace".into()))?;
    }
    if let Some(console) = term.console {
        // The terminal comes from the container's own devpts (mounted by setup_rootfs), owned
        // by the user the process runs as; the monitor gets the master, we keep the peer as
        // our controlling terminal and stdio.
        let pty = super::relay::Pty::open()?;
        let _ = nix::unistd::fchown(
            &pty.slave,
            Some(Uid::from_raw(cfg.uid)),
            Some(Gid::from_raw(cfg.gid)),
        );
        super::relay::become_terminal_child(&pty.slave)?;
        let fds = [pty.master.as_raw_fd()];
        nix::sys::socket::sendmsg::<()>(
            console.as_raw_fd(),
            &[std::io::IoSlice::new(b"t")],
            &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .map_err(ctx(|| "hand the terminal to the monitor".into()))?;
        drop((pty, console));
    }
    umask(Mode::from_bits_truncate(0o022));
    let seccomp = super::seccomp::default_programs().map_err(|e| e.to_string())?;
    harden_and_exec(&Hardening {
        caps: &cfg.caps,
        uid: cfg.uid,
        gid: cfg.gid,
        cwd: &cfg.cwd,
        args: &cfg.args,
        env: &cfg.env,
        seccomp: &seccomp,
    })
}

/// Opens `rel` inside `root` as if `root` were `/`: symlinks cannot leave it.
pub fn open_in_root(root: &OwnedFd, rel: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = rel.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    openat2(
        root,
        rel,
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
}

/// `mkdir -p rel` inside `root`, returning an O_PATH fd of the directory.
fn mkdir_in_root(root: &OwnedFd, rel: &str) -> SetupResult<OwnedFd> {
    let mut cur = open_in_root(root, ".", OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(ctx(|| "open rootfs".into()))?;
    let mut prefix = String::new();
    for comp in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if comp == ".." {
            return Err(format!("path {rel} must not contain .."));
        }
        prefix.push('/');
        prefix.push_str(comp);
        match open_in_root(root, &prefix, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => cur = fd,
            Err(Errno::ENOENT) => {
                match mkdirat(&cur, comp, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(format!("mkdir {prefix} in rootfs: {e}")),
                }
                cur = open_in_root(root, &prefix, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(ctx(|| format!("open {prefix} in rootfs")))?;
            }
            Err(e) => return Err(format!("open {prefix} in rootfs: {e}")),
        }
    }
    Ok(cur)
}

/// Creates (if needed) an empty file at `rel` inside `root`, returning an O_PATH fd of it.
fn touch_in_root(root: &OwnedFd, rel: &str) -> SetupResult<OwnedFd> {
    if let Ok(fd) = open_in_root(root, rel, OFlag::O_PATH) {
        return Ok(fd);
    }
    let (parent, name) = rel
        .trim_end_matches('/')
        .rsplit_once('/')
        .unwrap_or(("", rel));
    let dir = mkdir_in_root(root, parent)?;
    let dir = open_in_root(&dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(ctx(|| format!("open {parent}")))?;
    drop(
        openat(
            &dir,
            name,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(ctx(|| format!("create {rel} in rootfs")))?,
    );
    open_in_root(root, rel, OFlag::O_PATH).map_err(ctx(|| format!("open {rel} in rootfs")))
}

fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn mount_on(
    source: Option<&str>,
    target: &OwnedFd,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &str,
) -> SetupResult<()> {
    mount(source, fd_path(target).as_str(), fstype, flags, data)
        .map_err(ctx(|| format!("mount {what}")))
}

/// mount_setattr(2) of `attr` on the whole detached tree `tree` (AT_RECURSIVE).
fn setattr_tree(tree: &OwnedFd, attr: &MountAttr) -> Result<(), Errno> {
    // SAFETY: mount_setattr reads `attr` (of the size passed) and the empty path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// `mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// Mounts `source` on `target` idmapped through the user namespace `userns` (a detached
/// clone, `mount_setattr(MOUNT_ATTR_IDMAP)`, then `move_mount`): files owned by host id N
/// show as host id `range.host + N`, i.e. as N inside the container.
fn idmapped_bind(source: &Path, target: &Path, userns: &OwnedFd) -> Result<(), (Errno, String)> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| (Errno::EINVAL, format!("NUL byte in {}", p.display())))
    };
    let ctx = |what: String| move |e: Errno| (e, format!("{what}: {e}"));
    let (src, dst) = (c(source)?, c(target)?);
    // SAFETY: open_tree reads a NUL-terminated path; the result is checked before use.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        )
    };
    let fd = Errno::result(fd).map_err(ctx(format!("open_tree {}", source.display())))?;
    // SAFETY: open_tree returned a new fd that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    setattr_tree(&tree, &attr).map_err(|e| {
        (
            e,
            format!(
                "idmap {} for the user namespace: {e} (idmapped mounts need kernel 5.12+ and a \
                 filesystem that supports them; overlayfs on idmapped layers needs 5.19+)",
                source.display()
            ),
        )
    })?;
    // SAFETY: move_mount reads the two NUL-terminated paths; the fd is the detached tree.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    Errno::result(r).map_err(ctx(format!("move_mount onto {}", target.display())))?;
    Ok(())
}

/// Copies the layer `src` to `dst` with every owner shifted by `host` (id N becomes
/// `host + N`), keeping modes, symlinks, overlay whiteouts (0/0 devices) and opaque markers.
/// Hard links become separate files. Used where the layer cannot be idmapped.
fn shifted_copy(src: &Path, dst: &Path, host: u32) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let e = |what: &str, p: &Path| {
        let what = what.to_owned();
        let p = p.to_owned();
        move |err: std::io::Error| format!("{what} {}: {err}", p.display())
    };
    let shift = |id: u32| host.saturating_add(id);
    let meta = std::fs::symlink_metadata(src).map_err(e("stat", src))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        std::fs::create_dir(dst).map_err(e("mkdir", dst))?;
        for entry in std::fs::read_dir(src).map_err(e("read", src))? {
            let entry = entry.map_err(e("read", src))?;
            shifted_copy(&entry.path(), &dst.join(entry.file_name()), host)?;
        }
        copy_opaque(src, dst)?;
    } else if ft.is_symlink() {
        let t = std::fs::read_link(src).map_err(e("readlink", src))?;
        std::os::unix::fs::symlink(&t, dst).map_err(e("symlink", dst))?;
    } else if ft.is_file() {
        std::fs::copy(src, dst).map_err(e("copy", src))?;
    } else {
        // Devices (whiteouts), fifos, sockets: the same node.
        let kind = SFlag::from_bits_truncate(meta.mode()) & SFlag::S_IFMT;
        nix::sys::stat::mknod(
            dst,
            kind,
            Mode::from_bits_truncate(meta.mode()),
            meta.rdev(),
        )
        .map_err(|err| format!("mknod {}: {err}", dst.display()))?;
    }
    std::os::unix::fs::lchown(dst, Some(shift(meta.uid())), Some(shift(meta.gid())))
        .map_err(e("chown", dst))?;
    if !ft.is_symlink() {
        // After chown, which clears set-id bits.
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(e("chmod", dst))?;
    }
    Ok(())
}

/// Carries overlayfs's opaque-directory marker over to a copy.
fn copy_opaque(src: &Path, dst: &Path) -> Result<(), String> {
    let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string());
    let (s, d) = (c(src)?, c(dst)?);
    let name = c"trusted.overlay.opaque";
    let mut buf = [0u8; 8];
    // SAFETY: lgetxattr writes at most buf.len() bytes into buf; the paths are NUL-terminated.
    let n = unsafe {
        libc::lgetxattr(
            s.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n > 0 {
        // SAFETY: lsetxattr reads n bytes of buf; the paths are NUL-terminated.
        let r = unsafe {
            libc::lsetxattr(
                d.as_ptr(),
                name.as_ptr(),
                buf.as_ptr().cast(),
                n as usize,
                0,
            )
        };
        Errno::result(r).map_err(|err| format!("mark {} opaque: {err}", dst.display()))?;
    }
    Ok(())
}

/// Per-network-namespace sysctls of a container with a namespace of its own (never the host's):
/// ICMP datagram sockets for every group (`ping` without CAP_NET_RAW, which the default set
/// lacks, as Docker ≥ 20.10 sets it); with a user namespace also low ports for every user
/// (the namespace still belongs to the initial one, where container root holds no capability;
/// as rootless Podman sets them).
fn net_sysctls(userns: bool) -> SetupResult<()> {
    let mut knobs = vec![("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")];
    if userns {
        knobs.push(("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0"));
    }
    for (file, value) in knobs {
        std::fs::write(file, value).map_err(|e| format!("write {file}: {e}"))?;
    }
    Ok(())
}

/// Where a user mount's target resolved to (symlinks of the image followed inside the root):
/// never the root itself nor at or under /proc, /sys or /dev, which the runtime mounts. The
/// daemon checks the destination as written; this catches a rootfs symlink pointing there.
fn check_mount_target(root: &OwnedFd, target: &OwnedFd, destination: &str) -> SetupResult<()> {
    let link = |fd: &OwnedFd| {
        std::fs::read_link(fd_path(fd)).map_err(|e| format!("resolve {destination}: {e}"))
    };
    let (root_path, at) = (link(root)?, link(target)?);
    let rel = at
        .strip_prefix(&root_path)
        .map_err(|_| format!("mount destination {destination} resolves outside the root"))?;
    let first = rel.components().next().map(|c| c.as_os_str());
    let owned = match first {
        None => true,
        Some(c) => super::config::RUNTIME_OWNED_DIRS
            .iter()
            .any(|d| c == std::ffi::OsStr::new(d)),
    };
    if owned {
        return Err(format!(
            "mount destination {destination} resolves to /{} in the container: a mount must not \
             be / nor at or under /proc, /sys or /dev",
            rel.display()
        ));
    }
    Ok(())
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
/// `MS_PRIVATE` as mount_setattr's 64-bit `propagation`.
const MS_PRIVATE: u64 = 0x4_0000;

/// Binds the tree of `src` (an O_PATH fd) on `target` with `attrs` set on every mount in it:
/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)` detaches a copy, `mount_setattr(AT_RECURSIVE)`
/// sets the attributes and private propagation on all of it before anything can see it, and
/// `move_mount` attaches it. Kernels without mount_setattr (before 5.12) get the classic
/// recursive bind with only its top mount remounted (`:ro` is then not recursive, as Docker's
/// fallback).
fn bind_tree(
    src: &OwnedFd,
    root: &OwnedFd,
    target: &OwnedFd,
    attrs: u64,
    source: &Path,
    destination: &str,
) -> SetupResult<()> {
    let what = || format!("bind {} on {destination}", source.display());
    // SAFETY: open_tree reads the empty NUL-terminated path; the result is checked before use.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            src.as_raw_fd(),
            c"".as_ptr(),
            OPEN_TREE_CLONE
                | libc::O_CLOEXEC as libc::c_uint
                | AT_RECURSIVE
                | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    };
    let fd = match Errno::result(fd) {
        Ok(fd) => fd,
        Err(Errno::ENOSYS) => return legacy_bind(src, root, target, attrs, destination),
        Err(e) => return Err(format!("{}: open_tree: {e}", what())),
    };
    // SAFETY: open_tree returned a new fd that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: MS_PRIVATE,
        userns_fd: 0,
    };
    match setattr_tree(&tree, &attr) {
        Ok(_) => {}
        Err(Errno::ENOSYS) => {
            drop(tree);
            return legacy_bind(src, root, target, attrs, destination);
        }
        Err(e) => return Err(format!("{}: mount_setattr: {e}", what())),
    }
    // SAFETY: move_mount reads the two empty NUL-terminated paths; both fds are live.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(r).map_err(|e| format!("{}: move_mount: {e}", what()))?;
    Ok(())
}

/// [`bind_tree`] for kernels without the new mount API.
fn legacy_bind(
    src: &OwnedFd,
    root: &OwnedFd,
    target: &OwnedFd,
    attrs: u64,
    destination: &str,
) -> SetupResult<()> {
    mount(
        Some(fd_path(src).as_str()),
        fd_path(target).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(ctx(|| format!("bind on {destination}")))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if attrs & MOUNT_ATTR_RDONLY != 0 {
        flags |= MsFlags::MS_RDONLY;
    }
    let top = open_in_root(root, destination, OFlag::O_PATH)
        .map_err(ctx(|| format!("open {destination}")))?;
    mount_on(
        None,
        &top,
        None,
        flags,
        None,
        &format!("remount {destination}"),
    )
}

/// The container's root: the image layers (`lowers`, topmost first) under its writable layer,
/// mounted on `dir.merged()` in the caller's mount namespace.
pub(super) fn mount_overlay(dir: &ContainerDir, lowers: &[std::path::PathBuf]) -> SetupResult<()> {
    let lower = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        dir.upper().display(),
        dir.work().display()
    );
    let merged = dir.merged();
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(ctx(|| {
        format!("mount overlay on {} ({opts})", merged.display())
    }))
}

fn setup_rootfs(cfg: &ShimConfig, dir: &ContainerDir, userns: Option<&OwnedFd>) -> SetupResult<()> {
    // Nothing we mount propagates back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(ctx(|| "make / rslave".into()))?;

    let merged = dir.merged();
    let mut lowers = cfg.lower.clone();
    if let Some(ns) = userns {
        // Each layer idmapped onto a directory of our own (in this mount namespace only).
        for (i, l) in cfg.lower.iter().enumerate() {
            let target = dir.path().join("idmap").join(i.to_string());
            std::fs::create_dir_all(&target)
                .map_err(|e| format!("mkdir {}: {e}", target.display()))?;
            match idmapped_bind(l, &target, ns) {
                Ok(()) => lowers[i] = target,
                // The layer's filesystem cannot be idmapped (tmpfs before 6.3, ...): fall back
                // to a copy owned by the range, as Docker's userns-remap keeps its layers.
                Err((Errno::EINVAL, why)) => {
                    let range = cfg.userns.ok_or("user namespace without a range")?;
                    let copy = dir.path().join("shifted").join(i.to_string());
                    let done = dir.path().join("shifted").join(format!("{i}.done"));
                    if !done.exists() {
                        let _ = std::fs::remove_dir_all(&copy);
                        let parent = dir.path().join("shifted");
                        std::fs::create_dir_all(&parent)
                            .map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
                        shifted_copy(l, &copy, range.host)
                            .map_err(|e| format!("{why}; and a shifted copy failed: {e}"))?;
                        std::fs::write(&done, b"")
                            .map_err(|e| format!("write {}: {e}", done.display()))?;
                    }
                    lowers[i] = copy;
                }
                Err((_, why)) => return Err(why),
            }
        }
    }
    // Before pivot_root: the container's /proc/sys is read-only.
    if cfg.net_ns {
        net_sysctls(userns.is_some())?;
    }
    mount_overlay(dir, &lowers)?;

    let root = nix::fcntl::open(
        &merged,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(ctx(|| format!("open {}", merged.display())))?;

    // Refuse a rootfs whose /proc, /sys or /dev are symlinks.
    for d in ["proc", "sys", "dev"] {
        match nix::sys::stat::fstatat(&root, d, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {}
            Ok(_) => return Err(format!("rootfs /{d} is not a directory")),
            Err(Errno::ENOENT) => {
                mkdirat(&root, d, Mode::from_bits_truncate(0o755))
                    .map_err(ctx(|| format!("mkdir /{d}")))?;
            }
            Err(e) => return Err(format!("stat rootfs /{d}: {e}")),
        }
    }

    let secure = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    // With a user namespace, our tmpfs mounts belong to container root (host id range.host).
    let (owner, tty_gid) = match cfg.userns {
        Some(r) => (
            format!(",uid={0},gid={0}", r.host),
            r.host.saturating_add(5),
        ),
        None => (String::new(), 5),
    };
    // /proc of the new pid namespace.
    let proc_ = mkdir_in_root(&root, "proc")?;
    mount_on(Some("proc"), &proc_, Some("proc"), secure, None, "/proc")?;

    // /dev: a nodev tmpfs holding only what a container needs. A node created in it (even an
    // allowed one) cannot be opened; the allowed ones are the host's nodes bound onto files.
    let host_nodes = host_device_nodes()?;
    let dev = mkdir_in_root(&root, "dev")?;
    mount_on(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some(format!("mode=755,size=65536k{owner}").as_str()),
        "/dev",
    )?;
    let devdir = open_in_root(&root, "dev", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(ctx(|| "open /dev".into()))?;
    for (name, node) in &host_nodes {
        let target = touch_in_root(&root, &format!("dev/{name}"))?;
        mount(
            Some(fd_path(node).as_str()),
            fd_path(&target).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(ctx(|| format!("bind /dev/{name}")))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        symlinkat(target, &devdir, link).map_err(ctx(|| format!("symlink /dev/{link}")))?;
    }
    let pts = mkdir_in_root(&root, "dev/pts")?;
    mount_on(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(format!("newinstance,ptmxmode=0666,mode=0620,gid={tty_gid}").as_str()),
        "/dev/pts",
    )?;
    let shm = mkdir_in_root(&root, "dev/shm")?;
    mount_on(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        secure,
        Some(format!("mode=1777,size=65536k{owner}").as_str()),
        "/dev/shm",
    )?;

    // /sys read-only, and the namespaced cgroup2 tree read-only on pure v2 hosts.
    let sys = mkdir_in_root(&root, "sys")?;
    mount_on(
        Some("sysfs"),
        &sys,
        Some("sysfs"),
        secure | MsFlags::MS_RDONLY,
        None,
        "/sys",
    )?;
    if cfg.cgroup2_mount
        && let Ok(cg) = open_in_root(&root, "sys/fs/cgroup", OFlag::O_PATH | OFlag::O_DIRECTORY)
    {
        mount_on(
            Some("cgroup2"),
            &cg,
            Some("cgroup2"),
            secure | MsFlags::MS_RDONLY,
            None,
            "/sys/fs/cgroup",
        )?;
    }

    for m in &cfg.mounts {
        match m {
            MountConfig::Bind {
                source,
                destination,
                readonly,
                id,
            } => {
                // The file recorded at create, reached without following any symlink.
                let src = super::config::reopen_bind_source(source, *id, destination)?;
                let is_dir = fstat(&src)
                    .map(|st| {
                        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
                    })
                    .map_err(ctx(|| format!("stat {}", source.display())))?;
                let target = if is_dir {
                    mkdir_in_root(&root, destination)?
                } else {
                    touch_in_root(&root, destination)?
                };
                check_mount_target(&root, &target, destination)?;
                // Docker >= 25 semantics: nosuid and nodev always, read-only when asked, on
                // every mount of the bound tree (nested mounts included), private.
                let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
                if *readonly {
                    attrs |= MOUNT_ATTR_RDONLY;
                }
                bind_tree(&src, &root, &target, attrs, source, destination)?;
            }
            MountConfig::Tmpfs { destination } => {
                let target = mkdir_in_root(&root, destination)?;
                check_mount_target(&root, &target, destination)?;
                mount_on(
                    Some("tmpfs"),
                    &target,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(format!("mode=1777{owner}").as_str()),
                    destination,
                )?;
            }
        }
    }

    // Masks: /dev/null (ours, checked to be 1:3) over files, a read-only tmpfs over dirs.
    let null =
        open_in_root(&root, "dev/null", OFlag::O_PATH).map_err(ctx(|| "open /dev/null".into()))?;
    let st = fstat(&null).map_err(ctx(|| "stat /dev/null".into()))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFCHR
        || st.st_rdev != makedev(1, 3)
    {
        return Err("container /dev/null is not the null device".into());
    }
    for path in MASKED_PATHS {
        let target = match open_in_root(&root, path, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(format!("open /{path}: {e}")),
        };
        let st = fstat(&target).map_err(ctx(|| format!("stat /{path}")))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            mount_on(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | secure,
                Some("size=0"),
                path,
            )?;
        } else {
            mount(
                Some(fd_path(&null).as_str()),
                fd_path(&target).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(ctx(|| format!("mask /{path}")))?;
        }
    }
    for path in READONLY_PATHS {
        let target = match open_in_root(&root, path, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(format!("open /{path}: {e}")),
        };
        mount(
            Some(fd_path(&target).as_str()),
            fd_path(&target).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(ctx(|| format!("bind /{path}")))?;
        let top = open_in_root(&root, path, OFlag::O_PATH | OFlag::O_NOFOLLOW)
            .map_err(ctx(|| format!("open /{path}")))?;
        mount_on(
            None,
            &top,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | secure,
            None,
            &format!("remount /{path} read-only"),
        )?;
    }

    // pivot_root into the rootfs and drop the old root entirely.
    fchdir(&root).map_err(ctx(|| "chdir rootfs".into()))?;
    pivot_root(".", ".").map_err(ctx(|| "pivot_root".into()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(ctx(|| "detach old root".into()))?;
    chdir("/").map_err(ctx(|| "chdir /".into()))?;
    Ok(())
}

/// Every signal at its default disposition and none blocked, as a command expects to start:
/// handlers go at exec by themselves, but an ignored signal and the mask survive it, and this
/// binary's Rust runtime ignores SIGPIPE (`yes | head` would then never end by SIGPIPE).
fn reset_signals() {
    /// The kernel's `struct sigaction` (x86_64 and aarch64 layout) for `rt_sigaction`.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // The raw call: libc's wrapper refuses its own internal real-time signals (32, 33), which
    // can be ignored here and would stay so in the container.
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `dfl` is a valid kernel sigaction for the call's duration, no old action is
        // asked for, and the size is the kernel's sigset size (8 bytes).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
}

/// The host's nodes for [`DEVICES`], opened `O_PATH` before anything of the container is
/// mounted, each checked to be the character device it should be. A node the host lacks (or
/// has as something else) is left out; `/dev/null` is required.
fn host_device_nodes() -> SetupResult<Vec<(&'static str, OwnedFd)>> {
    let mut out = Vec::new();
    for (name, major, minor) in DEVICES {
        let path = format!("/dev/{name}");
        let node = nix::fcntl::open(
            path.as_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        let ok = node.and_then(|fd| {
            let st = fstat(&fd)?;
            let is_char = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
            Ok((is_char && st.st_rdev == makedev(*major, *minor)).then_some(fd))
        });
        match ok {
            Ok(Some(fd)) => out.push((*name, fd)),
            _ if *name == "null" => return Err(format!("host {path} is not the null device")),
            _ => {}
        }
    }
    Ok(out)
}

/// Brings `lo` up in the new network namespace.
pub(super) fn loopback_up() -> SetupResult<()> {
    // SAFETY: socket(2) takes integers; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let raw = Errno::result(raw).map_err(ctx(|| "socket for loopback".into()))?;
    // SAFETY: `raw` is a new socket fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own; the fd is a live socket.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) };
    Errno::result(r).map_err(ctx(|| "get lo flags".into()))?;
    // SAFETY: after SIOCGIFFLAGS the union holds ifru_flags.
    unsafe {
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) };
    Errno::result(r).map_err(ctx(|| "set lo up".into()))?;
    Ok(())
}

/// Finds `cmd` on the container's PATH (already inside the container's root).
pub fn find_executable(cmd: &str, env: &[String]) -> SetupResult<String> {
    if cmd.contains('/') {
        return Ok(cmd.to_owned());
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{dir}/{cmd}");
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(format!("executable file not found in $PATH: {cmd}"))
}

/// The highest capability number the running kernel knows, probed with `PR_CAPBSET_READ`
/// (which fails with EINVAL past it): it reads no file, so no mount can forge it.
pub fn last_cap() -> u8 {
    let mut last = 0;
    for n in 0..64u8 {
        // SAFETY: PR_CAPBSET_READ takes a capability number and no pointers.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(n), 0, 0, 0) };
        if r < 0 {
            break;
        }
        last = n;
    }
    last
}

/// Drops to the configured user and capabilities, sets no_new_privs, closes every fd but stdio
/// on exec, installs seccomp and execs. Order as runc: bounding set, user, capabilities, cwd,
/// no_new_privs, seccomp last so the filter does not have to allow the setup.
pub fn harden_and_exec(h: &Hardening<'_>) -> SetupResult<Infallible> {
    reset_signals();
    let exe = find_executable(&h.args[0], h.env)?;
    let cstr = |s: &str| CString::new(s).map_err(|_| format!("NUL byte in {s:?}"));
    let exe_c = cstr(&exe)?;
    let args = h
        .args
        .iter()
        .map(|a| cstr(a))
        .collect::<SetupResult<Vec<_>>>()?;
    let env = h
        .env
        .iter()
        .map(|a| cstr(a))
        .collect::<SetupResult<Vec<_>>>()?;

    let mut keep = caps::CapsHashSet::new();
    for name in h.caps {
        keep.insert(
            caps::Capability::from_str(name).map_err(|e| format!("capability {name}: {e}"))?,
        );
    }
    // Bounding set: drop every capability the kernel knows that we do not keep. The kernel is
    // asked (not /proc/sys/kernel/cap_last_cap: here that is the container's /proc, which a
    // mount could have forged to keep capabilities in the bounding set).
    for n in 0..=last_cap() {
        if keep.iter().any(|c| c.index() == n) {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(n), 0, 0, 0) };
        if r != 0 && Errno::last() != Errno::EINVAL {
            return Err(format!(
                "drop capability {n} from the bounding set: {}",
                Errno::last()
            ));
        }
    }
    caps::clear(None, caps::CapSet::Ambient).map_err(|e| format!("clear ambient caps: {e}"))?;
    setgroups(&[Gid::from_raw(h.gid)]).map_err(ctx(|| "setgroups".into()))?;
    setresgid(
        Gid::from_raw(h.gid),
        Gid::from_raw(h.gid),
        Gid::from_raw(h.gid),
    )
    .map_err(ctx(|| format!("setgid {}", h.gid)))?;
    setresuid(
        Uid::from_raw(h.uid),
        Uid::from_raw(h.uid),
        Uid::from_raw(h.uid),
    )
    .map_err(ctx(|| format!("setuid {}", h.uid)))?;
    // Non-root: the kernel already cleared permitted and effective.
    let keep_now = if h.uid == 0 {
        keep
    } else {
        caps::CapsHashSet::new()
    };
    caps::set(None, caps::CapSet::Effective, &keep_now)
        .map_err(|e| format!("set effective caps: {e}"))?;
    caps::set(None, caps::CapSet::Permitted, &keep_now)
        .map_err(|e| format!("set permitted caps: {e}"))?;
    caps::clear(None, caps::CapSet::Inheritable)
        .map_err(|e| format!("clear inheritable caps: {e}"))?;

    chdir(h.cwd).map_err(ctx(|| format!("chdir {}", h.cwd)))?;
    // CVE-2024-21626: the working directory must be inside the container's root.
    let cwd = nix::unistd::getcwd().map_err(ctx(|| "getcwd".into()))?;
    if !cwd.starts_with("/") {
        return Err(format!(
            "working directory {} is outside the container",
            cwd.display()
        ));
    }

    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    Errno::result(r).map_err(ctx(|| "set no_new_privs".into()))?;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(r).map_err(ctx(|| "close_range".into()))?;
    super::seccomp::install(h.seccomp).map_err(|e| e.to_string())?;
    let e = nix::unistd::execve(&exe_c, &args, &env).unwrap_err();
    Err(format!("exec {exe}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mount over /proc/sys/kernel with a forged `cap_last_cap` (as a container mount could
    /// make it) changes nothing: the bounding-set code asks the kernel. Runs the forge in a
    /// child in its own mount namespace (needs root; skipped otherwise).
    #[test]
    fn last_cap_ignores_a_forged_cap_last_cap() {
        let host: u8 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .expect("read cap_last_cap")
            .trim()
            .parse()
            .expect("parse cap_last_cap");
        assert_eq!(last_cap(), host);
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped the forged-file half: needs root");
            return;
        }
        // SAFETY: the child only makes syscalls and leaves with _exit.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = (|| {
                    unshare(CloneFlags::CLONE_NEWNS).map_err(|_| 10)?;
                    mount(
                        None::<&str>,
                        "/",
                        None::<&str>,
                        MsFlags::MS_REC | MsFlags::MS_SLAVE,
                        None::<&str>,
                    )
                    .map_err(|_| 11)?;
                    mount(
                        Some("tmpfs"),
                        "/proc/sys/kernel",
                        Some("tmpfs"),
                        MsFlags::empty(),
                        None::<&str>,
                    )
                    .map_err(|_| 12)?;
                    std::fs::write("/proc/sys/kernel/cap_last_cap", "5\n").map_err(|_| 13)?;
                    let forged =
                        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").map_err(|_| 14)?;
                    if forged.trim() != "5" {
                        return Err(15);
                    }
                    if last_cap() != host {
                        return Err(16);
                    }
                    Ok::<(), i32>(())
                })()
                .err()
                .unwrap_or(0);
                // SAFETY: leave the forked child without running the parent's exit handlers.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(child, 0),
                    "10-14: the forge could not be set up, 15: the forged file did not read \
                     5, 16: last_cap() followed the forged file"
                );
            }
        }
    }
}
