//! The interactive routes: `GET /api/v1/containers/{name}/exec` and `/attach` upgraded to a
//! WebSocket speaking [`wire::term`] (stdin, stdout, stderr, resize, exit).
//!
//! Who may: the same as `POST …/exec` (operators of the container's team and admins; a viewer
//! gets 403, another team's container 404), checked before the upgrade. The guard checks
//! Host and Origin like every request, and for a browser session the CSRF token, which a page
//! sends as the subprotocol `corral-csrf.TOKEN` (see `auth::middleware`).
//!
//! One task per socket moves the session's output to the client (awaiting the socket: a
//! client that does not read stops the command, through the bounded session); another moves
//! the client's frames to the session's input. Memory per session is the session's bounded
//! queue plus one WebSocket message each way ([`MAX_MESSAGE`]). A client that goes away ends
//! an exec (hang-up, then kill) and detaches from an attach. The credentials are checked again
//! every [`RECHECK`]: a revoked token or ended session closes the socket. Each session is
//! audited when it opens and when it ends (who, where, what, how long, how it ended).

use std::time::{Duration, Instant};

use axum::{
    extract::{
        State,
        ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    response::Response,
};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use utoipa_axum::{router::OpenApiRouter, routes};
use wire::term::{ClientMessage, ServerMessage};

use super::{
    AppError, AppState,
    containers::{actionable, manager, redact_env, target},
};
use crate::{
    auth::{
        Actor, ApiPath, ApiQuery,
        audit::{self, Outcome},
    },
    runtime::{exec::Interactive, relay::Frame},
};

/// The largest WebSocket message a client may send.
const MAX_MESSAGE: usize = 256 * 1024;
/// How long an exec client has to send its start message.
const START_WITHIN: Duration = Duration::from_secs(10);
/// How often a session's credentials are checked again.
const RECHECK: Duration = Duration::from_secs(30);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(containers_exec_ws))
        .routes(routes!(containers_attach_ws))
}

/// An interactive exec over a WebSocket ([`wire::term`]): the first message starts the
/// command (`tty`, `stdin`, size), then stdin, output, resizes and the exit code flow.
#[utoipa::path(get, path = "/containers/{name}/exec", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol of wire::term"),
        (status = 400, description = "Not a WebSocket upgrade request", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF token", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "Not running", body = wire::ApiError),
    ))]
async fn containers_exec_ws(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let ws = ws.map_err(not_upgrade)?;
    let c = actionable(&state, &actor, &name, "container.exec").await?;
    if c.status != "running" {
        return Err(AppError::Conflict(format!(
            "container {} is {}, not running",
            c.name, c.status
        )));
    }
    Ok(upgrade(ws).on_upgrade(move |socket| exec_socket(state, actor, c.name, socket)))
}

/// Attaches to the container's own process over a WebSocket ([`wire::term`]): its terminal
/// (`tty`) or its stdout and stderr, and its stdin when it was created with `open_stdin`.
/// `logs=true` first replays what the terminal printed recently.
#[utoipa::path(get, path = "/containers/{name}/attach", tag = "containers",
    params(
        ("name" = String, Path, description = "Container name or id"),
        ("logs" = Option<bool>, Query, description = "Replay the recent output first"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol of wire::term"),
        (status = 400, description = "Not a WebSocket upgrade request", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF token", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "Not running", body = wire::ApiError),
    ))]
async fn containers_attach_ws(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<AttachQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let ws = ws.map_err(not_upgrade)?;
    let c = actionable(&state, &actor, &name, "container.attach").await?;
    let attach = manager(&state)?
        .attach(&c.name, q.logs.unwrap_or(false))
        .await
        .map_err(AppError::from)?;
    Ok(upgrade(ws).on_upgrade(move |socket| attach_socket(state, actor, c.name, attach, socket)))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachQuery {
    logs: Option<bool>,
}

fn not_upgrade(e: WebSocketUpgradeRejection) -> AppError {
    AppError::Invalid {
        field: "upgrade".into(),
        message: format!(
            "this route speaks WebSocket (Connection: upgrade, Upgrade: websocket, \
             Sec-WebSocket-Version: 13): {e}"
        ),
    }
}

fn upgrade(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.protocols([wire::term::SUBPROTOCOL])
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
}

async fn send_control(
    socket: &mut futures::stream::SplitSink<WebSocket, Message>,
    m: &ServerMessage,
) -> bool {
    let text = serde_json::to_string(m).unwrap_or_default();
    socket.send(Message::Text(text.into())).await.is_ok()
}

/// Reads the client's messages until the socket closes: stdin frames and resizes go to
/// `input` (awaiting it: a command that does not read its stdin stops the client), stdin's
/// end drops it. Signals `done` when the socket is gone.
async fn read_client(
    mut stream: futures::stream::SplitStream<WebSocket>,
    mut input: Option<mpsc::Sender<Frame>>,
    done: oneshot::Sender<()>,
) {
    while let Some(msg) = stream.next().await {
        let Ok(msg) = msg else { break };
        match msg {
            Message::Binary(b) => {
                let Some((&wire::term::STDIN, data)) = b.split_first() else {
                    continue;
                };
                let Some(tx) = &input else { continue };
                for chunk in data.chunks(crate::runtime::relay::BUF) {
                    if tx.send(Frame::Data(chunk.to_vec())).await.is_err() {
                        input = None;
                        break;
                    }
                }
            }
            Message::Text(t) => match serde_json::from_str::<ClientMessage>(&t) {
                Ok(ClientMessage::Resize { rows, cols }) => {
                    if let Some(tx) = &input {
                        let _ = tx.send(Frame::Resize { rows, cols }).await;
                    }
                }
                Ok(ClientMessage::Eof) => {
                    if let Some(tx) = input.take() {
                        let _ = tx.send(Frame::Eof).await;
                    }
                }
                // A second start, or something unknown: ignored.
                _ => {}
            },
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    let _ = done.send(());
}

/// The fields of an exec's start message.
struct Start {
    command: Vec<String>,
    env: Vec<String>,
    tty: bool,
    stdin: bool,
    rows: Option<u16>,
    cols: Option<u16>,
    timeout: Option<u64>,
}

/// Waits for the start message of an exec.
async fn read_start(
    stream: &mut futures::stream::SplitStream<WebSocket>,
) -> Result<Start, AppError> {
    let first = tokio::time::timeout(START_WITHIN, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) => return Some(t),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| AppError::Invalid {
        field: "start".into(),
        message: format!(
            "the first message must be a start message, within {} s",
            START_WITHIN.as_secs()
        ),
    })?;
    let m: ClientMessage = serde_json::from_str(&first).map_err(|e| AppError::Invalid {
        field: "start".into(),
        message: format!("not a start message: {e}"),
    })?;
    match m {
        ClientMessage::Start {
            command,
            env,
            tty,
            stdin,
            rows,
            cols,
            timeout,
        } => Ok(Start {
            command,
            env,
            tty,
            stdin,
            rows,
            cols,
            timeout,
        }),
        _ => Err(AppError::Invalid {
            field: "start".into(),
            message: "the first message must be {\"type\":\"start\",\"command\":[...]}".into(),
        }),
    }
}

async fn exec_socket(state: AppState, actor: Actor, name: String, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let opened = Instant::now();
    let started = async {
        let Start {
            command,
            env,
            tty,
            stdin,
            rows,
            cols,
            timeout,
        } = read_start(&mut stream).await?;
        if command.iter().any(|a| a.contains('\0')) {
            return Err(AppError::Invalid {
                field: "command".into(),
                message: "must not contain NUL bytes".into(),
            });
        }
        let requested = json!({
            "command": command, "env": redact_env(&env), "tty": tty, "stdin": stdin,
            "via": "websocket",
        });
        let req = wire::ExecRequest {
            command,
            env,
            timeout,
        };
        let term = Interactive {
            stdin,
            tty,
            size: rows.zip(cols),
        };
        let session = manager(&state)?.exec_interactive(&name, req, term).await?;
        Ok((session, requested, tty))
    }
    .await;
    let (mut session, requested, tty) = match started {
        Ok(s) => s,
        Err(e) => {
            let ev = audit::Event::new(&actor, "container.exec")
                .target(target(&name))
                .result(super::containers::outcome(&e))
                .detail(e.to_string());
            audit::record(state.store(), ev).await;
            let _ = send_control(&mut sink, &ServerMessage::Error { error: e.body() }).await;
            let _ = sink.close().await;
            return;
        }
    };
    let input = session.input();
    let none = || {
        Step::Failed(AppError::internal(
            "exec",
            std::io::Error::other("the session ended without an exit code"),
        ))
    };
    let talk = Talk {
        state: &state,
        actor: &actor,
        name: &name,
        action: "container.exec",
        opened,
        tty,
    };
    talk.run(requested, sink, stream, &mut session, input, none)
        .await;
}

/// One socket's session once it runs: audited when it opens (`ACTION.start`) and when it
/// ends (`ACTION`, with its seconds and outcome).
struct Talk<'a> {
    state: &'a AppState,
    actor: &'a Actor,
    name: &'a str,
    action: &'static str,
    opened: Instant,
    tty: bool,
}

impl Talk<'_> {
    async fn run<S: Source>(
        self,
        requested: Value,
        mut sink: futures::stream::SplitSink<WebSocket, Message>,
        stream: futures::stream::SplitStream<WebSocket>,
        session: &mut S,
        input: Option<mpsc::Sender<Frame>>,
        on_none: impl Fn() -> Step,
    ) {
        audit::record(
            self.state.store(),
            audit::Event::new(self.actor, &format!("{}.start", self.action))
                .target(target(self.name))
                .after(requested.clone()),
        )
        .await;
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(read_client(stream, input, done_tx));
        let _ = send_control(&mut sink, &ServerMessage::Started { tty: self.tty }).await;
        let end = pump(self.state, self.actor, &mut sink, done_rx, session, on_none).await;
        finish_audit(
            self.state,
            self.actor,
            self.action,
            self.name,
            requested,
            self.opened,
            &end,
        )
        .await;
    }
}

/// How a socket's session went.
struct End {
    code: Option<i32>,
    timed_out: bool,
    client_gone: bool,
    revoked: bool,
    error: Option<AppError>,
}

enum Step {
    Output(u8, Vec<u8>),
    Exit(i32, bool),
    Failed(AppError),
    Detached,
}

fn step_of(ev: crate::runtime::exec::ExecEvent) -> Step {
    use crate::runtime::exec::ExecEvent;
    match ev {
        ExecEvent::Output(stream, data) => Step::Output(
            match stream {
                wire::ExecStream::Stdout => wire::term::STDOUT,
                wire::ExecStream::Stderr => wire::term::STDERR,
            },
            data,
        ),
        ExecEvent::Exit { code, timed_out } => Step::Exit(code, timed_out),
        ExecEvent::Failed(e) => Step::Failed(AppError::from(e)),
    }
}

/// A session whose events [`pump`] forwards: an exec or an attach.
trait Source: Send {
    fn next_event(
        &mut self,
    ) -> impl std::future::Future<Output = Option<crate::runtime::exec::ExecEvent>> + Send;
    /// The client went away or lost its rights: an exec kills its command, an attach detaches.
    fn end(&mut self);
}

impl Source for crate::runtime::attach::AttachSession {
    async fn next_event(&mut self) -> Option<crate::runtime::exec::ExecEvent> {
        self.next().await
    }
    fn end(&mut self) {
        self.detach();
    }
}

impl Source for crate::runtime::exec::ExecSession {
    async fn next_event(&mut self) -> Option<crate::runtime::exec::ExecEvent> {
        self.next().await
    }
    fn end(&mut self) {
        self.kill();
    }
}

/// Forwards the session's output to the socket until its exit, the client leaving, or its
/// credentials ending; after the client left, waits for the exit without sending.
async fn pump<S: Source>(
    state: &AppState,
    actor: &Actor,
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    mut done: oneshot::Receiver<()>,
    session: &mut S,
    on_none: impl Fn() -> Step,
) -> End {
    let mut end = End {
        code: None,
        timed_out: false,
        client_gone: false,
        revoked: false,
        error: None,
    };
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    loop {
        tokio::select! {
            ev = session.next_event() => match ev.map_or_else(&on_none, step_of) {
                Step::Output(ch, data) => {
                    if end.client_gone {
                        continue;
                    }
                    if sink.send(Message::Binary(wire::term::frame(ch, &data).into())).await.is_err() {
                        end.client_gone = true;
                        session.end();
                    }
                }
                Step::Exit(code, timed_out) => {
                    end.code = Some(code);
                    end.timed_out = timed_out;
                    if !end.client_gone {
                        let _ = send_control(sink, &ServerMessage::Exit { code, timed_out }).await;
                    }
                    break;
                }
                Step::Failed(e) => {
                    if !end.client_gone {
                        let _ = send_control(sink, &ServerMessage::Error { error: e.body() }).await;
                    }
                    end.error = Some(e);
                    break;
                }
                Step::Detached => break,
            },
            _ = &mut done, if !end.client_gone => {
                end.client_gone = true;
                session.end();
            }
            _ = recheck.tick(), if !end.client_gone => {
                if !matches!(crate::auth::middleware::recheck(state, actor).await, Ok(Some(_))) {
                    end.revoked = true;
                    end.client_gone = true;
                    let _ = send_control(sink, &ServerMessage::Error {
                        error: wire::ApiError {
                            code: "unauthenticated".into(),
                            message: "your session or token ended".into(),
                            field: None,
                        },
                    }).await;
                    session.end();
                }
            }
        }
    }
    let _ = sink.close().await;
    end
}

async fn finish_audit(
    state: &AppState,
    actor: &Actor,
    action: &str,
    name: &str,
    mut after: Value,
    opened: Instant,
    end: &End,
) {
    if let Value::Object(o) = &mut after {
        o.insert("seconds".into(), json!(opened.elapsed().as_secs()));
        o.insert("client_gone".into(), json!(end.client_gone));
        if let Some(c) = end.code {
            o.insert("exit_code".into(), json!(c));
        }
        if end.timed_out {
            o.insert("timed_out".into(), json!(true));
        }
        if end.revoked {
            o.insert("credentials_ended".into(), json!(true));
        }
    }
    let mut ev = audit::Event::new(actor, action)
        .target(target(name))
        .after(after);
    if let Some(e) = &end.error {
        ev = ev
            .result(super::containers::outcome(e))
            .detail(e.to_string());
    } else {
        ev = ev.result(Outcome::Ok);
    }
    audit::record(state.store(), ev).await;
}

async fn attach_socket(
    state: AppState,
    actor: Actor,
    name: String,
    mut attach: crate::runtime::attach::AttachSession,
    socket: WebSocket,
) {
    let (sink, stream) = socket.split();
    let opened = Instant::now();
    let requested = json!({"tty": attach.tty(), "stdin": attach.has_stdin(), "via": "websocket"});
    let input = attach.input();
    let talk = Talk {
        state: &state,
        actor: &actor,
        name: &name,
        action: "container.attach",
        opened,
        tty: attach.tty(),
    };
    // Without an exit code: the client detached, or the monitor went away.
    talk.run(requested, sink, stream, &mut attach, input, || {
        Step::Detached
    })
    .await;
}
