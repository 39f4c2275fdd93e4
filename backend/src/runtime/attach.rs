//! The daemon side of `attach`: a connection to the container monitor's attach socket
//! (`DIR/attach.sock`, served by [`super::shim`]), which owns the container's terminal or
//! stdio pipes — so attaching works the same after a daemon restart.
//!
//! The protocol on that socket: the daemon sends one line `attach logs=0|1\n`; the monitor
//! answers `ok tty=0|1 stdin=0|1\n`, then frames `[kind u8][len u32 BE][payload]` both ways
//! ([`super::relay`]): from the monitor [`OUT`], [`ERR`] and one [`EXIT`] (i32 BE) when the
//! process ends; to it DATA, RESIZE and EOF.

use std::time::Duration;

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
    sync::{mpsc, oneshot},
};

use super::{
    Manager, RuntimeError,
    exec::{CHUNK, ExecEvent, QUEUE},
    relay::{Decoder, Frame},
};

/// Output bytes (stdout, or the terminal's).
pub const OUT: u8 = 0x11;
/// Standard error bytes (no terminal).
pub const ERR: u8 = 0x12;
/// The process ended: its exit code, i32 big-endian.
pub const EXIT: u8 = 0x13;

/// A client attached to a container's process. Dropping it detaches.
#[derive(Debug)]
pub struct AttachSession {
    events: mpsc::Receiver<ExecEvent>,
    input: Option<mpsc::Sender<Frame>>,
    tty: bool,
    stdin: bool,
    detach: Option<oneshot::Sender<()>>,
}

impl AttachSession {
    pub fn tty(&self) -> bool {
        self.tty
    }

    pub fn has_stdin(&self) -> bool {
        self.stdin
    }

    /// Where stdin, window sizes and stdin's end go (`None` without an open stdin or a
    /// terminal, or once taken).
    pub fn input(&mut self) -> Option<mpsc::Sender<Frame>> {
        self.input.take()
    }

    pub async fn next(&mut self) -> Option<ExecEvent> {
        self.events.recv().await
    }

    pub fn detach(&mut self) {
        if let Some(d) = self.detach.take() {
            let _ = d.send(());
        }
    }
}

impl Manager {
    /// Attaches to `name`'s process. `logs`: first replay what its terminal printed recently.
    pub async fn attach(&self, name: &str, logs: bool) -> Result<AttachSession, RuntimeError> {
        let r = self.get(name).await?;
        if !crate::runtime::status::Status::live_str(&r.status) {
            return Err(RuntimeError::Conflict {
                name: r.name,
                status: r.status,
                message: "not running".into(),
            });
        }
        let dir_fd = super::console::open_dir(self.container_dir(&r.id).path());
        let refused = |source: std::io::Error| RuntimeError::Conflict {
            name: r.name.clone(),
            status: r.status.clone(),
            message: format!(
                "its monitor does not serve attach ({source}); containers started before this \
                 version cannot be attached"
            ),
        };
        let dir_fd = dir_fd.map_err(refused)?;
        let path = super::console::socket_path(&dir_fd);
        let mut sock = tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(&path))
            .await
            .map_err(|_| refused(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
            .map_err(refused)?;
        sock.write_all(format!("attach logs={}\n", u8::from(logs)).as_bytes())
            .await
            .map_err(refused)?;
        let (rd, mut wr) = sock.into_split();
        let mut rd = BufReader::with_capacity(CHUNK, rd);
        let mut hello = String::new();
        tokio::time::timeout(Duration::from_secs(5), rd.read_line(&mut hello))
            .await
            .map_err(|_| refused(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
            .map_err(refused)?;
        let words: Vec<&str> = hello.split_whitespace().collect();
        if words.first() != Some(&"ok") {
            return Err(refused(std::io::Error::other(hello.trim().to_owned())));
        }
        let tty = words.contains(&"tty=1");
        let stdin = words.contains(&"stdin=1");
        let (tx, events) = mpsc::channel(QUEUE);
        let (detach, mut detach_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut dec = Decoder::default();
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = tokio::select! {
                    r = rd.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    },
                    _ = &mut detach_rx => break,
                    () = tx.closed() => break,
                };
                dec.push(&buf[..n]);
                while let Some((kind, payload)) = dec.next_raw() {
                    let ev = match kind {
                        OUT => ExecEvent::Output(wire::ExecStream::Stdout, payload),
                        ERR => ExecEvent::Output(wire::ExecStream::Stderr, payload),
                        EXIT if payload.len() == 4 => ExecEvent::Exit {
                            code: i32::from_be_bytes([
                                payload[0], payload[1], payload[2], payload[3],
                            ]),
                            timed_out: false,
                        },
                        _ => continue,
                    };
                    let last = matches!(ev, ExecEvent::Exit { .. });
                    if tx.send(ev).await.is_err() || last {
                        return;
                    }
                }
            }
        });
        let input = (tty || stdin).then(|| {
            let (itx, mut irx) = mpsc::channel::<Frame>(QUEUE);
            tokio::spawn(async move {
                while let Some(f) = irx.recv().await {
                    if wr.write_all(&super::relay::encode(&f)).await.is_err() {
                        return;
                    }
                }
            });
            itx
        });
        Ok(AttachSession {
            events,
            input,
            tty,
            stdin,
            detach: Some(detach),
        })
    }
}
