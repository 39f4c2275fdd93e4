//! The client side of [`wire::term`]: `corral exec -i/-t`, `corral attach` and `corral run -it`.
//!
//! With a terminal on our side and `-t`, ours goes into raw mode (restored on every way out),
//! its size is sent at the start and on every SIGWINCH, and the detach keys (Docker's
//! `ctrl-p,ctrl-q` unless `--detach-keys` says otherwise) leave the session: an attached
//! container keeps running; an exec's command is hung up, as when its terminal closes.
#![allow(unsafe_code)]

use std::os::fd::AsFd;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};
use tokio_tungstenite::tungstenite::Message;
use wire::term::{ClientMessage, ServerMessage};

use crate::client::Client;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exit(i32),
    Detached,
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Forward our stdin.
    pub stdin: bool,
    /// A terminal (raw mode, resizes, detach keys).
    pub tty: bool,
    /// The detach sequence (empty: none).
    pub detach_keys: Vec<u8>,
}

impl Options {
    pub fn new(stdin: bool, tty: bool, detach_keys: Option<&str>) -> anyhow::Result<Self> {
        let spec = detach_keys.unwrap_or(wire::term::DEFAULT_DETACH_KEYS);
        let detach_keys = wire::term::parse_detach_keys(spec)
            .map_err(|e| anyhow::anyhow!("--detach-keys: {e}"))?;
        Ok(Self {
            stdin,
            tty,
            detach_keys,
        })
    }
}

/// Our terminal's size (rows, cols), if stdout or stdin is one.
pub fn window_size() -> Option<(u16, u16)> {
    for fd in [1, 0, 2] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which outlives the call.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Puts stdin's terminal into raw mode until dropped.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{SetArg, tcsetattr};
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// `corral exec -i/-t NAME CMD…`: runs CMD over the WebSocket; its exit code.
pub async fn exec(
    client: &Client,
    name: &str,
    command: Vec<String>,
    env: Vec<String>,
    timeout: Option<u64>,
    opts: &Options,
) -> anyhow::Result<Outcome> {
    let mut ws = client
        .websocket(&format!(
            "/api/v1/containers/{}/exec",
            super::containers::enc(name)
        ))
        .await?;
    let size = if opts.tty { window_size() } else { None };
    let start = ClientMessage::Start {
        command,
        env,
        tty: opts.tty,
        stdin: opts.stdin,
        rows: size.map(|s| s.0),
        cols: size.map(|s| s.1),
        timeout,
    };
    ws.send(Message::Text(serde_json::to_string(&start)?.into()))
        .await
        .context("send the start message")?;
    run(ws, opts).await
}

/// `corral attach NAME` (and `run -it`): the container's process; `logs`: replay its recent
/// output first.
pub async fn attach(
    client: &Client,
    name: &str,
    logs: bool,
    opts: &Options,
) -> anyhow::Result<Outcome> {
    let path = format!(
        "/api/v1/containers/{}/attach{}",
        super::containers::enc(name),
        if logs { "?logs=true" } else { "" }
    );
    let mut ws = client.websocket(&path).await?;
    if opts.tty
        && let Some((rows, cols)) = window_size()
    {
        let m = ClientMessage::Resize { rows, cols };
        ws.send(Message::Text(serde_json::to_string(&m)?.into()))
            .await
            .context("send the window size")?;
    }
    run(ws, opts).await
}

enum Input {
    Data(Vec<u8>),
    Eof,
    Detach,
}

/// Reads stdin in chunks, watching for the detach sequence (held back while it is being
/// typed; passed on when it turns out to be something else).
async fn read_stdin(tx: mpsc::Sender<Input>, keys: Vec<u8>) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    let mut detach = wire::term::DetachMatcher::new(keys);
    loop {
        let n = match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(Input::Eof).await;
                return;
            }
            Ok(n) => n,
        };
        let (out, detached) = detach.feed(&buf[..n]);
        if !out.is_empty() && tx.send(Input::Data(out)).await.is_err() {
            return;
        }
        if detached {
            let _ = tx.send(Input::Detach).await;
            return;
        }
    }
}

async fn run<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    opts: &Options,
) -> anyhow::Result<Outcome>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let raw = if opts.tty && nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        RawMode::enter()
    } else {
        None
    };
    let r = relay(ws, opts, raw.is_some()).await;
    drop(raw);
    r
}

async fn relay<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    opts: &Options,
    raw: bool,
) -> anyhow::Result<Outcome>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let (in_tx, mut in_rx) = mpsc::channel::<Input>(4);
    if opts.stdin {
        // Detach keys only where a person types them.
        let keys = if raw {
            opts.detach_keys.clone()
        } else {
            Vec::new()
        };
        tokio::spawn(read_stdin(in_tx, keys));
    } else {
        drop(in_tx);
    }
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .context("watch window size changes")?;
    let (mut out, mut err) = (tokio::io::stdout(), tokio::io::stderr());
    let mut input_open = opts.stdin;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => bail!("the connection to the daemon failed: {e}"),
                    None => bail!("the daemon closed the session without an exit code"),
                };
                match msg {
                    Message::Binary(b) => match b.split_first() {
                        Some((&wire::term::STDOUT, data)) => {
                            out.write_all(data).await?;
                            out.flush().await?;
                        }
                        Some((&wire::term::STDERR, data)) => {
                            err.write_all(data).await?;
                            err.flush().await?;
                        }
                        _ => {}
                    },
                    Message::Text(t) => match serde_json::from_str::<ServerMessage>(&t) {
                        Ok(ServerMessage::Exit { code, .. }) => {
                            let _ = sink.close().await;
                            return Ok(Outcome::Exit(code));
                        }
                        Ok(ServerMessage::Error { error }) => {
                            let _ = sink.close().await;
                            bail!("{}", error.message);
                        }
                        Ok(ServerMessage::Started { .. }) | Err(_) => {}
                    },
                    Message::Close(_) => bail!("the daemon closed the session without an exit code"),
                    _ => {}
                }
            }
            input = in_rx.recv(), if input_open => match input {
                Some(Input::Data(d)) => {
                    sink.send(Message::Binary(wire::term::frame(wire::term::STDIN, &d).into())).await?;
                }
                Some(Input::Eof) | None => {
                    input_open = false;
                    let eof = serde_json::to_string(&ClientMessage::Eof)?;
                    sink.send(Message::Text(eof.into())).await?;
                }
                Some(Input::Detach) => {
                    let _ = sink.close().await;
                    return Ok(Outcome::Detached);
                }
            },
            _ = winch.recv(), if opts.tty => {
                if let Some((rows, cols)) = window_size() {
                    let m = serde_json::to_string(&ClientMessage::Resize { rows, cols })?;
                    sink.send(Message::Text(m.into())).await?;
                }
            }
        }
    }
}
