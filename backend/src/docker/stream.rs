//! The Docker routes that stream: `attach` and `exec` on a hijacked connection (HTTP 101 with
//! `Upgrade: tcp`, then raw bytes both ways, as dockerd does), `logs`, `wait` (its status line
//! at once and its body at the exit, so the CLI may start the container after it), and
//! `resize`.
//!
//! Output without a terminal is Docker's multiplexed stream: `[stream u8][0 0 0][len u32 BE]`
//! then the bytes, stream 1 for stdout and 2 for stderr; with a terminal the raw bytes.
//!
//! Where output comes from:
//! - with stdin or a terminal, from the monitor's attach socket (`runtime::attach`): the
//!   container's live stdio, stdin forwarded, detach keys (`ctrl-p,ctrl-q`) honoured;
//! - otherwise from the container's log, from where it ended when the attach came: a
//!   foreground `docker run` attaches before the start, and the log holds everything the
//!   process printed even when it exited before any socket could connect. Corral's log is
//!   one stream, so this output is all stream 1.

use std::{
    collections::HashMap,
    path::{Path as FsPath, PathBuf},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{Path, Query, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

use super::{DockerError, manager, resolve, root};
use crate::{
    auth::audit,
    http::AppState,
    runtime::{Manager, exec::ExecEvent, relay::Frame},
};

/// Docker's stream kinds in the multiplexed framing.
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
/// How much of the log or the client is read at once.
const CHUNK: usize = 32 * 1024;
/// How often a log follower looks for more output while the container runs.
const FOLLOW_POLL: Duration = Duration::from_millis(50);
/// Exec records kept for `GET /exec/{id}/json` (the oldest finished ones go first).
const MAX_EXECS: usize = 1024;

/// One multiplexed frame.
fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 8);
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "true" | "True"))
}

/// 101 Switching Protocols and the raw connection handed to `serve`; a request that does not
/// ask for the upgrade is refused (the docker CLI always asks).
fn hijack<F, Fut>(req: &mut Request, tty: bool, serve: F) -> Result<Response, DockerError>
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|u| u.eq_ignore_ascii_case("tcp"));
    if !upgrade {
        return Err(DockerError(
            StatusCode::BAD_REQUEST,
            "this endpoint hijacks the connection: send Connection: Upgrade and Upgrade: tcp"
                .into(),
        ));
    }
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match on.await {
            Ok(up) => serve(TokioIo::new(up)).await,
            Err(e) => tracing::debug!(error = %e, "docker hijack"),
        }
    });
    let kind = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_TYPE, kind)
        .body(Body::empty())
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Window sizes asked for and the inputs of live sessions, by container name or exec id, so
/// that `resize` reaches a session (and a size asked for before it started is its first).
#[derive(Default)]
struct Terminals {
    sizes: HashMap<String, (u16, u16)>,
    inputs: HashMap<String, mpsc::Sender<Frame>>,
}

fn terminals() -> &'static Mutex<Terminals> {
    static T: OnceLock<Mutex<Terminals>> = OnceLock::new();
    T.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records `key`'s size and sends it to its session if one runs.
fn resize_key(key: &str, rows: u16, cols: u16) {
    let mut t = lock(terminals());
    if t.sizes.len() >= MAX_EXECS && !t.sizes.contains_key(key) {
        t.sizes.clear();
    }
    t.sizes.insert(key.to_owned(), (rows, cols));
    if let Some(tx) = t.inputs.get(key) {
        let _ = tx.try_send(Frame::Resize { rows, cols });
    }
}

/// A session's input registered under `key` while it lives.
struct Registered(String);

impl Registered {
    fn new(key: &str, tx: &mpsc::Sender<Frame>) -> Self {
        let mut t = lock(terminals());
        if let Some((rows, cols)) = t.sizes.get(key).copied() {
            let _ = tx.try_send(Frame::Resize { rows, cols });
        }
        t.inputs.insert(key.to_owned(), tx.clone());
        Registered(key.to_owned())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut t = lock(terminals());
        t.inputs.remove(&self.0);
        t.sizes.remove(&self.0);
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct ResizeQuery {
    h: Option<u16>,
    w: Option<u16>,
}

impl ResizeQuery {
    fn size(&self) -> Result<(u16, u16), DockerError> {
        match (self.h, self.w) {
            (Some(h @ 1..), Some(w @ 1..)) => Ok((h, w)),
            _ => Err(DockerError(
                StatusCode::BAD_REQUEST,
                "h and w: the terminal's rows and columns, 1 to 65535".into(),
            )),
        }
    }
}

/// `POST /containers/{id}/resize?h=&w=`.
pub async fn container_resize(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ResizeQuery>,
) -> Result<StatusCode, DockerError> {
    let (rows, cols) = q.size()?;
    let name = resolve(&state, &id).await?;
    resize_key(&name, rows, cols);
    Ok(StatusCode::OK)
}

/// `POST /exec/{id}/resize?h=&w=`.
pub async fn exec_resize(
    Path(id): Path<String>,
    Query(q): Query<ResizeQuery>,
) -> Result<StatusCode, DockerError> {
    let (rows, cols) = q.size()?;
    if !lock(execs()).contains_key(&id) {
        return Err(no_exec(&id));
    }
    resize_key(&exec_key(&id), rows, cols);
    Ok(StatusCode::OK)
}

// ---- attach ----

#[derive(Debug, serde::Deserialize)]
pub struct AttachQuery {
    stream: Option<String>,
    stdin: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
    #[serde(rename = "detachKeys")]
    detach_keys: Option<String>,
    #[serde(flatten)]
    _rest: HashMap<String, String>,
}

/// Where a container's log ended when a client attached: its output from there on is new.
struct LogMark {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl LogMark {
    async fn now(path: PathBuf) -> Self {
        let file = match tokio::fs::File::open(&path).await {
            Ok(mut f) => f.seek(std::io::SeekFrom::End(0)).await.ok().map(|_| f),
            Err(_) => None,
        };
        LogMark { path, file }
    }
}

/// `POST /containers/{id}/attach`: hijacked; see the module doc for where output comes from.
pub async fn container_attach(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<AttachQuery>,
    mut req: Request,
) -> Result<Response, DockerError> {
    let name = resolve(&state, &id).await?;
    let m = manager(&state)?.clone();
    let c = m.get(&name).await?;
    let tty = c.spec.tty;
    let stdin = truthy(q.stdin.as_deref()) && c.spec.open_stdin;
    let want = (truthy(q.stdout.as_deref()), truthy(q.stderr.as_deref()));
    let keys = wire::term::parse_detach_keys(
        q.detach_keys
            .as_deref()
            .unwrap_or(wire::term::DEFAULT_DETACH_KEYS),
    )
    .map_err(|e| DockerError(StatusCode::BAD_REQUEST, format!("detachKeys: {e}")))?;
    if q.stream.is_some() && !truthy(q.stream.as_deref()) {
        return Err(DockerError(
            StatusCode::BAD_REQUEST,
            "stream=0 (the logs alone): use GET /containers/{id}/logs".into(),
        ));
    }
    // Output that comes after this point is the client's.
    let (files, _) = m.log_source(&name).await?;
    let mark = LogMark::now(files[1].clone()).await;
    let running = c.status == "running" || c.status == "paused";
    let since = (c.started_at, c.restart_count);
    let events = state.events().clone();
    hijack(&mut req, tty, move |io| async move {
        let (rd, mut wr) = tokio::io::split(io);
        if !running && !started(&m, &events, &name, since).await {
            let _ = wr.shutdown().await;
            return;
        }
        let out = Output { tty, want };
        if stdin || tty {
            // Replay what it printed since the start, when it was started for this client.
            match m.attach(&name, !running).await {
                Ok(session) => {
                    live(session, rd, &mut wr, out, &name, keys).await;
                    let _ = wr.shutdown().await;
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "docker attach: following the log"),
            }
        }
        drop(rd);
        follow_log(&m, &name, mark, &mut wr, out).await;
        let _ = wr.shutdown().await;
    })
}

/// Which streams the client asked for, and whether output is a terminal's (raw).
#[derive(Debug, Clone, Copy)]
struct Output {
    tty: bool,
    want: (bool, bool),
}

impl Output {
    /// Bytes of `stream` as the client reads them; `None` when it did not ask for them.
    fn encode(&self, stream: u8, data: &[u8]) -> Option<Vec<u8>> {
        if self.tty {
            return self.want.0.then(|| data.to_vec());
        }
        let wanted = if stream == STDERR {
            self.want.1
        } else {
            self.want.0
        };
        wanted.then(|| frame(stream, data))
    }
}

/// Waits until `name` started after the attach (`since`: its start time and restarts then),
/// or was removed (its output is in the log the attach holds); false when the daemon shuts
/// down.
async fn started(
    m: &Manager,
    events: &crate::events::Events,
    name: &str,
    since: (Option<i64>, u32),
) -> bool {
    let mut head = events.watch_head();
    let mut closed = events.watch_closed();
    // Fault injection (tests only): the first look comes this late, after a quick run is over.
    #[cfg(feature = "fault-injection")]
    if let Some(ms) = std::env::var("CORRAL_FAULT_ATTACH_LOOK_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    loop {
        match m.get(name).await {
            Ok(c) if (c.started_at, c.restart_count) != since && c.started_at.is_some() => {
                return true;
            }
            Ok(_) => {}
            // Removed in between (`--rm` after a run quicker than this look): what it printed
            // is in the log the attach holds open.
            Err(crate::runtime::RuntimeError::NotFound(_)) => return true,
            Err(_) => return false,
        }
        tokio::select! {
            r = head.changed() => if r.is_err() { return false },
            _ = closed.wait_for(|c| *c) => return false,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Moves a monitor session's output to the client and the client's bytes to its stdin until
/// the process exits, the client leaves or types the detach keys.
async fn live<R, W>(
    mut session: crate::runtime::attach::AttachSession,
    rd: R,
    wr: &mut W,
    out: Output,
    name: &str,
    keys: Vec<u8>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let input = session.input();
    let _registered = input.as_ref().map(|tx| Registered::new(name, tx));
    let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = input.map(|tx| tokio::spawn(forward_stdin(rd, Some(tx), keys, detach_tx)));
    let mut reading = true;
    loop {
        let ev = tokio::select! {
            ev = session.next() => ev,
            // Ok: the detach keys; Err: stdin ended, output goes on.
            r = &mut detach_rx, if reading => match r {
                Ok(()) => break,
                Err(_) => { reading = false; continue }
            },
        };
        match ev {
            Some(ExecEvent::Output(stream, data)) => {
                let kind = match stream {
                    wire::ExecStream::Stdout => STDOUT,
                    wire::ExecStream::Stderr => STDERR,
                };
                if let Some(bytes) = out.encode(kind, &data)
                    && wr.write_all(&bytes).await.is_err()
                {
                    break;
                }
            }
            _ => break,
        }
    }
    session.detach();
    if let Some(r) = reader {
        r.abort();
    }
}

/// Sends the log from `mark` on until the container no longer runs and all is read.
async fn follow_log<W: AsyncWrite + Unpin>(
    m: &Manager,
    name: &str,
    mark: LogMark,
    wr: &mut W,
    out: Output,
) {
    let LogMark { path, mut file } = mark;
    let mut buf = vec![0u8; CHUNK];
    let mut last_check = Instant::now() - FOLLOW_POLL;
    let mut done = false;
    loop {
        if file.is_none() {
            // Not written yet (a first start), or rotated away: the file at the path now.
            file = tokio::fs::File::open(&path).await.ok();
        }
        let n = match file.as_mut() {
            Some(f) => f.read(&mut buf).await.unwrap_or(0),
            None => 0,
        };
        if n > 0 {
            if let Some(bytes) = out.encode(STDOUT, &buf[..n])
                && wr.write_all(&bytes).await.is_err()
            {
                return;
            }
            continue;
        }
        if done {
            return;
        }
        if rotated(&path, file.as_ref()).await {
            file = None;
            continue;
        }
        let wait = FOLLOW_POLL.saturating_sub(last_check.elapsed());
        tokio::time::sleep(wait).await;
        last_check = Instant::now();
        // One more read after it stopped: what it printed last.
        done = !m.is_running(name).await;
    }
}

/// Whether the log at `path` is no longer the open file (rotation made a new one).
async fn rotated(path: &FsPath, file: Option<&tokio::fs::File>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(f) = file else { return false };
    match (tokio::fs::metadata(path).await, f.metadata().await) {
        (Ok(p), Ok(o)) => p.ino() != o.ino(),
        _ => false,
    }
}

// ---- logs ----

#[derive(Debug, serde::Deserialize)]
pub struct LogsQuery {
    follow: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
    tail: Option<String>,
    timestamps: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(flatten)]
    _rest: HashMap<String, String>,
}

/// `GET /containers/{id}/logs`: the log (the last `tail` lines), and with `follow` what comes
/// until the container stops.
pub async fn container_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, DockerError> {
    let name = resolve(&state, &id).await?;
    let m = manager(&state)?.clone();
    let c = m.get(&name).await?;
    if truthy(q.timestamps.as_deref()) {
        return Err(DockerError(
            StatusCode::BAD_REQUEST,
            "timestamps: Corral's log does not record when each line was written".into(),
        ));
    }
    for (k, v) in [("since", &q.since), ("until", &q.until)] {
        if v.as_deref().is_some_and(|v| !v.is_empty() && v != "0") {
            return Err(DockerError(
                StatusCode::BAD_REQUEST,
                format!("{k}: Corral's log has no times to select by; use tail"),
            ));
        }
    }
    let tail = match q.tail.as_deref() {
        None | Some("" | "all") => None,
        Some(n) => match n.parse::<u32>() {
            Ok(n) if n <= crate::http::MAX_TAIL => Some(n as usize),
            _ => {
                return Err(DockerError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "tail {n:?}: all, or a number of lines up to {}",
                        crate::http::MAX_TAIL
                    ),
                ));
            }
        },
    };
    let out = Output {
        tty: c.spec.tty,
        // Corral's log is one stream: it is stdout.
        want: (
            truthy(q.stdout.as_deref()) || truthy(q.stderr.as_deref()),
            false,
        ),
    };
    let (files, _) = m.log_source(&name).await?;
    let (old, _) = crate::http::read_from(&files[0], 0).await;
    let (cur, offset) = crate::http::read_from(&files[1], 0).await;
    let mut all = old;
    all.extend_from_slice(&cur);
    let first = match tail {
        Some(n) => crate::http::tail_lines(&all, n).to_vec(),
        None => all,
    };
    let first = if first.is_empty() {
        Vec::new()
    } else {
        out.encode(STDOUT, &first).unwrap_or_default()
    };
    let kind = if out.tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    if !truthy(q.follow.as_deref()) {
        return Ok(([(header::CONTENT_TYPE, kind)], first).into_response());
    }
    // Follow: the open file from where the first part ended, through a bounded pipe.
    let mut file = tokio::fs::File::open(&files[1]).await.ok();
    if let Some(f) = file.as_mut()
        && f.seek(std::io::SeekFrom::Start(offset)).await.is_err()
    {
        file = None;
    }
    let mark = LogMark {
        path: files[1].clone(),
        file,
    };
    let (pipe_rd, mut pipe_wr) = tokio::io::duplex(CHUNK * 2);
    tokio::spawn(async move {
        if pipe_wr.write_all(&first).await.is_ok() {
            follow_log(&m, &name, mark, &mut pipe_wr, out).await;
        }
    });
    let body = Body::from_stream(reader_stream(pipe_rd));
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}

/// A byte stream over an `AsyncRead`: a response body fed through a bounded pipe.
pub(super) fn reader_stream<R>(r: R) -> reader::ReaderStream<R> {
    reader::ReaderStream::new(r)
}

/// What tokio-util's `ReaderStream` does: one small type rather than a dependency.
mod reader {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use axum::body::Bytes;
    use tokio::io::{AsyncRead, ReadBuf};

    pub struct ReaderStream<R> {
        inner: Option<R>,
        buf: Box<[u8]>,
    }

    impl<R> ReaderStream<R> {
        pub fn new(r: R) -> Self {
            ReaderStream {
                inner: Some(r),
                buf: vec![0u8; super::CHUNK].into_boxed_slice(),
            }
        }
    }

    impl<R: AsyncRead + Unpin> futures::Stream for ReaderStream<R> {
        type Item = std::io::Result<Bytes>;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let this = self.get_mut();
            let Some(r) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            let mut rb = ReadBuf::new(&mut this.buf);
            match Pin::new(r).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.inner = None;
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    this.inner = None;
                    Poll::Ready(None)
                }
                Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(Bytes::copy_from_slice(rb.filled())))),
            }
        }
    }
}

// ---- wait ----

#[derive(Debug, serde::Deserialize)]
pub struct WaitQuery {
    condition: Option<String>,
    #[serde(flatten)]
    _rest: HashMap<String, String>,
}

/// `POST /containers/{id}/wait?condition=not-running|next-exit|removed`: the status line at
/// once (the CLI starts the container only after it), `{"StatusCode": N}` when the condition
/// holds.
pub async fn container_wait(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Response, DockerError> {
    #[derive(PartialEq)]
    enum Until {
        NotRunning,
        NextExit,
        Removed,
    }
    let until = match q.condition.as_deref() {
        None | Some("" | "not-running") => Until::NotRunning,
        Some("next-exit") => Until::NextExit,
        Some("removed") => Until::Removed,
        Some(other) => {
            return Err(DockerError(
                StatusCode::BAD_REQUEST,
                format!("condition {other:?}: not-running, next-exit or removed"),
            ));
        }
    };
    let name = resolve(&state, &id).await?;
    let m = manager(&state)?.clone();
    let events = state.events().clone();
    // The cursor first, then the state: no exit can fall between them.
    let mut cursor = events.head();
    let c = m.get(&name).await?;
    let running = matches!(c.status.as_str(), "running" | "paused" | "creating");
    let (mut tx, rx) = tokio::sync::oneshot::channel::<Value>();
    if until == Until::NotRunning && !running {
        let _ = tx.send(json!({"StatusCode": c.exit_code.unwrap_or(0), "Error": null}));
    } else {
        let mut head = events.watch_head();
        let mut closed = events.watch_closed();
        let mut code = c.exit_code;
        tokio::spawn(async move {
            loop {
                let replay = match events.since(cursor) {
                    crate::events::Since::Replay { events, head } => {
                        cursor = head;
                        events
                    }
                    crate::events::Since::Reset { head } => {
                        // Missed events: the state decides.
                        cursor = head;
                        match m.get(&name).await {
                            Ok(c)
                                if until != Until::Removed
                                    && !matches!(c.status.as_str(), "running" | "paused") =>
                            {
                                let _ = tx.send(
                                    json!({"StatusCode": c.exit_code.unwrap_or(0), "Error": null}),
                                );
                                return;
                            }
                            Err(_) => {
                                let _ = tx
                                    .send(json!({"StatusCode": code.unwrap_or(0), "Error": null}));
                                return;
                            }
                            Ok(_) => Vec::new(),
                        }
                    }
                };
                for (_, ev) in replay {
                    let crate::events::Lifecycle::Container(e) = &*ev else {
                        continue;
                    };
                    if e.name != name {
                        continue;
                    }
                    let exit = matches!(e.action.as_str(), "stopped" | "died");
                    if exit {
                        code = e.exit_code.or(code);
                    }
                    if (exit && until != Until::Removed) || e.action == "removed" {
                        let _ = tx.send(json!({"StatusCode": code.unwrap_or(0), "Error": null}));
                        return;
                    }
                }
                tokio::select! {
                    r = head.changed() => if r.is_err() { return },
                    _ = closed.wait_for(|c| *c) => return,
                    () = tx.closed() => return,
                }
            }
        });
    }
    let body = futures::stream::once(async move {
        match rx.await {
            Ok(v) => Ok::<_, std::io::Error>(Bytes::from(format!("{v}\n"))),
            Err(_) => Err(std::io::Error::other("the daemon is shutting down")),
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

// ---- exec ----

/// One `docker exec`: created, then started once.
#[derive(Debug, Clone)]
struct ExecRecord {
    container: String,
    command: Vec<String>,
    env: Vec<String>,
    tty: bool,
    stdin: bool,
    want: (bool, bool),
    detach_keys: Vec<u8>,
    started: bool,
    running: bool,
    exit_code: Option<i32>,
    created: Instant,
}

fn execs() -> &'static Mutex<HashMap<String, ExecRecord>> {
    static E: OnceLock<Mutex<HashMap<String, ExecRecord>>> = OnceLock::new();
    E.get_or_init(Default::default)
}

fn exec_key(id: &str) -> String {
    format!("exec:{id}")
}

fn no_exec(id: &str) -> DockerError {
    DockerError(
        StatusCode::NOT_FOUND,
        format!("No such exec instance: {id}"),
    )
}

/// Exec fields Corral's exec does not have: refused when set.
const REFUSED_EXEC: &[&str] = &["User", "WorkingDir", "Privileged"];

/// `POST /containers/{id}/exec`: records the command; `201 {"Id"}`.
pub async fn exec_create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), DockerError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| DockerError(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?;
    let name = resolve(&state, &id).await?;
    let c = manager(&state)?.get(&name).await?;
    if c.status != "running" {
        return Err(DockerError(
            StatusCode::CONFLICT,
            format!("Container {} is not running", c.id),
        ));
    }
    for k in REFUSED_EXEC {
        if v.get(*k)
            .is_some_and(|x| !(x.is_null() || x == &json!("") || x == &json!(false)))
        {
            return Err(DockerError(
                StatusCode::BAD_REQUEST,
                format!("{k} is not supported by Corral's exec"),
            ));
        }
    }
    let list = |k: &str| -> Result<Vec<String>, DockerError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str().map(str::to_owned).ok_or_else(|| {
                        DockerError(StatusCode::BAD_REQUEST, format!("{k}: a list of strings"))
                    })
                })
                .collect(),
            Some(_) => Err(DockerError(
                StatusCode::BAD_REQUEST,
                format!("{k}: a list of strings"),
            )),
        }
    };
    let command = list("Cmd")?;
    if command.is_empty() {
        return Err(DockerError(
            StatusCode::BAD_REQUEST,
            "Cmd: no command given".into(),
        ));
    }
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let detach_keys = wire::term::parse_detach_keys(
        v.get("DetachKeys")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(wire::term::DEFAULT_DETACH_KEYS),
    )
    .map_err(|e| DockerError(StatusCode::BAD_REQUEST, format!("DetachKeys: {e}")))?;
    let rec = ExecRecord {
        container: c.name,
        command,
        env: list("Env")?,
        tty: flag("Tty"),
        stdin: flag("AttachStdin"),
        want: (flag("AttachStdout"), flag("AttachStderr")),
        detach_keys,
        started: false,
        running: false,
        exit_code: None,
        created: Instant::now(),
    };
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let exec_id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut all = lock(execs());
    if all.len() >= MAX_EXECS {
        // The oldest finished (or never started) ones make room.
        let mut old: Vec<(Instant, String)> = all
            .iter()
            .filter(|(_, r)| !r.running)
            .map(|(k, r)| (r.created, k.clone()))
            .collect();
        old.sort();
        for (_, k) in old.into_iter().take(MAX_EXECS / 4) {
            all.remove(&k);
        }
    }
    all.insert(exec_id.clone(), rec);
    Ok((StatusCode::CREATED, Json(json!({"Id": exec_id}))))
}

/// `POST /exec/{id}/start`: `{"Detach": true}` runs it in the background; otherwise the
/// connection is hijacked for its stdio. Audited when it starts and when it ends.
pub async fn exec_start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response, DockerError> {
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 64 * 1024)
        .await
        .map_err(|e| DockerError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let v: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| DockerError(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?
    };
    let detach = v.get("Detach").and_then(Value::as_bool).unwrap_or(false);
    let size = v
        .get("ConsoleSize")
        .and_then(Value::as_array)
        .and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)))
        .and_then(|(h, w)| Some((u16::try_from(h).ok()?, u16::try_from(w).ok()?)))
        .filter(|(h, w)| *h > 0 && *w > 0);
    let rec = {
        let mut all = lock(execs());
        let r = all.get_mut(&id).ok_or_else(|| no_exec(&id))?;
        if r.started {
            return Err(DockerError(
                StatusCode::CONFLICT,
                format!("exec {id} has already been started"),
            ));
        }
        r.started = true;
        r.running = true;
        r.clone()
    };
    let m = manager(&state)?.clone();
    let actor = root();
    let requested =
        json!({"command": rec.command, "tty": rec.tty, "stdin": rec.stdin, "via": "docker"});
    let term = crate::runtime::exec::Interactive {
        stdin: rec.stdin && !detach,
        tty: rec.tty,
        size,
    };
    let exec = wire::ExecRequest {
        command: rec.command.clone(),
        env: rec.env.clone(),
        timeout: None,
    };
    let session = match m.exec_interactive(&rec.container, exec, term).await {
        Ok(s) => s,
        Err(e) => {
            finish_exec(&id, None);
            let e = crate::http::AppError::from(e);
            audit::record(
                state.store(),
                audit::Event::new(&actor, "container.exec")
                    .target(crate::http::audit_target(&rec.container))
                    .after(requested)
                    .result(crate::http::outcome(&e))
                    .detail(e.to_string()),
            )
            .await;
            return Err(e.into());
        }
    };
    audit::record(
        state.store(),
        audit::Event::new(&actor, "container.exec.start")
            .target(crate::http::audit_target(&rec.container))
            .after(requested.clone()),
    )
    .await;
    let opened = Instant::now();
    let state2 = state.clone();
    let run = move |io: Option<TokioIo<hyper::upgrade::Upgraded>>| async move {
        let code = run_exec(session, io, &id, &rec).await;
        finish_exec(&id, code);
        let mut after = requested;
        after["seconds"] = json!(opened.elapsed().as_secs());
        if let Some(c) = code {
            after["exit_code"] = json!(c);
        }
        audit::record(
            state2.store(),
            audit::Event::new(&actor, "container.exec")
                .target(crate::http::audit_target(&rec.container))
                .after(after),
        )
        .await;
    };
    if detach {
        tokio::spawn(run(None));
        return Ok(StatusCode::OK.into_response());
    }
    hijack(&mut req, term.tty, move |io| run(Some(io)))
}

fn finish_exec(id: &str, code: Option<i32>) {
    if let Some(r) = lock(execs()).get_mut(id) {
        r.running = false;
        r.exit_code = code.or(Some(126));
    }
}

/// Runs an exec session to its end, with the client on `io` (none when detached); its exit
/// code.
async fn run_exec(
    mut session: crate::runtime::exec::ExecSession,
    io: Option<TokioIo<hyper::upgrade::Upgraded>>,
    id: &str,
    rec: &ExecRecord,
) -> Option<i32> {
    let Some(io) = io else {
        while let Some(ev) = session.next().await {
            match ev {
                ExecEvent::Exit { code, .. } => return Some(code),
                ExecEvent::Failed(_) => return None,
                ExecEvent::Output(..) => {}
            }
        }
        return None;
    };
    let (rd, mut wr) = tokio::io::split(io);
    let out = Output {
        tty: rec.tty,
        want: rec.want,
    };
    let input = session.input();
    let key = exec_key(id);
    let _registered = input.as_ref().map(|tx| Registered::new(&key, tx));
    let (gone_tx, mut gone_rx) = tokio::sync::oneshot::channel::<()>();
    let keys = rec.detach_keys.clone();
    let reader = tokio::spawn(forward_stdin(rd, input, keys, gone_tx));
    let mut code = None;
    let mut reading = true;
    loop {
        let ev = tokio::select! {
            ev = session.next() => ev,
            r = &mut gone_rx, if reading => {
                reading = false;
                if r.is_ok() {
                    // Detached: like a closed terminal, the command is ended.
                    session.kill();
                }
                continue;
            }
        };
        match ev {
            Some(ExecEvent::Output(stream, data)) => {
                let kind = match stream {
                    wire::ExecStream::Stdout => STDOUT,
                    wire::ExecStream::Stderr => STDERR,
                };
                if let Some(bytes) = out.encode(kind, &data)
                    && wr.write_all(&bytes).await.is_err()
                {
                    // The client left: hang up on the command.
                    session.kill();
                }
            }
            Some(ExecEvent::Exit { code: c, .. }) => {
                code = Some(c);
                break;
            }
            Some(ExecEvent::Failed(_)) | None => break,
        }
    }
    // The exit code is recorded before the client sees the end, so its inspect finds it.
    finish_exec(id, code);
    reader.abort();
    let _ = wr.shutdown().await;
    code
}

/// `GET /exec/{id}/json`.
pub async fn exec_inspect(Path(id): Path<String>) -> Result<Json<Value>, DockerError> {
    let all = lock(execs());
    let r = all.get(&id).ok_or_else(|| no_exec(&id))?;
    Ok(Json(json!({
        "ID": id,
        "Running": r.running,
        "ExitCode": r.exit_code,
        "ProcessConfig": {
            "tty": r.tty,
            "entrypoint": r.command.first(),
            "arguments": r.command.get(1..).unwrap_or_default(),
            "privileged": false,
            "user": "",
        },
        "OpenStdin": r.stdin,
        "OpenStdout": r.want.0,
        "OpenStderr": r.want.1,
        "CanRemove": !r.running,
        "ContainerID": r.container,
        "DetachKeys": "",
        "Pid": 0,
    })))
}

/// Copies a hijacked connection's input to a session's stdin, watching for the detach keys:
/// `Eof` when the client half-closes, `detached` fired at the keys (dropped otherwise). Without
/// `input` (no `-i`) the bytes are read and dropped until the client closes.
async fn forward_stdin<R>(
    mut rd: R,
    input: Option<mpsc::Sender<Frame>>,
    keys: Vec<u8>,
    detached: tokio::sync::oneshot::Sender<()>,
) where
    R: AsyncRead + Unpin,
{
    let mut detach = wire::term::DetachMatcher::new(keys);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => {
                if let Some(tx) = &input {
                    let _ = tx.send(Frame::Eof).await;
                }
                return;
            }
            Ok(n) => n,
        };
        let Some(tx) = &input else { continue };
        let (data, keys_seen) = detach.feed(&buf[..n]);
        if !data.is_empty() && tx.send(Frame::Data(data)).await.is_err() {
            return;
        }
        if keys_seen {
            let _ = detached.send(());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_stream_and_a_big_endian_length() {
        assert_eq!(frame(STDERR, b"hi"), [2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        let out = Output {
            tty: false,
            want: (true, false),
        };
        assert!(out.encode(STDERR, b"x").is_none());
        assert_eq!(out.encode(STDOUT, b"x").unwrap()[0], STDOUT);
        let raw = Output {
            tty: true,
            want: (true, false),
        };
        assert_eq!(raw.encode(STDOUT, b"x").unwrap(), b"x");
    }

    #[test]
    fn a_size_asked_for_early_is_a_sessions_first() {
        resize_key("early", 40, 120);
        let (tx, mut rx) = mpsc::channel(4);
        let r = Registered::new("early", &tx);
        assert_eq!(
            rx.try_recv().unwrap(),
            Frame::Resize {
                rows: 40,
                cols: 120
            }
        );
        resize_key("early", 50, 100);
        assert_eq!(
            rx.try_recv().unwrap(),
            Frame::Resize {
                rows: 50,
                cols: 100
            }
        );
        drop(r);
        assert!(!lock(terminals()).sizes.contains_key("early"));
    }
}
