//! The monitor's side of a container's stdio: its output goes to the log and to every attached
//! client, and attached clients' input goes to its terminal or stdin pipe. Clients come
//! through the attach socket ([`super::attach`] describes the protocol), so attaching does not
//! depend on the daemon that started the container.
//!
//! Bounded: each client holds at most [`CLIENT_CAP`] bytes of output not yet sent. While one
//! is over it the container's output is not read (back-pressure, as a terminal would do); a
//! client stuck over it for [`STALL`] is dropped, so a dead client cannot stop a container.
//! The last [`RING`] bytes of output are kept for `logs=1` (what `run -it` missed while it
//! attached).
#![allow(unsafe_code)]

use std::{
    collections::VecDeque,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use nix::{
    fcntl::OFlag,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::socket::{self as sock, MsgFlags},
};

use super::{
    attach::{ERR, EXIT, OUT},
    config::ContainerDir,
    relay::{self, DATA, Decoder, EOF, RESIZE},
};

/// Output a client may have pending before the container's output waits for it.
pub const CLIENT_CAP: usize = 256 * 1024;
/// How long a client may stay over its cap before it is dropped.
const STALL: Duration = Duration::from_secs(10);
/// Output kept for `logs=1`.
const RING: usize = 64 * 1024;
/// Attached clients at most.
const MAX_CLIENTS: usize = 16;

/// The attach socket's path through an O_PATH descriptor of the container directory, so a
/// long state directory cannot pass `sun_path`'s 108 bytes.
pub fn socket_path(dir_fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/attach.sock", dir_fd.as_raw_fd()))
}

/// Opens `dir` as O_PATH for [`socket_path`].
pub fn open_dir(dir: &std::path::Path) -> std::io::Result<OwnedFd> {
    nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(std::io::Error::from)
}

struct Client {
    fd: OwnedFd,
    /// The hello line, until it is complete.
    hello: Option<Vec<u8>>,
    dec: Decoder,
    out: Vec<u8>,
    /// The client may still send input.
    reading: bool,
    over_since: Option<Instant>,
}

/// The container's process's stdio for one run.
pub struct Stdio {
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub master: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
}

pub struct Console {
    listener: Option<OwnedFd>,
    /// The socket's full path, to remove it at the end.
    path: Option<PathBuf>,
    clients: Vec<Client>,
    ring: VecDeque<(u8, Vec<u8>)>,
    ring_len: usize,
    buf: Vec<u8>,
}

impl Console {
    /// Binds the attach socket (mode 0600; a stale one is replaced). Without it the container
    /// runs unattachable, as before.
    pub fn bind(dir: &ContainerDir) -> Self {
        let mut c = Self {
            listener: None,
            path: None,
            clients: Vec::new(),
            ring: VecDeque::new(),
            ring_len: 0,
            buf: vec![0u8; relay::BUF],
        };
        match Self::listen(dir) {
            Ok(fd) => {
                c.listener = Some(fd);
                c.path = Some(dir.path().join("attach.sock"));
            }
            Err(e) => eprintln!("attach socket: {e}"),
        }
        c
    }

    /// Binds through an O_PATH descriptor of the directory, closed again after the bind.
    fn listen(dir: &ContainerDir) -> Result<OwnedFd, String> {
        let dir_fd =
            open_dir(dir.path()).map_err(|e| format!("open {}: {e}", dir.path().display()))?;
        let path = socket_path(&dir_fd);
        let _ = std::fs::remove_file(&path);
        let fd = sock::socket(
            sock::AddressFamily::Unix,
            sock::SockType::Stream,
            sock::SockFlag::SOCK_CLOEXEC | sock::SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| format!("socket: {e}"))?;
        let addr = sock::UnixAddr::new(&path).map_err(|e| format!("address: {e}"))?;
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = sock::bind(fd.as_raw_fd(), &addr);
        nix::sys::stat::umask(old);
        bound.map_err(|e| format!("bind: {e}"))?;
        sock::listen(&fd, sock::Backlog::new(8).unwrap_or(sock::Backlog::MAXCONN))
            .map_err(|e| format!("listen: {e}"))?;
        Ok(fd)
    }

    /// Removes the socket (the monitor is done).
    pub fn close(&mut self) {
        self.listener = None;
        self.clients.clear();
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Moves output to the log and the clients and input to the process until its output
    /// ends (every process holding it exited).
    pub fn serve(&mut self, io: Stdio, mut log: impl FnMut(&[u8])) {
        let tty = io.master.is_some();
        let mut sources: Vec<(u8, OwnedFd)> = Vec::new();
        if let Some(m) = &io.master
            && let Ok(d) = nix::unistd::dup(m)
        {
            sources.push((OUT, d));
        }
        for (kind, fd) in [(OUT, io.stdout), (ERR, io.stderr)] {
            if let Some(fd) = fd {
                if tty {
                    // The terminal replaced them; they end with the init.
                    drop(fd);
                } else {
                    sources.push((kind, fd));
                }
            }
        }
        let mut sink: Option<OwnedFd> = io.master.or(io.stdin);
        if let Some(s) = &sink {
            relay::set_nonblocking(s.as_fd(), true);
        }
        let mut to_cmd: Vec<u8> = Vec::new();
        let mut eof_pending = false;
        let has_stdin = sink.is_some();
        while !sources.is_empty() {
            let now = Instant::now();
            self.clients
                .retain(|c| c.over_since.is_none_or(|t| now - t < STALL));
            let held = self.clients.iter().any(|c| c.out.len() > CLIENT_CAP);
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            let n_src = if held { 0 } else { sources.len() };
            for (_, fd) in sources.iter().take(n_src) {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            let l_idx = self.listener.as_ref().map(|l| {
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let s_idx = match &sink {
                Some(s) if !to_cmd.is_empty() => {
                    fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
                    Some(fds.len() - 1)
                }
                _ => None,
            };
            let c_first = fds.len();
            for c in &self.clients {
                let mut ev = PollFlags::empty();
                if c.hello.is_some() || (c.reading && to_cmd.len() < CLIENT_CAP) {
                    ev |= PollFlags::POLLIN;
                }
                if !c.out.is_empty() {
                    ev |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(c.fd.as_fd(), ev));
            }
            match poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("console poll: {e}");
                    return;
                }
            }
            let rev: Vec<PollFlags> = fds
                .iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect();
            drop(fds);
            // Output.
            let mut ended = Vec::new();
            for (i, (kind, fd)) in sources.iter().enumerate().take(n_src) {
                if rev[i].is_empty() {
                    continue;
                }
                match nix::unistd::read(fd, &mut self.buf) {
                    Ok(0) => ended.push(i),
                    Ok(n) => {
                        let data = self.buf[..n].to_vec();
                        log(&data);
                        self.publish(*kind, data);
                    }
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                    // EIO: the terminal has no process left.
                    Err(_) => ended.push(i),
                }
            }
            for i in ended.into_iter().rev() {
                sources.remove(i);
            }
            if l_idx.is_some_and(|i| !rev[i].is_empty()) {
                self.accept();
            }
            // Input.
            let c_rev = rev[c_first..].to_vec();
            let mut gone = Vec::new();
            for (k, r) in c_rev.iter().enumerate() {
                if r.is_empty() {
                    continue;
                }
                let c = &mut self.clients[k];
                if r.contains(PollFlags::POLLOUT) && !send_some(c) {
                    gone.push(k);
                    continue;
                }
                if r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP)
                    && (c.hello.is_some() || c.reading)
                {
                    match nix::unistd::read(&c.fd, &mut self.buf) {
                        Ok(0) => {
                            if c.hello.is_some() {
                                gone.push(k);
                                continue;
                            }
                            c.reading = false;
                        }
                        Ok(n) => {
                            let bytes = self.buf[..n].to_vec();
                            if let Some(h) = c.hello.as_mut() {
                                h.extend_from_slice(&bytes);
                                if let Some(nl) = h.iter().position(|b| *b == b'\n') {
                                    let line = String::from_utf8_lossy(&h[..nl]).into_owned();
                                    let rest = h[nl + 1..].to_vec();
                                    c.hello = None;
                                    c.dec.push(&rest);
                                    let logs = line.split_whitespace().any(|w| w == "logs=1");
                                    let stdin = tty || (has_stdin && sink.is_some());
                                    c.out.extend_from_slice(
                                        format!(
                                            "ok tty={} stdin={}\n",
                                            u8::from(tty),
                                            u8::from(stdin)
                                        )
                                        .as_bytes(),
                                    );
                                    if logs {
                                        for (kind, d) in &self.ring {
                                            c.out.extend(relay::encode_raw(*kind, d));
                                        }
                                    }
                                } else if h.len() > 256 {
                                    gone.push(k);
                                    continue;
                                }
                            } else {
                                c.dec.push(&bytes);
                            }
                        }
                        Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                        Err(_) => {
                            gone.push(k);
                            continue;
                        }
                    }
                    while let Some((kind, payload)) = c.dec.next_raw() {
                        match kind {
                            DATA => to_cmd.extend_from_slice(&payload),
                            RESIZE if payload.len() == 4 => {
                                if tty && let Some(s) = &sink {
                                    relay::set_size(
                                        s.as_fd(),
                                        u16::from_be_bytes([payload[0], payload[1]]),
                                        u16::from_be_bytes([payload[2], payload[3]]),
                                    );
                                }
                            }
                            EOF => {
                                if tty {
                                    to_cmd.push(0x04);
                                } else {
                                    eof_pending = true;
                                }
                            }
                            _ => {}
                        }
                    }
                    if c.dec.is_broken() {
                        gone.push(k);
                        continue;
                    }
                } else if r
                    .intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL)
                {
                    gone.push(k);
                }
            }
            gone.sort_unstable();
            gone.dedup();
            for k in gone.into_iter().rev() {
                self.clients.remove(k);
            }
            if s_idx.is_some_and(|i| !rev[i].is_empty()) || !to_cmd.is_empty() {
                if let Some(s) = &sink {
                    flush_to(s.as_fd(), &mut to_cmd);
                } else {
                    to_cmd.clear();
                }
            }
            if eof_pending && to_cmd.is_empty() && !tty {
                // The process's stdin ends (`echo hi | corral run -i … cat`); for good.
                sink = None;
                eof_pending = false;
            }
        }
    }

    /// Tells every client the process's exit code, gives them a moment to read it, and lets
    /// them go.
    pub fn exit(&mut self, code: i32) {
        for c in &mut self.clients {
            if c.hello.is_none() {
                c.out.extend(relay::encode_raw(EXIT, &code.to_be_bytes()));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && self.clients.iter().any(|c| !c.out.is_empty()) {
            let mut fds: Vec<PollFd<'_>> = self
                .clients
                .iter()
                .map(|c| PollFd::new(c.fd.as_fd(), PollFlags::POLLOUT))
                .collect();
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            drop(fds);
            self.clients.retain_mut(send_some);
        }
        self.clients.clear();
        self.ring.clear();
        self.ring_len = 0;
    }

    fn publish(&mut self, kind: u8, data: Vec<u8>) {
        let f = relay::encode_raw(kind, &data);
        let now = Instant::now();
        for c in &mut self.clients {
            if c.hello.is_none() {
                c.out.extend_from_slice(&f);
                if c.out.len() > CLIENT_CAP {
                    c.over_since.get_or_insert(now);
                }
            }
        }
        self.ring_len += data.len();
        self.ring.push_back((kind, data));
        while self.ring_len > RING {
            match self.ring.pop_front() {
                Some((_, d)) => self.ring_len -= d.len(),
                None => break,
            }
        }
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        while let Ok(fd) = sock::accept4(
            l.as_raw_fd(),
            sock::SockFlag::SOCK_CLOEXEC | sock::SockFlag::SOCK_NONBLOCK,
        ) {
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            if self.clients.len() >= MAX_CLIENTS {
                continue;
            }
            self.clients.push(Client {
                fd,
                hello: Some(Vec::new()),
                dec: Decoder::default(),
                out: Vec::new(),
                reading: true,
                over_since: None,
            });
        }
    }
}

/// Sends what the client can take now; false when it is gone.
fn send_some(c: &mut Client) -> bool {
    while !c.out.is_empty() {
        match sock::send(
            c.fd.as_raw_fd(),
            &c.out,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(_) => return false,
        }
    }
    if c.out.len() <= CLIENT_CAP {
        c.over_since = None;
    }
    true
}

fn flush_to(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => {
                buf.drain(..n);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => return,
            Err(_) => {
                buf.clear();
                return;
            }
        }
    }
}
