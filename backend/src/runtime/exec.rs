//! The daemon side of `exec`: a command run inside a running container by a `corral __exec`
//! helper ([`super::shim`]), its output handed on as it is produced.
//!
//! Memory per session is bounded: the helper's stdout and stderr pipes are read in chunks of
//! [`CHUNK`] bytes into a channel of [`QUEUE`] chunks; when the consumer (an HTTP body, the JSON
//! collector) does not take them, nothing more is read, the pipes fill and the command blocks in
//! `write` (back-pressure). Nothing holds the output whole.
//!
//! Ending a session early (the consumer dropped it, [`ExecSession::kill`], the timeout) sends
//! the helper SIGTERM; it SIGKILLs the command's session inside the container, reaps it and
//! exits with 137 (the pipes are read to their end meanwhile; with no consumer the output is
//! dropped). A helper that does not exit within [`HELPER_GRACE`] is SIGKILLed and the pipes
//! closed (its command then gets the parent-death signal or EPIPE). When the daemon itself
//! dies, its pipe ends close with it: the helper sees POLLERR and kills the session too.

use std::{process::Stdio, time::Duration};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::{
    io::AsyncReadExt,
    process::{Child, ChildStderr, ChildStdin, ChildStdout},
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{Manager, RuntimeError, manager::check_env, relay::Frame};

/// Bytes read from a pipe at a time (one event).
pub const CHUNK: usize = 64 * 1024;
/// Events a session buffers before it stops reading the pipes.
pub const QUEUE: usize = 4;
/// How long the helper may take to kill its command and exit once told to.
const HELPER_GRACE: Duration = Duration::from_secs(5);
/// After the command exited, how long a pipe may stay silent before the session ends without
/// its end-of-file (a background process the command started still holds it).
const LINGER: Duration = Duration::from_secs(1);

/// What a session reports, in order: output chunks, then exactly one `Exit` (or `Failed`).
#[derive(Debug)]
pub enum ExecEvent {
    Output(wire::ExecStream, Vec<u8>),
    /// The command's exit code (128 + N for signal N; 137 when the session was ended early);
    /// `timed_out` when the timeout ended it.
    Exit {
        code: i32,
        timed_out: bool,
    },
    Failed(RuntimeError),
}

/// A running exec. Dropping it kills the command (and what it started).
#[derive(Debug)]
pub struct ExecSession {
    events: mpsc::Receiver<ExecEvent>,
    stop: Option<oneshot::Sender<()>>,
    input: Option<mpsc::Sender<Frame>>,
}

/// How an exec talks to its client besides its output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interactive {
    /// The client's stdin reaches the command ([`ExecSession::input`]).
    pub stdin: bool,
    /// A pseudo-terminal from the container's devpts: output is the terminal's (stdout only).
    pub tty: bool,
    /// The terminal's initial rows and columns.
    pub size: Option<(u16, u16)>,
}

impl ExecSession {
    /// Where stdin bytes, window sizes and the end of stdin go, for a session started with
    /// stdin or a terminal (`None` otherwise). Each frame's data is at most
    /// [`super::relay::BUF`] bytes; the channel holds [`QUEUE`] frames (back-pressure).
    /// Dropping every sender ends the command's stdin.
    pub fn input(&mut self) -> Option<mpsc::Sender<Frame>> {
        self.input.take()
    }

    /// The next event; `None` after the last one.
    pub async fn next(&mut self) -> Option<ExecEvent> {
        self.events.recv().await
    }

    /// Kills the command and what it started; the events still end with its `Exit`.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Runs the session to its end for a plain JSON answer: at most `cap` bytes of each
    /// stream are kept; passing the cap kills the command and marks the result `truncated`.
    pub async fn collect(mut self, cap: usize) -> Result<wire::ExecResult, RuntimeError> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut truncated = false;
        while let Some(ev) = self.next().await {
            match ev {
                ExecEvent::Output(stream, data) => {
                    let buf = match stream {
                        wire::ExecStream::Stdout => &mut out,
                        wire::ExecStream::Stderr => &mut err,
                    };
                    let room = cap.saturating_sub(buf.len());
                    buf.extend_from_slice(&data[..data.len().min(room)]);
                    if data.len() > room && !truncated {
                        truncated = true;
                        self.kill();
                    }
                }
                ExecEvent::Exit { code, timed_out } => {
                    return Ok(wire::ExecResult {
                        exit_code: code,
                        stdout: String::from_utf8_lossy(&out).into_owned(),
                        stderr: String::from_utf8_lossy(&err).into_owned(),
                        truncated,
                        timed_out,
                    });
                }
                ExecEvent::Failed(e) => return Err(e),
            }
        }
        Err(RuntimeError::Io {
            action: "finish",
            path: "exec session".into(),
            source: std::io::Error::other("the session ended without an exit code"),
        })
    }
}

impl Manager {
    /// Starts `req.command` inside the running container, with all its restrictions. The
    /// output arrives through the returned session; `req.timeout` (seconds, at most
    /// [`wire::EXEC_MAX_TIMEOUT`]) kills the command when it passes.
    pub async fn exec(
        &self,
        name: &str,
        req: wire::ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        self.exec_interactive(name, req, Interactive::default())
            .await
    }

    /// [`Manager::exec`] with the client's stdin and/or a terminal.
    pub async fn exec_interactive(
        &self,
        name: &str,
        req: wire::ExecRequest,
        term: Interactive,
    ) -> Result<ExecSession, RuntimeError> {
        if req.command.is_empty() || req.command[0].is_empty() {
            return Err(RuntimeError::invalid("command", "must not be empty"));
        }
        for e in &req.env {
            check_env(e, "env")?;
        }
        let timeout = match req.timeout {
            None => None,
            Some(t @ 1..=wire::EXEC_MAX_TIMEOUT) => Some(Duration::from_secs(t)),
            Some(t) => {
                return Err(RuntimeError::invalid(
                    "timeout",
                    format!(
                        "{t} is out of range: 1..={} seconds",
                        wire::EXEC_MAX_TIMEOUT
                    ),
                ));
            }
        };
        let r = self.get(name).await?;
        if r.status.parse() != Ok(crate::runtime::status::Status::Running) {
            return Err(RuntimeError::Conflict {
                name: r.name,
                status: r.status,
                message: "not running".into(),
            });
        }
        let dir = self.container_dir(&r.id);
        let program = super::memfd::helper_program()
            .map_err(RuntimeError::io("make a sealed copy of", "/proc/self/exe"))?;
        let mut cmd = tokio::process::Command::new(&program);
        cmd.arg0("corral").arg("__exec").arg(dir.path());
        for e in &req.env {
            cmd.arg("-e").arg(e);
        }
        if term.stdin {
            cmd.arg("-i");
        }
        if term.tty {
            cmd.arg("-t");
            if let Some((rows, cols)) = term.size {
                cmd.arg("--size").arg(format!("{rows}x{cols}"));
            }
        }
        let framed = term.stdin || term.tty;
        cmd.arg("--").args(&req.command);
        // Not kill_on_drop: the helper must live to kill its command (see the module doc).
        cmd.stdin(if framed {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear();
        super::pass_open_file_limit(|k, v| {
            cmd.env(k, v);
        });
        let mut child = cmd
            .spawn()
            .map_err(RuntimeError::io("spawn exec helper", &program))?;
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.start_kill();
            return Err(RuntimeError::Io {
                action: "spawn exec helper",
                path: program,
                source: std::io::Error::other("no output pipes"),
            });
        };
        let input = match child.stdin.take() {
            Some(stdin) => {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(feed(stdin, rx));
                Some(tx)
            }
            None => None,
        };
        let (tx, events) = mpsc::channel(QUEUE);
        let (stop, stop_rx) = oneshot::channel();
        let deadline = timeout.map(|t| Instant::now() + t);
        tokio::spawn(drive(child, out, err, tx, stop_rx, deadline));
        Ok(ExecSession {
            events,
            stop: Some(stop),
            input,
        })
    }
}

/// Moves the helper's output into `tx` chunk by chunk, never reading ahead of the consumer,
/// and ends the session early on `stop`, a dropped receiver or the deadline.
async fn drive(
    mut child: Child,
    out: ChildStdout,
    err: ChildStderr,
    tx: mpsc::Sender<ExecEvent>,
    mut stop: oneshot::Receiver<()>,
    deadline: Option<Instant>,
) {
    let helper = child.id().map(|p| Pid::from_raw(p as i32));
    let (mut out, mut err) = (Some(out), Some(err));
    let (mut buf_out, mut buf_err) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut pending: Option<ExecEvent> = None;
    let mut status = None;
    let mut timed_out = false;
    // The consumer is gone: output is read and dropped until the pipes end.
    let mut discard = false;
    let mut stop_seen = false;
    // Set once the helper was told to end the session: by then it must have exited.
    let mut ending: Option<Instant> = None;
    // Set once the command exited: the pipes may stay silent until then.
    let mut linger: Option<Instant> = None;
    let far = || Instant::now() + Duration::from_secs(86_400 * 365);
    // Tells the helper to kill the command's session (it is our unreaped child: the pid is
    // still its own). Output keeps flowing until the pipes end.
    let end = |ending: &mut Option<Instant>, status_known: bool| {
        if ending.is_none() && !status_known {
            if let Some(p) = helper {
                let _ = kill(p, Signal::SIGTERM);
            }
            *ending = Some(Instant::now() + HELPER_GRACE);
        }
    };
    loop {
        if status.is_some() && out.is_none() && err.is_none() && pending.is_none() {
            break;
        }
        let reading = pending.is_none();
        tokio::select! {
            _ = &mut stop, if !stop_seen => {
                stop_seen = true;
                end(&mut ending, status.is_some());
            }
            () = tx.closed(), if !discard => {
                discard = true;
                pending = None;
                end(&mut ending, status.is_some());
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(far)),
                if deadline.is_some() && ending.is_none() && status.is_none() => {
                timed_out = true;
                end(&mut ending, false);
            }
            () = tokio::time::sleep_until(ending.unwrap_or_else(far)),
                if ending.is_some() && status.is_none() => {
                // The command then gets its parent-death signal, or EPIPE.
                tracing::warn!("exec helper did not end its session in time; killing it");
                let _ = child.start_kill();
                (out, err, pending) = (None, None, None);
                ending = Some(far());
            }
            () = tokio::time::sleep_until(linger.unwrap_or_else(far)),
                if linger.is_some() && reading => {
                // A process the command left in the background still holds a pipe.
                (out, err) = (None, None);
            }
            s = child.wait(), if status.is_none() => {
                status = Some(s);
                linger = Some(Instant::now() + LINGER);
            }
            permit = tx.reserve(), if pending.is_some() => match permit {
                Ok(p) => {
                    if let Some(ev) = pending.take() {
                        p.send(ev);
                    }
                    if linger.is_some() {
                        linger = Some(Instant::now() + LINGER);
                    }
                }
                Err(_) => {
                    discard = true;
                    pending = None;
                    end(&mut ending, status.is_some());
                }
            },
            r = read(&mut out, &mut buf_out), if reading && out.is_some() => match r {
                Some(data) if !discard => {
                    pending = Some(ExecEvent::Output(wire::ExecStream::Stdout, data));
                }
                Some(_) => {}
                None => out = None,
            },
            r = read(&mut err, &mut buf_err), if reading && err.is_some() => match r {
                Some(data) if !discard => {
                    pending = Some(ExecEvent::Output(wire::ExecStream::Stderr, data));
                }
                Some(_) => {}
                None => err = None,
            },
        }
    }
    let last = match status {
        Some(Ok(s)) => ExecEvent::Exit {
            code: s
                .code()
                .or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    s.signal().map(|n| 128 + n)
                })
                .unwrap_or(255),
            timed_out,
        },
        Some(Err(e)) => ExecEvent::Failed(RuntimeError::Io {
            action: "wait for",
            path: "exec helper".into(),
            source: e,
        }),
        None => return,
    };
    let _ = tx.send(last).await;
}

/// Writes the client's frames to the helper's stdin, one at a time (a command that does not
/// read its stdin stops the client's, through the channel). Ends at the end of stdin or when
/// the helper is gone; dropping `stdin` tells the helper its stdin ended.
async fn feed(mut stdin: ChildStdin, mut rx: mpsc::Receiver<Frame>) {
    use tokio::io::AsyncWriteExt;
    while let Some(frame) = rx.recv().await {
        let eof = frame == Frame::Eof;
        if stdin
            .write_all(&super::relay::encode(&frame))
            .await
            .is_err()
            || eof
        {
            return;
        }
    }
}

/// The next chunk of a pipe; `None` at its end (or a read error), after which it is dropped.
async fn read<R: tokio::io::AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> Option<Vec<u8>> {
    let p = pipe.as_mut()?;
    match p.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(buf[..n].to_vec()),
    }
}
