//! The monitor zygote (issue 17): one single-threaded process, exec'd once from the sealed
//! memfd (`corral __zygote`), that forks every container's monitor. A forked monitor shares the
//! zygote's pages copy-on-write — the relocated read-only data of the binary (~0.5 MiB, which
//! every exec'd monitor had to relocate into a private copy of its own), the loaded libraries,
//! the heap — and skips the exec, the dynamic loader and the relocation on the start path.
//!
//! The protocol is one `SOCK_SEQPACKET` socketpair: the zygote's end is its stdin. A request is
//! the container directory's path with two descriptors (`SCM_RIGHTS`): the write end of the
//! pipe the monitor reports its start on, and its log (`shim.log`). The zygote forks; the
//! child becomes exactly what `corral __shim DIR` is (stdout the report pipe, stderr the log,
//! stdin `/dev/null`); the zygote reaps it (the monitor detaches with its own fork) and answers
//! with the child's PID as 4 bytes. The zygote exits when the daemon's end closes (the daemon
//! stopped or was killed), so it never outlives its daemon. Monitors it forked are not its
//! children after their detaching fork and live on.
//!
//! The daemon falls back to exec'ing the monitor (`corral __shim DIR`) whenever the zygote
//! cannot be started or a request cannot be delivered to it (it died), and starts a new zygote
//! at the next start. A delivered request is never repeated (the zygote may have forked).
#![allow(unsafe_code)]

use std::{
    fs::File,
    io::{self, IoSlice, IoSliceMut},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
};

use nix::{
    cmsg_space,
    sys::{
        socket::{
            AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
            recvmsg, sendmsg, socketpair,
        },
        wait::waitpid,
    },
    unistd::{ForkResult, fork},
};

use super::config::{ContainerDir, DEFAULT_PATH};

/// The longest request: a container directory's path.
const MAX_REQUEST: usize = 4096;

/// Room the zygote's command line keeps after its own arguments, so a forked monitor can
/// rewrite it in place to `corral __shim DIR` ([`set_cmdline`]): what `ps` and the test
/// harness's leak check see of a monitor, as for an exec'd one.
const CMDLINE_ROOM: usize = 128;

/// The daemon's handle on its zygote.
struct Zygote {
    sock: OwnedFd,
    child: Child,
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // Closing our end ends it; reap it so no zombie stays.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static ZYGOTE: Mutex<Option<Zygote>> = Mutex::new(None);

fn start(program: &Path, containers: &Path) -> io::Result<Zygote> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut cmd = Command::new(program);
    cmd.arg0("corral")
        .arg("__zygote")
        .arg(containers)
        .arg(" ".repeat(CMDLINE_ROOM))
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .env_clear()
        .env("PATH", DEFAULT_PATH);
    super::pass_open_file_limit(|k, v| cmd.env(k, v));
    let child = cmd.spawn()?;
    Ok(Zygote { sock: ours, child })
}

/// Forks a monitor for `dir` from the zygote (started on first use): the read end of its
/// report pipe, which the caller reads to EOF as it would a spawned `corral __shim`'s stdout.
/// `Err` when the zygote could not be started or the request could not be delivered (nothing
/// was forked); the caller then exec's the monitor itself. A request delivered is never sent
/// again, so a container never gets two monitors.
pub fn spawn_monitor(program: &Path, dir: &ContainerDir, log: &File) -> io::Result<File> {
    let mut guard = ZYGOTE.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        let containers = dir.path().parent().unwrap_or(Path::new("/"));
        *guard = Some(start(program, containers)?);
    }
    let z = guard.as_ref().expect("started above");
    match request(&z.sock, dir.path(), log) {
        Ok((report, answered)) => {
            if !answered {
                // It took the request but did not answer (killed, or its fork failed): whatever
                // it forked reports on the pipe; the next start makes a new zygote.
                *guard = None;
            }
            Ok(report)
        }
        Err(e) => {
            // Not delivered (gone, or broken): nothing was forked.
            *guard = None;
            Err(e)
        }
    }
}

/// Sends one request: the report pipe's read end, and whether the zygote answered that it
/// forked. `Err` only when the request was not delivered.
fn request(sock: &OwnedFd, dir: &Path, log: &File) -> io::Result<(File, bool)> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let path = dir.as_os_str().as_encoded_bytes();
    if path.is_empty() || path.len() > MAX_REQUEST {
        return Err(io::Error::other("container directory path too long"));
    }
    let fds = [wr.as_raw_fd(), log.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(path)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(io::Error::from)?;
    // Our copy of the write end goes, so the report pipe ends when the monitor closes it (or
    // at once, when nothing was forked).
    drop(wr);
    let mut answer = [0u8; 4];
    let answered = matches!(
        nix::sys::socket::recv(sock.as_raw_fd(), &mut answer, MsgFlags::empty()),
        Ok(4) if i32::from_ne_bytes(answer) > 0
    );
    Ok((File::from(rd), answered))
}

/// `corral __zygote CONTAINERS PADDING`: serves fork requests on stdin until the daemon's end
/// closes. (`CONTAINERS`, the directory of the containers' directories, and the padding only
/// make its command line; see [`CMDLINE_ROOM`].)
pub fn zygote_main() -> i32 {
    if let Err(e) = super::memfd::ensure_sealed() {
        eprintln!("zygote: cannot run from a sealed copy: {e}");
        return 1;
    }
    super::shim::set_nondumpable();
    let sock: RawFd = 0;
    loop {
        let mut buf = vec![0u8; MAX_REQUEST];
        let mut space = cmsg_space!([RawFd; 2]);
        let (n, fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg =
                match recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
                    Ok(m) => m,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return 0,
                };
            let mut fds = Vec::new();
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmRights(r) = c {
                        // SAFETY: SCM_RIGHTS installed these descriptors in our table for us.
                        fds.extend(r.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                }
            }
            (msg.bytes, fds)
        };
        if n == 0 {
            // The daemon's end closed.
            return 0;
        }
        let pid = match <[OwnedFd; 2]>::try_from(fds) {
            Ok([report, log]) => fork_monitor(&buf[..n], report, log),
            Err(_) => -1,
        };
        if nix::sys::socket::send(sock, &pid.to_ne_bytes(), MsgFlags::MSG_NOSIGNAL).is_err() {
            return 0;
        }
    }
}

/// Forks the monitor of the directory `path`; its PID (reaped once it detached), or -1.
fn fork_monitor(path: &[u8], report: OwnedFd, log: OwnedFd) -> i32 {
    // SAFETY: the zygote is single-threaded (no runtime was started), so fork is sound.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let null = File::options().read(true).write(true).open("/dev/null");
            let ok = null
                .as_ref()
                .map_err(|_| ())
                .and_then(|n| nix::unistd::dup2_stdin(n).map_err(|_| ()))
                .and_then(|()| nix::unistd::dup2_stdout(&report).map_err(|_| ()))
                .and_then(|()| nix::unistd::dup2_stderr(&log).map_err(|_| ()));
            drop((null, report, log));
            let code = match ok {
                Ok(()) => {
                    set_cmdline(&[b"corral", b"__shim", path]);
                    let dir = PathBuf::from(std::ffi::OsStr::from_bytes(path));
                    super::shim::shim_main(ContainerDir(dir))
                }
                Err(()) => 1,
            };
            // SAFETY: _exit ends this forked child without the zygote's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop((report, log));
            // The child forks the monitor and exits at once (see `shim_main`).
            let _ = waitpid(child, None);
            child.as_raw()
        }
        Err(_) => -1,
    }
}

/// Rewrites this process's command line in place — the argument strings exec left on the
/// stack, `[arg_start, arg_end)` of `/proc/self/stat` — to `args`, NUL-separated and padded with
/// NULs; false (nothing written) when they do not fit. After it, `std::env::args` would read
/// the new text through the old pointers: only for a process that has read its arguments.
fn set_cmdline(args: &[&[u8]]) -> bool {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    // Fields after the command name's closing parenthesis start at field 3; arg_start and
    // arg_end are fields 48 and 49.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (Some(start), Some(end)) = (
        fields.get(45).and_then(|f| f.parse::<usize>().ok()),
        fields.get(46).and_then(|f| f.parse::<usize>().ok()),
    ) else {
        return false;
    };
    let mut title: Vec<u8> = Vec::new();
    for a in args {
        title.extend_from_slice(a);
        title.push(0);
    }
    if start == 0 || end <= start || title.len() > end - start {
        return false;
    }
    title.resize(end - start, 0);
    // SAFETY: `[start, end)` is this process's own argument area (exec copied the strings
    // there; it is mapped and writable), nothing else in this single-threaded process reads
    // it now, and exactly its length is written.
    unsafe { std::ptr::copy_nonoverlapping(title.as_ptr(), start as *mut u8, title.len()) };
    true
}
