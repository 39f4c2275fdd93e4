//! Interactive I/O on the helper's side: the frames the daemon writes to an `__exec` helper's
//! stdin, pseudo-terminals opened in the container's own devpts, and the poll loop that moves
//! bytes between them ([`Relay`]).
//!
//! The daemon → helper stream is a sequence of frames `[kind u8][len u32 BE][payload]`:
//! [`DATA`] (stdin bytes), [`RESIZE`] (rows u16 BE, cols u16 BE) and [`EOF`]. The helper →
//! daemon direction is plain bytes (its stdout, and stderr without a terminal).
//!
//! Memory is bounded by one read of [`BUF`] bytes per direction: the loop reads a side only
//! when what it read before has been written on, so a stalled reader stalls the writer.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::{
    fcntl::{FcntlArg, OFlag, fcntl},
    poll::{PollFd, PollFlags, PollTimeout, poll},
};

/// Stdin bytes.
pub const DATA: u8 = 0;
/// A window size: rows then cols, u16 big-endian each.
pub const RESIZE: u8 = 1;
/// Stdin ended.
pub const EOF: u8 = 2;
/// The largest payload a frame may carry, and the size of each relay buffer.
pub const BUF: usize = 64 * 1024;

/// One frame of the daemon → helper stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data(Vec<u8>),
    Resize { rows: u16, cols: u16 },
    Eof,
}

/// Encodes one frame (data longer than [`BUF`] must be split by the caller).
pub fn encode(frame: &Frame) -> Vec<u8> {
    let (kind, payload): (u8, Vec<u8>) = match frame {
        Frame::Data(d) => (DATA, d.clone()),
        Frame::Resize { rows, cols } => {
            let mut p = rows.to_be_bytes().to_vec();
            p.extend_from_slice(&cols.to_be_bytes());
            (RESIZE, p)
        }
        Frame::Eof => (EOF, Vec::new()),
    };
    encode_raw(kind, &payload)
}

/// One `[kind][len u32 BE][payload]` frame of any kind (the monitor's OUT/ERR/EXIT too).
pub fn encode_raw(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 5);
    v.push(kind);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Splits the daemon's stream into frames; a malformed frame ends it (as an [`Frame::Eof`]).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    broken: bool,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.broken {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next whole frame as (kind, payload), if one has arrived; a frame longer than
    /// [`BUF`] breaks the stream (`None` from then on, [`Decoder::is_broken`]).
    pub fn next_raw(&mut self) -> Option<(u8, Vec<u8>)> {
        if self.broken || self.buf.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > BUF {
            self.broken = true;
            self.buf = Vec::new();
            return None;
        }
        if self.buf.len() < 5 + len {
            return None;
        }
        let kind = self.buf[0];
        Some((kind, self.buf.drain(..5 + len).skip(5).collect()))
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The next whole frame of the daemon's stream, if one has arrived.
    pub fn next_frame(&mut self) -> Option<Frame> {
        let was_broken = self.broken;
        let Some((kind, payload)) = self.next_raw() else {
            return (self.broken && !was_broken).then_some(Frame::Eof);
        };
        Some(match (kind, payload.len()) {
            (DATA, _) => Frame::Data(payload),
            (RESIZE, 4) => Frame::Resize {
                rows: u16::from_be_bytes([payload[0], payload[1]]),
                cols: u16::from_be_bytes([payload[2], payload[3]]),
            },
            _ => {
                self.broken = true;
                self.buf = Vec::new();
                Frame::Eof
            }
        })
    }
}

/// A pseudo-terminal: the master and its peer (the slave), opened through the `/dev/ptmx` of
/// the caller's mount namespace (a container's own devpts instance).
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl Pty {
    pub fn open() -> Result<Self, String> {
        let master = nix::fcntl::open(
            "/dev/ptmx",
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| format!("open /dev/ptmx: {e}"))?;
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK reads one int through the pointer, which outlives the call.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
            return Err(format!("unlock pty: {}", nix::errno::Errno::last()));
        }
        // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor (Linux 4.13+): the
        // peer of this very master, never a path that could be swapped under us.
        let fd = unsafe {
            libc::ioctl(
                master.as_raw_fd(),
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(format!("open pty peer: {}", nix::errno::Errno::last()));
        }
        // SAFETY: a fresh descriptor the kernel just returned, owned nowhere else.
        let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Self { master, slave })
    }
}

/// Sets a terminal's window size (0 × 0 is left alone).
pub fn set_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) {
    if rows == 0 || cols == 0 {
        return;
    }
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which outlives the call.
    unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

/// In a forked child: makes `slave` the controlling terminal of a new session and the
/// process's stdin, stdout and stderr.
pub fn become_terminal_child(slave: &OwnedFd) -> Result<(), String> {
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal).
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(format!(
            "set controlling terminal: {}",
            nix::errno::Errno::last()
        ));
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the stdio numbers of this single-threaded child.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(format!("dup2 pty: {}", nix::errno::Errno::last()));
        }
    }
    Ok(())
}

pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) {
    if let Ok(bits) = fcntl(fd, FcntlArg::F_GETFL) {
        let mut flags = OFlag::from_bits_retain(bits);
        flags.set(OFlag::O_NONBLOCK, on);
        let _ = fcntl(fd, FcntlArg::F_SETFL(flags));
    }
}

/// Where stdin goes and output comes from.
pub enum Io {
    /// A terminal: stdin frames go to the master, the master's output to our stdout.
    Tty { master: OwnedFd },
    /// Separate streams: stdin frames go to this pipe (the command's stdin); the command
    /// writes our stdout and stderr itself.
    Pipe { stdin: Option<OwnedFd> },
}

/// What ended a [`Relay::step`].
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// Keep going.
    More,
    /// The daemon's ends of our stdout or stderr closed (it died or dropped the session).
    ReaderGone,
}

/// The helper's half of an interactive session.
pub struct Relay {
    io: Io,
    decoder: Decoder,
    /// Read from our stdin, not yet written to the command.
    to_cmd: Vec<u8>,
    /// Read from the master, not yet written to our stdout.
    to_out: Vec<u8>,
    stdin_open: bool,
    /// Close the command's stdin once `to_cmd` is written.
    eof_pending: bool,
    buf: Vec<u8>,
}

impl Relay {
    pub fn new(io: Io) -> Self {
        let stdin = std::io::stdin();
        set_nonblocking(stdin.as_fd(), true);
        match &io {
            Io::Tty { master } => {
                set_nonblocking(master.as_fd(), true);
                set_nonblocking(std::io::stdout().as_fd(), true);
            }
            Io::Pipe { stdin: Some(p) } => set_nonblocking(p.as_fd(), true),
            Io::Pipe { stdin: None } => {}
        }
        Self {
            io,
            decoder: Decoder::default(),
            to_cmd: Vec::new(),
            to_out: Vec::new(),
            stdin_open: true,
            eof_pending: false,
            buf: vec![0u8; BUF],
        }
    }

    /// One poll round over our stdin, the command's side and our stdout, plus `extra` (the
    /// caller's stop and pidfd descriptors, whose readiness it reads back from the returned
    /// flags). Blocks until something is ready.
    pub fn step(&mut self, extra: &[BorrowedFd<'_>]) -> Result<(Wake, Vec<bool>), String> {
        let stdin = std::io::stdin();
        let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
        let sink: Option<BorrowedFd<'_>> = match &self.io {
            Io::Tty { master } => Some(master.as_fd()),
            Io::Pipe { stdin } => stdin.as_ref().map(AsFd::as_fd),
        };
        let master = match &self.io {
            Io::Tty { master } => Some(master.as_fd()),
            Io::Pipe { .. } => None,
        };
        let want_out = !self.to_out.is_empty();
        let mut fds = vec![
            PollFd::new(
                stdout.as_fd(),
                if want_out {
                    PollFlags::POLLOUT
                } else {
                    PollFlags::empty()
                },
            ),
            PollFd::new(stderr.as_fd(), PollFlags::empty()),
        ];
        let i_in = self.stdin_open && self.to_cmd.is_empty() && !self.eof_pending;
        let idx_in = i_in.then(|| {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let idx_sink = match sink {
            Some(s) if !self.to_cmd.is_empty() => {
                fds.push(PollFd::new(s, PollFlags::POLLOUT));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let idx_master = match master {
            Some(m) if self.to_out.is_empty() => {
                fds.push(PollFd::new(m, PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let first_extra = fds.len();
        for e in extra {
            fds.push(PollFd::new(*e, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let rev = |i: usize| fds[i].revents().unwrap_or(PollFlags::empty());
        let gone = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
        // A pipe's write end reports POLLERR once no reader is left.
        if rev(0).intersects(gone) || rev(1).intersects(gone) {
            return Ok((Wake::ReaderGone, Vec::new()));
        }
        let extra_ready: Vec<bool> = (first_extra..fds.len())
            .map(|i| !rev(i).is_empty())
            .collect();
        let out_ready = want_out && rev(0).contains(PollFlags::POLLOUT);
        let in_ready = idx_in.is_some_and(|i| !rev(i).is_empty());
        let sink_ready = idx_sink.is_some_and(|i| !rev(i).is_empty());
        let master_ready = idx_master.is_some_and(|i| !rev(i).is_empty());
        drop(fds);
        if out_ready {
            self.flush_out();
        }
        if master_ready {
            self.read_master();
        }
        if in_ready {
            self.read_stdin();
        }
        if sink_ready {
            self.flush_cmd();
        }
        Ok((Wake::More, extra_ready))
    }

    fn read_master(&mut self) {
        let Io::Tty { master } = &self.io else { return };
        match nix::unistd::read(master, &mut self.buf) {
            Ok(n) if n > 0 => {
                self.to_out.extend_from_slice(&self.buf[..n]);
                self.flush_out();
            }
            // EIO: no process holds the terminal any more; the pidfd tells when it exited.
            _ => {}
        }
    }

    fn flush_out(&mut self) {
        flush(&mut self.to_out);
    }

    fn read_stdin(&mut self) {
        match nix::unistd::read(std::io::stdin(), &mut self.buf) {
            Ok(0) => {
                self.stdin_open = false;
                self.eof_pending = true;
            }
            Ok(n) => self.decoder.push(&self.buf[..n]),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(_) => {
                self.stdin_open = false;
                self.eof_pending = true;
            }
        }
        while let Some(frame) = self.decoder.next_frame() {
            match frame {
                Frame::Data(d) => self.to_cmd.extend_from_slice(&d),
                Frame::Resize { rows, cols } => {
                    if let Io::Tty { master } = &self.io {
                        set_size(master.as_fd(), rows, cols);
                    }
                }
                Frame::Eof => {
                    self.stdin_open = false;
                    self.eof_pending = true;
                    break;
                }
            }
        }
        self.flush_cmd();
    }

    fn flush_cmd(&mut self) {
        let sink = match &self.io {
            Io::Tty { master } => Some(master.as_fd()),
            Io::Pipe { stdin } => stdin.as_ref().map(AsFd::as_fd),
        };
        let Some(sink) = sink else {
            self.to_cmd.clear();
            return;
        };
        while !self.to_cmd.is_empty() {
            match nix::unistd::write(sink, &self.to_cmd) {
                Ok(n) => {
                    self.to_cmd.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                // The command closed its stdin: drop what it will never read.
                Err(_) => {
                    self.to_cmd.clear();
                    break;
                }
            }
        }
        if self.eof_pending {
            self.eof_pending = false;
            match &mut self.io {
                // A terminal has no end of input: send its EOF character (^D), as typed.
                Io::Tty { master } => {
                    let _ = nix::unistd::write(master.as_fd(), &[0x04]);
                }
                Io::Pipe { stdin } => *stdin = None,
            }
        }
    }

    /// After the command exited: passes on what the terminal still holds (waiting at most
    /// `quiet` for more), blocking on our stdout.
    pub fn drain(&mut self, quiet: std::time::Duration) {
        let Io::Tty { master } = &self.io else { return };
        set_nonblocking(std::io::stdout().as_fd(), false);
        let ms = u16::try_from(quiet.as_millis()).unwrap_or(u16::MAX);
        loop {
            flush(&mut self.to_out);
            let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
            match nix::unistd::read(master, &mut self.buf) {
                Ok(n) if n > 0 => self.to_out.extend_from_slice(&self.buf[..n]),
                _ => return,
            }
        }
    }
}

/// Writes `to_out` to our stdout until it is written or would block.
fn flush(to_out: &mut Vec<u8>) {
    while !to_out.is_empty() {
        match nix::unistd::write(std::io::stdout(), to_out) {
            Ok(n) => {
                to_out.drain(..n);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut bytes = encode(&Frame::Data(b"hello".to_vec()));
        bytes.extend(encode(&Frame::Resize { rows: 24, cols: 80 }));
        bytes.extend(encode(&Frame::Eof));
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for chunk in bytes.chunks(3) {
            d.push(chunk);
            while let Some(f) = d.next_frame() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame::Data(b"hello".to_vec()),
                Frame::Resize { rows: 24, cols: 80 },
                Frame::Eof
            ]
        );
    }

    #[test]
    fn a_malformed_frame_ends_the_stream() {
        let mut d = Decoder::default();
        d.push(&[DATA, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(d.next_frame(), Some(Frame::Eof));
        d.push(&encode(&Frame::Data(b"x".to_vec())));
        assert_eq!(d.next_frame(), None);
        let mut d = Decoder::default();
        d.push(&[RESIZE, 0, 0, 0, 1, 9]);
        assert_eq!(d.next_frame(), Some(Frame::Eof));
    }
}
