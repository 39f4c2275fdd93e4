//! Container actions through a hub (issue 19): the hub lists a host's containers and starts,
//! stops, restarts, kills, freezes, thaws or removes them by calling that host's own API, as
//! an admin of the host, with a token an admin of the hub gave it.
//!
//! - `PUT /api/v1/fleet/hosts/{host}/token` (admin): the hub asks the host who the token is
//!   (`GET /api/v1/me`); only an admin's is kept, pinned to the URL it was checked against.
//!   It is never shown again. `DELETE` forgets it.
//! - `GET /api/v1/fleet/hosts/{host}/containers[?all=true]`: the host's containers, of the
//!   caller's teams (every team for an admin of the hub).
//! - `POST /api/v1/fleet/hosts/{host}/containers/{name}/{action}`: start, stop, restart, kill,
//!   freeze, thaw (pause and unpause as docker's aliases); `DELETE …/containers/{name}`;
//!   `GET …/containers/{name}/logs?tail=N`: the last lines (viewers too; not followed).
//!
//! Who may act is decided here, by the hub's account of the caller and the container's team
//! as the host reports it (teams are fleet-wide; accounts are each host's): an operator of
//! the team or an admin, as on the host itself. The hub audits each action as
//! `fleet.container.<action>` with the caller; the host audits it under the token's account.
//!
//! The hub reaches a host only by the URL the host advertises (`--advertise-url`): https,
//! verified against `--fleet-ca` (the system's CAs by default), or http to a loopback
//! address. A token goes only to the URL it was checked against: a host advertising another
//! URL later (or another host claiming its id) gets 409 `host_url_changed` until an admin sets
//! the token again. Each forwarded request has [`DEADLINE`] in all, inside the daemon's 30 s.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use hyper::Method;
use rusqlite::OptionalExtension;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppError, AppState,
    billing::name_param,
    fleet::{hub_of, unavailable},
};
use crate::{
    auth::{
        Actor, ApiJson, ApiPath, ApiQuery, AuthError, Role,
        audit::{self, Outcome},
        db,
    },
    client::{Client, ClientError, Host},
    ledger::hub,
    metering::calendar,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(token_put, token_delete))
        .routes(routes!(host_containers))
        .routes(routes!(host_container_remove))
        .routes(routes!(host_container_action))
        .routes(routes!(host_container_logs))
}

/// The time a forwarded request may take in all (the container's lookup and the action).
pub const DEADLINE: Duration = Duration::from_secs(25);
/// The longest stop timeout a hub forwards: the stop must be answered within [`DEADLINE`].
pub const MAX_STOP_TIMEOUT: u64 = 15;

/// A forwarded request's failure: the hub's own, or the host's error passed through.
#[derive(Debug)]
enum FwdError {
    App(AppError),
    Host {
        status: StatusCode,
        body: wire::ApiError,
    },
}

impl From<AppError> for FwdError {
    fn from(e: AppError) -> Self {
        FwdError::App(e)
    }
}

impl From<AuthError> for FwdError {
    fn from(e: AuthError) -> Self {
        FwdError::App(e.into())
    }
}

impl IntoResponse for FwdError {
    fn into_response(self) -> Response {
        match self {
            FwdError::App(e) => e.into_response(),
            FwdError::Host { status, body } => (status, Json(body)).into_response(),
        }
    }
}

impl FwdError {
    fn outcome(&self) -> Outcome {
        match self {
            FwdError::App(AppError::Auth(AuthError::Forbidden(_))) => Outcome::Denied,
            FwdError::App(AppError::Internal { .. }) => Outcome::Error,
            _ => Outcome::Failed,
        }
    }

    fn message(&self) -> String {
        match self {
            FwdError::App(e) => e.to_string(),
            FwdError::Host { body, .. } => body.message.clone(),
        }
    }
}

fn refused(status: StatusCode, code: &'static str, message: String) -> FwdError {
    FwdError::App(AppError::Refused {
        status,
        code,
        message,
    })
}

/// A host's API as the hub may use it.
struct Target {
    host: String,
    url: String,
    client: Client,
    deadline: Instant,
}

/// The URL `host` advertises, checked: 404 for a host the fleet does not know, 409 for one
/// that advertises no usable URL.
async fn advertised(state: &AppState, host: &str) -> Result<String, FwdError> {
    name_param("host", host)?;
    let l = hub_of(state)?;
    let pg = l.client().await.map_err(unavailable)?;
    let url = match hub::host_url(&pg, host).await.map_err(unavailable)? {
        None => {
            return Err(AppError::NotFound(format!(
                "no host {host:?} in the fleet: `corral fleet hosts` lists them"
            ))
            .into());
        }
        Some(None) => {
            return Err(refused(
                StatusCode::CONFLICT,
                "no_api_url",
                format!(
                    "host {host:?} advertises no API: start it with --advertise-url \
                     https://NAME:PORT (and --tls-cert/--tls-key) to reach it from the hub"
                ),
            ));
        }
        Some(Some(url)) => url,
    };
    usable_url(host, &url)?;
    Ok(url)
}

/// https anywhere, http only to a loopback address (a token must not cross a network in the
/// clear), never a unix socket.
fn usable_url(host: &str, url: &str) -> Result<Host, FwdError> {
    let bad = |why: &str| {
        refused(
            StatusCode::CONFLICT,
            "insecure_api_url",
            format!("host {host:?} advertises {url:?}, which the hub does not use: {why}"),
        )
    };
    match Host::parse(url) {
        Ok(h @ Host::Tls(_)) => Ok(h),
        Ok(Host::Tcp(addr)) => {
            let loopback = addr
                .parse::<std::net::SocketAddr>()
                .map(|a| a.ip().is_loopback())
                .unwrap_or(false);
            if loopback {
                Ok(Host::Tcp(addr))
            } else {
                Err(bad(
                    "http only to a loopback address; give the host --tls-cert/--tls-key and \
                     an https:// --advertise-url",
                ))
            }
        }
        Ok(Host::Unix(_)) => Err(bad("a unix socket is not reachable from a hub")),
        Err(_) => Err(bad("expected https://HOST:PORT")),
    }
}

fn client_for(state: &AppState, url: &str, token: String) -> Result<Client, FwdError> {
    let h = Host::parse(url).map_err(|e| AppError::internal("the host's URL", e))?;
    let ca = state.ledger().map(|l| l.config().fleet_ca.clone());
    Ok(Client::new(h, Some(token)).with_tls_ca(ca))
}

/// The host, its URL and the hub's token for it: 409 `no_host_token` without one,
/// 409 `host_url_changed` when the host now advertises another URL than the token was
/// checked against.
async fn target(state: &AppState, host: &str) -> Result<Target, FwdError> {
    let deadline = Instant::now() + DEADLINE;
    let url = advertised(state, host).await?;
    let h = host.to_owned();
    let stored = db::run(state.store(), move |conn| {
        conn.query_row(
            "SELECT api_url, token FROM fleet_host_tokens WHERE host_id = ?1",
            [&h],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(AuthError::from)
    })
    .await?;
    let Some((pinned, token)) = stored else {
        return Err(refused(
            StatusCode::CONFLICT,
            "no_host_token",
            format!(
                "the hub holds no token for host {host:?}: an admin sets one with \
                 `corral fleet token set {host}` (a token of an admin of that host)"
            ),
        ));
    };
    if pinned != url {
        return Err(refused(
            StatusCode::CONFLICT,
            "host_url_changed",
            format!(
                "host {host:?} now advertises {url:?}, not {pinned:?} where its token was \
                 checked: the hub sends the token nowhere else; set it again with \
                 `corral fleet token set {host}` if the move is expected"
            ),
        ));
    }
    Ok(Target {
        host: host.to_owned(),
        client: client_for(state, &url, token)?,
        url,
        deadline,
    })
}

impl Target {
    /// One request to the host within the deadline; the host's errors become the hub's.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::body::Bytes, FwdError> {
        let call = self.client.request(method, path, body);
        match tokio::time::timeout_at(self.deadline, call).await {
            Err(_) => Err(refused(
                StatusCode::GATEWAY_TIMEOUT,
                "host_timeout",
                format!(
                    "host {:?} did not answer within {} s; the action may still complete \
                     there",
                    self.host,
                    DEADLINE.as_secs()
                ),
            )),
            Ok(Ok((_, bytes))) => Ok(bytes),
            Ok(Err(e)) => Err(host_error(&self.host, &self.url, e)),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, FwdError> {
        let bytes = self.call(Method::GET, path, None).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            refused(
                StatusCode::BAD_GATEWAY,
                "host_bad_answer",
                format!(
                    "host {:?} answered {path} with something else than expected: {e}",
                    self.host
                ),
            )
        })
    }
}

/// The message of an error with its sources (a TLS refusal's reason is two levels down).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn host_error(host: &str, url: &str, e: ClientError) -> FwdError {
    match e {
        ClientError::Api {
            status: StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN,
            message,
            ..
        } => refused(
            StatusCode::BAD_GATEWAY,
            "host_token_refused",
            format!(
                "host {host:?} refused the hub's token ({message}): an admin of the hub sets a \
                 new one with `corral fleet token set {host}`"
            ),
        ),
        ClientError::Api {
            status,
            code,
            message,
            field,
        } if !status.is_server_error() => FwdError::Host {
            status,
            body: wire::ApiError {
                code,
                message: format!("host {host:?}: {message}"),
                field,
            },
        },
        ClientError::Api {
            status, message, ..
        } => refused(
            StatusCode::BAD_GATEWAY,
            "host_error",
            format!("host {host:?} failed ({status}): {message}"),
        ),
        e @ (ClientError::Connect { .. } | ClientError::Http { .. }) => refused(
            StatusCode::BAD_GATEWAY,
            "host_unreachable",
            format!("cannot reach host {host:?} at {url}: {}", chain(&e)),
        ),
        e @ (ClientError::NoTlsCa { .. } | ClientError::BadTlsCa { .. }) => refused(
            StatusCode::BAD_GATEWAY,
            "fleet_ca_unusable",
            format!(
                "cannot verify host {host:?}: {} (the hub's --fleet-ca)",
                chain(&e)
            ),
        ),
        e @ (ClientError::BadHost(_) | ClientError::Decode { .. }) => refused(
            StatusCode::BAD_GATEWAY,
            "host_bad_answer",
            format!("host {host:?} at {url}: {}", chain(&e)),
        ),
    }
}

/// Percent-encodes nothing: names and ids passed on are checked to be [A-Za-z0-9_.-].
fn container_param(name: &str) -> Result<(), AppError> {
    if crate::runtime::manager::valid_name(name) {
        Ok(())
    } else {
        Err(AppError::Invalid {
            field: "name".into(),
            message: format!(
                "invalid container {name:?}: allowed is a name or id, 1-64 of [A-Za-z0-9_.-], \
                 starting alphanumeric"
            ),
        })
    }
}

async fn record(
    state: &AppState,
    actor: &Actor,
    action: &str,
    target: String,
    before: Option<Value>,
    r: Result<Option<Value>, &FwdError>,
) {
    let mut ev = audit::Event::new(actor, action).target(target);
    if let Some(b) = before {
        ev = ev.before(b);
    }
    ev = match r {
        Ok(Some(after)) => ev.after(after),
        Ok(None) => ev,
        Err(e) => ev.result(e.outcome()).detail(e.message()),
    };
    audit::record(state.store(), ev).await;
}

/// Give the hub an API token of an admin of the host, to act on the host's containers.
#[utoipa::path(put, path = "/fleet/hosts/{host}/token", tag = "fleet",
    params(("host" = String, Path, description = "The host's id (`--host-id`)", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")),
    request_body = wire::fleet::HostToken,
    responses(
        (status = 200, description = "Checked with the host and kept", body = wire::fleet::HostTokenState),
        (status = 400, description = "Malformed host or token, or the host refused it or does not call it an admin's", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin", body = wire::ApiError),
        (status = 404, description = "Not a hub (code not_a_hub), or no such host", body = wire::ApiError),
        (status = 409, description = "The host advertises no usable API (no_api_url, insecure_api_url)", body = wire::ApiError),
        (status = 502, description = "The host is unreachable (host_unreachable)", body = wire::ApiError),
        (status = 503, description = "The ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
        (status = 504, description = "The host did not answer in time (host_timeout)", body = wire::ApiError),
    ))]
async fn token_put(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(host): ApiPath<String>,
    ApiJson(req): ApiJson<wire::fleet::HostToken>,
) -> Result<Json<wire::fleet::HostTokenState>, FwdError> {
    const ACTION: &str = "fleet.host.token.set";
    let r = token_put_inner(&state, &actor, &host, req).await;
    let after = r
        .as_ref()
        .map(|s| Some(json!({"api_url": s.api_url, "user": s.user})));
    record(&state, &actor, ACTION, host, None, after).await;
    r.map(Json)
}

async fn token_put_inner(
    state: &AppState,
    actor: &Actor,
    host: &str,
    req: wire::fleet::HostToken,
) -> Result<wire::fleet::HostTokenState, FwdError> {
    actor.require_admin()?;
    let token = req.token.trim().to_owned();
    if token.is_empty() || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::Invalid {
            field: "token".into(),
            message: "expected an API token of the host (`corral token create` there): 1-512 \
                      printable characters without spaces"
                .into(),
        }
        .into());
    }
    let url = advertised(state, host).await?;
    let t = Target {
        host: host.to_owned(),
        client: client_for(state, &url, token.clone())?,
        url: url.clone(),
        deadline: Instant::now() + DEADLINE,
    };
    let me: wire::Me = match t.get("/api/v1/me").await {
        Err(FwdError::App(AppError::Refused {
            code: "host_token_refused",
            ..
        })) => {
            return Err(AppError::Invalid {
                field: "token".into(),
                message: format!("host {host:?} does not accept this token"),
            }
            .into());
        }
        r => r?,
    };
    if me.role != Role::Admin {
        return Err(AppError::Invalid {
            field: "token".into(),
            message: format!(
                "the token is {:?}'s, {} on host {host:?}: the hub needs an admin's token",
                me.name, me.role
            ),
        }
        .into());
    }
    let now = crate::auth::now_secs();
    let state_row = wire::fleet::HostTokenState {
        host_id: host.to_owned(),
        api_url: url.clone(),
        user: me.name.clone(),
        set_by: actor.name.clone(),
        set_at: calendar::format_time(now),
    };
    let (h, user, by) = (host.to_owned(), me.name, actor.name.clone());
    db::run(state.store(), move |conn| {
        conn.execute(
            "INSERT INTO fleet_host_tokens (host_id, api_url, token, host_user, set_by, set_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (host_id) DO UPDATE SET api_url = excluded.api_url,
               token = excluded.token, host_user = excluded.host_user,
               set_by = excluded.set_by, set_at = excluded.set_at",
            rusqlite::params![h, url, token, user, by, now],
        )
        .map(drop)
        .map_err(AuthError::from)
    })
    .await?;
    Ok(state_row)
}

/// Forget the hub's token for a host: its containers are no longer reachable through the hub.
#[utoipa::path(delete, path = "/fleet/hosts/{host}/token", tag = "fleet",
    params(("host" = String, Path, description = "The host's id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 400, description = "Malformed host", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin", body = wire::ApiError),
        (status = 404, description = "Not a hub (code not_a_hub), or no token for that host", body = wire::ApiError),
    ))]
async fn token_delete(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(host): ApiPath<String>,
) -> Result<StatusCode, FwdError> {
    const ACTION: &str = "fleet.host.token.remove";
    let r = async {
        actor.require_admin()?;
        name_param("host", &host)?;
        hub_of(&state)?;
        let h = host.clone();
        let gone = db::run(state.store(), move |conn| {
            conn.execute("DELETE FROM fleet_host_tokens WHERE host_id = ?1", [&h])
                .map_err(AuthError::from)
        })
        .await?;
        if gone == 0 {
            return Err(
                AppError::NotFound(format!("the hub holds no token for host {host:?}")).into(),
            );
        }
        Ok::<_, FwdError>(StatusCode::NO_CONTENT)
    }
    .await;
    record(
        &state,
        &actor,
        ACTION,
        host.clone(),
        None,
        r.as_ref().map(|_| None),
    )
    .await;
    r
}

/// The hosts the hub holds a token for (the host list's `token_set`).
pub(super) async fn hosts_with_token(state: &AppState) -> Result<Vec<String>, AuthError> {
    db::run(state.store(), |conn| {
        let mut stmt = conn.prepare("SELECT host_id FROM fleet_host_tokens")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Also exited and created containers (default: running and paused only).
    #[serde(default)]
    all: bool,
}

/// A host's containers, of the caller's teams (every team for an admin), read from the host.
#[utoipa::path(get, path = "/fleet/hosts/{host}/containers", tag = "fleet",
    params(("host" = String, Path, description = "The host's id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"), ListQuery),
    responses(
        (status = 200, description = "The host's containers the caller may see", body = Vec<wire::Container>),
        (status = 400, description = "Malformed host or query", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 404, description = "Not a hub (code not_a_hub), or no such host", body = wire::ApiError),
        (status = 409, description = "No token or no usable API for that host (no_host_token, no_api_url, insecure_api_url, host_url_changed)", body = wire::ApiError),
        (status = 502, description = "The host is unreachable or refused the token (host_unreachable, host_token_refused)", body = wire::ApiError),
        (status = 503, description = "The ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
        (status = 504, description = "The host did not answer in time (host_timeout)", body = wire::ApiError),
    ))]
async fn host_containers(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(host): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<wire::Container>>, FwdError> {
    let t = target(&state, &host).await?;
    let path = if q.all {
        "/api/v1/containers?all=true"
    } else {
        "/api/v1/containers"
    };
    let mut list: Vec<wire::Container> = t.get(path).await?;
    let scope = actor.team_scope();
    list.retain(|c| scope.contains(&c.team));
    Ok(Json(list))
}

/// The container `name` of the host, if the caller may see it: 404 when it is of a team the
/// caller cannot see (as the host itself answers).
async fn visible(t: &Target, actor: &Actor, name: &str) -> Result<wire::Container, FwdError> {
    container_param(name)?;
    let c: wire::Container = t.get(&format!("/api/v1/containers/{name}")).await?;
    if !actor.team_scope().contains(&c.team) {
        return Err(
            AppError::NotFound(format!("host {:?}: no such container: {name}", t.host)).into(),
        );
    }
    Ok(c)
}

/// [`visible`], and the caller may act on it: 403 for a viewer.
async fn actionable(t: &Target, actor: &Actor, name: &str) -> Result<wire::Container, FwdError> {
    let c = visible(t, actor, name).await?;
    actor.can_act_on_team(&c.team)?;
    Ok(c)
}

/// The most log lines one request through a hub brings (the hub holds them whole).
const MAX_FORWARDED_TAIL: u32 = 10_000;
const DEFAULT_FORWARDED_TAIL: u32 = 200;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    /// The last N lines: 1-10000, default 200.
    #[param(minimum = 1, maximum = 10000)]
    tail: Option<u32>,
}

/// The last lines of a host's container's stdout and stderr, read through the hub (viewers
/// too; not followed: `corral logs -f` on the host streams).
#[utoipa::path(get, path = "/fleet/hosts/{host}/containers/{name}/logs", tag = "fleet",
    params(
        ("host" = String, Path, description = "The host's id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
        ("name" = String, Path, description = "Container name or id on that host"),
        LogsQuery,
    ),
    responses(
        (status = 200, description = "The log's last lines", content_type = "text/plain", body = String),
        (status = 400, description = "Malformed host, name or tail", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
        (status = 404, description = "Not a hub (code not_a_hub), no such host, or no such container of the caller's teams", body = wire::ApiError),
        (status = 409, description = "No token or usable API for the host", body = wire::ApiError),
        (status = 502, description = "The host is unreachable or refused the token (host_unreachable, host_token_refused)", body = wire::ApiError),
        (status = 503, description = "The ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
        (status = 504, description = "The host did not answer in time (host_timeout)", body = wire::ApiError),
    ))]
async fn host_container_logs(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath((host, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response, FwdError> {
    let tail = q.tail.unwrap_or(DEFAULT_FORWARDED_TAIL);
    if !(1..=MAX_FORWARDED_TAIL).contains(&tail) {
        return Err(AppError::Invalid {
            field: "tail".into(),
            message: format!(
                "tail {tail}: through a hub 1-{MAX_FORWARDED_TAIL} lines (all of them: `corral \
                 logs` on the host)"
            ),
        }
        .into());
    }
    let t = target(&state, &host).await?;
    let c = visible(&t, &actor, &name).await?;
    let bytes = t
        .call(
            Method::GET,
            &format!("/api/v1/containers/{}/logs?tail={tail}", c.id),
            None,
        )
        .await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        bytes,
    )
        .into_response())
}

fn status_of(c: &wire::Container) -> Value {
    json!({"status": c.status, "exit_code": c.exit_code})
}

/// The action of the path, docker's pause/unpause spelled freeze/thaw.
fn action_of(a: &str) -> Result<&'static str, AppError> {
    Ok(match a {
        "start" => "start",
        "stop" => "stop",
        "restart" => "restart",
        "kill" => "kill",
        "freeze" | "pause" => "freeze",
        "thaw" | "unpause" => "thaw",
        _ => {
            return Err(AppError::Invalid {
                field: "action".into(),
                message: format!(
                    "invalid action {a:?}: allowed are start, stop, restart, kill, freeze \
                     (pause), thaw (unpause)"
                ),
            });
        }
    })
}

/// The body the host gets, checked: `timeout` for stop and restart (at most
/// [`MAX_STOP_TIMEOUT`], the container's own when absent), `signal` for kill.
fn action_body(
    action: &str,
    req: &wire::fleet::FleetAction,
    own_timeout: Option<u64>,
) -> Result<Option<Value>, AppError> {
    let invalid = |field: &str, message: String| AppError::Invalid {
        field: field.into(),
        message,
    };
    if req.signal.is_some() && action != "kill" {
        return Err(invalid(
            "signal",
            format!("signal is for kill only, not {action}"),
        ));
    }
    if req.timeout.is_some() && !matches!(action, "stop" | "restart") {
        return Err(invalid(
            "timeout",
            format!("timeout is for stop and restart only, not {action}"),
        ));
    }
    Ok(match action {
        "stop" | "restart" => {
            let t = req
                .timeout
                .or(own_timeout)
                .unwrap_or(crate::runtime::manager::DEFAULT_STOP_TIMEOUT);
            if t > MAX_STOP_TIMEOUT {
                return Err(invalid(
                    "timeout",
                    format!(
                        "{t} s between SIGTERM and SIGKILL: through a hub at most \
                         {MAX_STOP_TIMEOUT} s (its answer must come within {} s); pass a \
                         shorter timeout, or stop it on the host",
                        DEADLINE.as_secs()
                    ),
                ));
            }
            Some(json!({"timeout": t}))
        }
        "kill" => req.signal.as_ref().map(|s| json!({"signal": s})),
        _ => None,
    })
}

/// Act on a host's container through the hub: start, stop, restart, kill, freeze, thaw.
#[utoipa::path(post, path = "/fleet/hosts/{host}/containers/{name}/{action}", tag = "fleet",
    params(
        ("host" = String, Path, description = "The host's id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
        ("name" = String, Path, description = "Container name or id on that host"),
        ("action" = String, Path, description = "start, stop, restart, kill, freeze (pause), thaw (unpause)", pattern = r"^(start|stop|restart|kill|freeze|pause|thaw|unpause)$"),
    ),
    request_body(content = Option<wire::fleet::FleetAction>, description = "Optional: timeout (stop, restart), signal (kill)"),
    responses(
        (status = 200, description = "Done on the host", body = wire::Container),
        (status = 400, description = "Malformed host, name, action or body", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "A viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "Not a hub (code not_a_hub), no such host, or no such container of the caller's teams", body = wire::ApiError),
        (status = 409, description = "The host refused the action in the container's state, or no token or usable API for the host", body = wire::ApiError),
        (status = 502, description = "The host is unreachable or refused the token (host_unreachable, host_token_refused)", body = wire::ApiError),
        (status = 503, description = "The ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
        (status = 504, description = "The host did not answer in time (host_timeout)", body = wire::ApiError),
    ))]
async fn host_container_action(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath((host, name, action)): ApiPath<(String, String, String)>,
    super::containers::OptJson(req): super::containers::OptJson<wire::fleet::FleetAction>,
) -> Result<Json<wire::Container>, FwdError> {
    let audit_action = match action_of(&action) {
        Ok(a) => format!("fleet.container.{a}"),
        Err(_) => "fleet.container.invalid".to_owned(),
    };
    let mut before = None;
    let r = async {
        let a = action_of(&action)?;
        let t = target(&state, &host).await?;
        let c = actionable(&t, &actor, &name).await?;
        before = Some(status_of(&c));
        let body = action_body(a, &req, c.spec.stop_timeout)?
            .map(|b| serde_json::to_vec(&b))
            .transpose()
            .map_err(|e| AppError::internal("encode the action", e))?;
        let bytes = t
            .call(
                Method::POST,
                &format!("/api/v1/containers/{}/{a}", c.id),
                body,
            )
            .await?;
        serde_json::from_slice::<wire::Container>(&bytes).map_err(|e| {
            refused(
                StatusCode::BAD_GATEWAY,
                "host_bad_answer",
                format!("host {host:?} answered the {a} with something unexpected: {e}"),
            )
        })
    }
    .await;
    let after = r.as_ref().map(|c| Some(status_of(c)));
    record(
        &state,
        &actor,
        &audit_action,
        format!("{host}/{name}"),
        before,
        after,
    )
    .await;
    r.map(Json)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    /// Kill a running container first.
    #[serde(default)]
    force: bool,
}

/// Remove a host's container through the hub (`force` to kill it first if running).
#[utoipa::path(delete, path = "/fleet/hosts/{host}/containers/{name}", tag = "fleet",
    params(
        ("host" = String, Path, description = "The host's id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
        ("name" = String, Path, description = "Container name or id on that host"),
        RemoveQuery,
    ),
    responses(
        (status = 204, description = "Removed on the host"),
        (status = 400, description = "Malformed host, name or query", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "A viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "Not a hub (code not_a_hub), no such host, or no such container of the caller's teams", body = wire::ApiError),
        (status = 409, description = "Running and not forced, or no token or usable API for the host", body = wire::ApiError),
        (status = 502, description = "The host is unreachable or refused the token (host_unreachable, host_token_refused)", body = wire::ApiError),
        (status = 503, description = "The ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
        (status = 504, description = "The host did not answer in time (host_timeout)", body = wire::ApiError),
    ))]
async fn host_container_remove(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath((host, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> Result<StatusCode, FwdError> {
    let mut before = None;
    let r = async {
        let t = target(&state, &host).await?;
        let c = actionable(&t, &actor, &name).await?;
        before = Some(status_of(&c));
        let force = if q.force { "?force=true" } else { "" };
        t.call(
            Method::DELETE,
            &format!("/api/v1/containers/{}{force}", c.id),
            None,
        )
        .await?;
        Ok::<_, FwdError>(StatusCode::NO_CONTENT)
    }
    .await;
    let after = r
        .as_ref()
        .map(|_| Some(json!({"status": "removed", "force": q.force})));
    record(
        &state,
        &actor,
        "fleet.container.remove",
        format!("{host}/{name}"),
        before,
        after,
    )
    .await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        assert!(usable_url("h", "https://h.example:7700").is_ok());
        assert!(usable_url("h", "http://127.0.0.1:7700").is_ok());
        assert!(usable_url("h", "http://[::1]:7700").is_ok());
        for bad in [
            "http://10.0.0.5:7700",
            "http://h.example:7700",
            "unix:///run/corral/corral.sock",
            "ftp://h",
        ] {
            match usable_url("h", bad) {
                Err(FwdError::App(AppError::Refused { code, .. })) => {
                    assert_eq!(code, "insecure_api_url", "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn actions_and_bodies() {
        assert_eq!(action_of("pause").unwrap(), "freeze");
        assert_eq!(action_of("unpause").unwrap(), "thaw");
        assert!(
            matches!(action_of("exec"), Err(AppError::Invalid { field, .. }) if field == "action")
        );
        let c = None;
        let req = |timeout, signal: Option<&str>| wire::fleet::FleetAction {
            timeout,
            signal: signal.map(str::to_owned),
        };
        assert_eq!(
            action_body("stop", &req(None, None), c).unwrap(),
            Some(json!({"timeout": crate::runtime::manager::DEFAULT_STOP_TIMEOUT}))
        );
        assert!(matches!(action_body("stop", &req(Some(60), None), c),
            Err(AppError::Invalid { field, .. }) if field == "timeout"));
        assert!(matches!(action_body("start", &req(None, Some("TERM")), c),
            Err(AppError::Invalid { field, .. }) if field == "signal"));
        assert_eq!(
            action_body("kill", &req(None, Some("TERM")), c).unwrap(),
            Some(json!({"signal": "TERM"}))
        );
        assert_eq!(action_body("freeze", &req(None, None), c).unwrap(), None);
    }
}
