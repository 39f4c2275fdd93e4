//! `/api/v1/containers`: create, list, inspect, start, stop, kill, restart, freeze/thaw,
//! live re-limit and its undo, exec, logs, remove, and the container's timeline of changes.
//!
//! # Who may do what
//! - admin: everything, including privileged specs (a host directory as rootfs, bind mounts of
//!   host paths, the host network), which the runtime checks on the validated spec.
//! - operator: lists, reads and acts on containers of its teams; creates containers only in
//!   its teams (no `team` = its only team, else a 400 on `team`) and never privileged ones —
//!   nor ones publishing ports on a non-loopback address or on a host port below 1024
//!   (`check_published_ports`).
//! - viewer: lists and reads (inspect, limits, logs, events) containers of its teams; every
//!   change answers 403.
//!
//! A container of a team the caller is not a member of answers **404 on every route**, reads
//! and actions alike, exactly like a container that does not exist: its existence does not
//! leak (the audit row still says `denied`). 403 means "you can see it but may not do this".
//! Container names are unique across teams, so creating a taken name answers 409 even when the
//! holder is invisible to the caller: that reveals a name is taken, nothing else.
//!
//! # Audit
//! Every change (and every refused or failed attempt) is one audit row with target
//! `container:NAME`, before/after JSON (status; old and new limits for re-limits; env values
//! redacted). `GET /containers/{name}/events` reads those rows back as the container's
//! timeline (the dashboard draws them as chart annotations).

use std::{io::SeekFrom, path::PathBuf, time::Duration};

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{FromRequest, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppError, AppState};
use crate::auth::{
    Actor, ApiJson, ApiPath, ApiQuery, AuthError, Role,
    audit::{self, Outcome},
    db,
};
use crate::runtime::{Manager, RuntimeError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(containers_list, containers_create))
        .routes(routes!(containers_get, containers_remove))
        .routes(routes!(containers_start))
        .routes(routes!(containers_stop))
        .routes(routes!(containers_restart))
        .routes(routes!(containers_kill))
        .routes(routes!(containers_freeze))
        .routes(routes!(containers_thaw))
        .routes(routes!(containers_limits, containers_update))
        .routes(routes!(containers_undo))
        .routes(routes!(containers_exec))
        .routes(routes!(containers_logs))
        .routes(routes!(containers_events))
}

/// An optional JSON body: an empty body (without a JSON content type) or `null` is
/// `T::default()`;
/// anything else goes through [`ApiJson`] (content type, unknown/duplicate fields, paths).
pub struct OptJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptJson<T> {
    type Rejection = AuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::new(body), state)
            .await
            .map_err(|e| AuthError::invalid("body", format!("cannot read body: {e}")))?;
        let text = bytes.trim_ascii();
        if (text.is_empty() && !has_type) || text == b"null" {
            return Ok(OptJson(T::default()));
        }
        let req = Request::from_parts(parts, Body::from(bytes));
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| OptJson(v))
    }
}

impl From<RuntimeError> for AppError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Invalid { field, message } => AppError::Invalid { field, message },
            RuntimeError::NotFound(n) => AppError::NotFound(format!("no such container: {n}")),
            e @ RuntimeError::Forbidden { .. } => AuthError::Forbidden(e.to_string()).into(),
            e @ (RuntimeError::NameInUse(_) | RuntimeError::Conflict { .. }) => {
                AppError::Conflict(e.to_string())
            }
            e @ RuntimeError::Start { .. } => AppError::Invalid {
                field: "command".into(),
                message: e.to_string(),
            },
            RuntimeError::Image(e) => e.into(),
            RuntimeError::NoCheckpoint(n) => {
                AppError::NotFound(format!("no checkpoint of container {n}"))
            }
            RuntimeError::Checkpoint(message) => AppError::Refused {
                status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                code: "checkpoint_failed",
                message,
            },
            other => AppError::internal("container operation failed", other),
        }
    }
}

pub(super) fn manager(state: &AppState) -> Result<&Manager, AppError> {
    state.containers().ok_or_else(|| {
        AppError::internal(
            "containers",
            std::io::Error::other("the container runtime is not available"),
        )
    })
}

pub(crate) fn target(name: &str) -> String {
    format!("container:{name}")
}

/// How a refused or failed change is recorded.
pub(crate) fn outcome(e: &AppError) -> Outcome {
    match e {
        AppError::Auth(AuthError::Internal(_) | AuthError::Sql(_) | AuthError::Store(_)) => {
            Outcome::Error
        }
        AppError::Auth(_) => Outcome::Denied,
        AppError::Internal { .. } => Outcome::Error,
        AppError::NotFound(_)
        | AppError::Conflict(_)
        | AppError::Invalid { .. }
        | AppError::TooLarge(_)
        | AppError::NoRoom(_)
        | AppError::Refused { .. } => Outcome::Failed,
    }
}

/// The answer for a container the caller may not see: the same as for a missing one.
fn hidden(name: &str) -> AppError {
    AppError::NotFound(format!("no such container: {name}"))
}

/// Loads `name` for reading: 404 when missing or of a team the actor is not a member of.
/// Other per-container read routes (stats, metering) should check access with this.
pub(super) async fn visible(
    state: &AppState,
    actor: &Actor,
    name: &str,
) -> Result<wire::Container, AppError> {
    let c = manager(state)?.get(name).await?;
    if !actor.team_scope().contains(&c.team) {
        return Err(hidden(name));
    }
    Ok(c)
}

/// Loads `name` for the change `action`: 404 as in [`visible`], 403 for a viewer (or another
/// role that cannot act on the team). A refusal is recorded in the audit log.
pub(super) async fn actionable(
    state: &AppState,
    actor: &Actor,
    name: &str,
    action: &str,
) -> Result<wire::Container, AppError> {
    let r = async {
        let m = manager(state).map_err(|e| (e, Outcome::Error, None))?;
        let c = match m.get(name).await {
            Ok(c) => c,
            Err(e) => return Err((AppError::from(e), Outcome::Failed, None)),
        };
        if !actor.team_scope().contains(&c.team) {
            return Err((
                hidden(name),
                Outcome::Denied,
                Some("not a member of the container's team"),
            ));
        }
        actor
            .can_act_on_team(&c.team)
            .map_err(|e| (AppError::from(e), Outcome::Denied, None))?;
        Ok(c)
    }
    .await;
    match r {
        Ok(c) => Ok(c),
        Err((e, result, detail)) => {
            let detail = detail.map_or_else(|| e.to_string(), str::to_owned);
            let ev = audit::Event::new(actor, action)
                .target(target(name))
                .result(result)
                .detail(detail);
            audit::record(state.store(), ev).await;
            Err(e)
        }
    }
}

/// Records the end of a change on `c` and passes its result through.
async fn finish<T>(
    state: &AppState,
    actor: &Actor,
    action: &str,
    name: &str,
    before: Option<Value>,
    result: Result<T, AppError>,
    after: impl FnOnce(&T) -> Option<Value>,
) -> Result<T, AppError> {
    let mut ev = audit::Event::new(actor, action).target(target(name));
    if let Some(b) = before {
        ev = ev.before(b);
    }
    match &result {
        Ok(v) => {
            if let Some(a) = after(v) {
                ev = ev.after(a);
            }
        }
        Err(e) => {
            ev = ev.result(outcome(e)).detail(e.to_string());
        }
    }
    audit::record(state.store(), ev).await;
    result
}

fn status_of(c: &wire::Container) -> Value {
    json!({"status": c.status, "exit_code": c.exit_code})
}

/// `KEY=VALUE` → `KEY=…`: audit rows keep which variables were set, not their values.
pub(super) fn redact_env(env: &[String]) -> Vec<String> {
    env.iter()
        .map(|e| match e.split_once('=') {
            Some((k, _)) => format!("{k}=…"),
            None => e.clone(),
        })
        .collect()
}

fn audit_spec(spec: &wire::CreateContainer) -> Value {
    let mut spec = spec.clone();
    spec.env = redact_env(&spec.env);
    json!(spec)
}

/// Query of the container list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Also exited and created containers (default: running and paused only).
    #[serde(default)]
    all: bool,
}

/// Containers of the caller's teams (all teams for admins).
#[utoipa::path(get, path = "/containers", tag = "containers",
    params(ListQuery),
    responses(
        (status = 200, description = "Containers the caller may see", body = Vec<wire::Container>),
        (status = 400, description = "Malformed query", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn containers_list(
    State(state): State<AppState>,
    actor: Actor,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, AppError> {
    // Serialized rows from the registry with their networks added: the same bytes as
    // `Json<Vec<wire::Container>>`, without re-serializing unchanged containers.
    let rows = manager(&state)?
        .list_rows(q.all, move |team| actor.team_scope().contains(team))
        .await?;
    let body = state
        .network()
        .list_body(&rows)
        .await
        .map_err(|e| AppError::internal("reading the containers' network", e))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Create (and with `start`, start) a container.
#[utoipa::path(post, path = "/containers", tag = "containers",
    request_body = wire::CreateContainer,
    responses(
        (status = 201, description = "Created", body = wire::Container),
        (status = 400, description = "Invalid field (named in `field`), or the start failed", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, team not the caller's, privileged spec without admin (host rootfs, binds, host network, ports on a non-loopback address or below 1024), foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "The image does not exist", body = wire::ApiError),
        (status = 409, description = "The name is taken", body = wire::ApiError),
    ))]
async fn containers_create(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<wire::CreateContainer>,
) -> Result<(StatusCode, Json<wire::Container>), AppError> {
    let c = create_container(&state, &actor, req).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// Creates (and with `req.start`, starts) a container for `actor`: the team placed and checked,
/// published ports checked for non-admins, and one audit row either way. Shared with the
/// Docker API's create.
pub(crate) async fn create_container(
    state: &AppState,
    actor: &Actor,
    mut req: wire::CreateContainer,
) -> Result<wire::Container, AppError> {
    const ACTION: &str = "container.create";
    let requested = audit_spec(&req);
    let name = req.name.clone().unwrap_or_else(|| "?".into());
    let team = place_in_team(actor, req.team.take());
    let result = async {
        req.team = team?;
        if !actor.is_admin() {
            check_published_ports(&req.ports)?;
        }
        Ok(manager(state)?.create(req, actor.is_admin()).await?)
    }
    .await;
    let name = result.as_ref().map_or(name, |c| c.name.clone());
    let ev = audit::Event::new(actor, ACTION).target(target(&name));
    let ev = match &result {
        Ok(c) => ev.after(json!({"status": c.status, "spec": audit_spec(&c.spec)})),
        Err(e) => ev.after(requested).result(outcome(e)).detail(e.to_string()),
    };
    audit::record(state.store(), ev).await;
    result
}

/// Published ports that reach beyond this host — an address other than loopback (`0.0.0.0`, a
/// LAN address, `::`) — or bind a privileged host port (below 1024) need admin. Checked on the
/// ports as the network module parses them (the same parse that binds them, so no spelling
/// gets around it); a port that does not parse is left to the runtime's 400.
fn check_published_ports(ports: &[String]) -> Result<(), AppError> {
    let Ok(parsed) = crate::network::PortSpec::parse_all(ports) else {
        return Ok(());
    };
    for (i, p) in parsed.iter().enumerate() {
        if !p.host_ip.is_loopback() {
            return Err(AuthError::Forbidden(format!(
                "ports[{i}]: publishing on {} reaches beyond this host and needs admin: publish on \
                 127.0.0.1 (the default when no address is given)",
                p.host_ip
            ))
            .into());
        }
        if p.host_port < 1024 {
            return Err(AuthError::Forbidden(format!(
                "ports[{i}]: host port {} is a privileged port (below 1024) and needs admin: use \
                 1024-65535",
                p.host_port
            ))
            .into());
        }
    }
    Ok(())
}

/// The team a new container goes to: any for admins; for operators one of theirs (their only
/// team when none is named); viewers create nothing.
fn place_in_team(actor: &Actor, team: Option<String>) -> Result<Option<String>, AppError> {
    if actor.is_admin() {
        return Ok(team);
    }
    if actor.role == Role::Viewer {
        return Err(AuthError::Forbidden(format!(
            "{} is a viewer and cannot create containers",
            actor.name
        ))
        .into());
    }
    match team {
        Some(t) => {
            actor.can_act_on_team(&t)?;
            Ok(Some(t))
        }
        None => match actor.teams.as_slice() {
            [only] => Ok(Some(only.clone())),
            [] => Err(AuthError::Forbidden(format!(
                "{} is a member of no team and cannot create containers",
                actor.name
            ))
            .into()),
            many => Err(AppError::Invalid {
                field: "team".into(),
                message: format!("name the team: one of {}", many.join(", ")),
            }),
        },
    }
}

/// One container.
#[utoipa::path(get, path = "/containers/{name}", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    responses(
        (status = 200, description = "The container", body = wire::Container),
        (status = 400, description = "Malformed name", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
    ))]
async fn containers_get(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<wire::Container>, AppError> {
    let mut c = [visible(&state, &actor, &name).await?];
    describe_network(&state, &mut c).await?;
    let [mut c] = c;
    // The team's ceilings beside the container's own: a few reads of the team's cgroup files.
    let (pools, team) = (state.pools().clone(), c.team.clone());
    match tokio::task::spawn_blocking(move || pools.limits(&team)).await {
        Ok(Ok(team)) => {
            c.effective_limits = Some(crate::teams::effective(&c.limits, &team));
            c.team_limits = Some(team);
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the team's limits"),
        Err(e) => tracing::warn!(error = %e, "team limits task failed"),
    }
    Ok(Json(c))
}

/// Mode, addresses and published ports of containers, from the network module.
async fn describe_network(state: &AppState, list: &mut [wire::Container]) -> Result<(), AppError> {
    state
        .network()
        .describe(list)
        .await
        .map_err(|e| AppError::internal("reading the containers' network", e))
}

/// Query of a removal.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Kill a running container first.
    #[serde(default)]
    force: bool,
}

/// Remove a container: cgroup, overlay, logs and record.
#[utoipa::path(delete, path = "/containers/{name}", tag = "containers",
    params(("name" = String, Path, description = "Container name or id"), RemoveQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed name or query", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "Running and not forced", body = wire::ApiError),
    ))]
async fn containers_remove(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> Result<StatusCode, AppError> {
    const ACTION: &str = "container.remove";
    let c = actionable(&state, &actor, &name, ACTION).await?;
    let r = async { Ok(manager(&state)?.remove(&c.name, q.force).await?) }.await;
    finish(
        &state,
        &actor,
        ACTION,
        &c.name,
        Some(json!({"status": c.status, "team": c.team, "spec": audit_spec(&c.spec)})),
        r,
        |_| Some(json!({"status": "removed", "force": q.force})),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A lifecycle change for the Docker API (`crate::docker`): the same rights check and audit row
/// as the route of Corral's API.
pub(crate) async fn change<F, Fut>(
    state: &AppState,
    actor: &Actor,
    name: &str,
    action: &str,
    op: F,
) -> Result<wire::Container, AppError>
where
    F: FnOnce(Manager, String) -> Fut,
    Fut: Future<Output = Result<wire::Container, RuntimeError>>,
{
    lifecycle(state, actor, name, action, None, op)
        .await
        .map(|Json(c)| c)
}

/// `container.update` for the Docker API: as `PATCH /containers/{name}/limits`.
pub(crate) async fn change_limits(
    state: &AppState,
    actor: &Actor,
    name: &str,
    patch: wire::LimitsPatch,
) -> Result<wire::Container, AppError> {
    const ACTION: &str = "container.update";
    let c = actionable(state, actor, name, ACTION).await?;
    let requested = json!(patch);
    let r = async { Ok(manager(state)?.update(&c.name, patch).await?.1) }.await;
    let before = json!({"limits": c.limits});
    finish(state, actor, ACTION, &c.name, Some(before), r, |n| {
        Some(json!({"limits": n.limits, "requested": requested, "via": "docker"}))
    })
    .await
}

/// `container.remove` for the Docker API: as `DELETE /containers/{name}`.
pub(crate) async fn remove_container(
    state: &AppState,
    actor: &Actor,
    name: &str,
    force: bool,
) -> Result<(), AppError> {
    const ACTION: &str = "container.remove";
    let c = actionable(state, actor, name, ACTION).await?;
    let r = async { Ok(manager(state)?.remove(&c.name, force).await?) }.await;
    finish(
        state,
        actor,
        ACTION,
        &c.name,
        Some(json!({"status": c.status, "team": c.team, "spec": audit_spec(&c.spec)})),
        r,
        |_| Some(json!({"status": "removed", "force": force, "via": "docker"})),
    )
    .await
}

/// Runs a simple lifecycle change through authorization and audit.
async fn lifecycle<F, Fut>(
    state: &AppState,
    actor: &Actor,
    name: &str,
    action: &str,
    extra: Option<Value>,
    op: F,
) -> Result<Json<wire::Container>, AppError>
where
    F: FnOnce(Manager, String) -> Fut,
    Fut: Future<Output = Result<wire::Container, RuntimeError>>,
{
    let c = actionable(state, actor, name, action).await?;
    let m = manager(state)?.clone();
    let r = op(m, c.name.clone()).await.map_err(AppError::from);
    let before = status_of(&c);
    finish(state, actor, action, &c.name, Some(before), r, |n| {
        let mut after = status_of(n);
        if let (Some(Value::Object(extra)), Value::Object(a)) = (extra, &mut after) {
            a.extend(extra);
        }
        Some(after)
    })
    .await
    .map(Json)
}

/// Start a created or exited container.
#[utoipa::path(post, path = "/containers/{name}/start", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    responses(
        (status = 200, description = "Started", body = wire::Container),
        (status = 400, description = "Malformed name, or the command could not start", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "Already running", body = wire::ApiError),
    ))]
async fn containers_start(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<wire::Container>, AppError> {
    lifecycle(
        &state,
        &actor,
        &name,
        "container.start",
        None,
        |m, n| async move { m.start(&n).await },
    )
    .await
}

/// Stop: SIGTERM, then SIGKILL after the timeout.
#[utoipa::path(post, path = "/containers/{name}/stop", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    request_body(content = Option<wire::StopContainer>, description = "Optional; an empty body uses the container's timeout"),
    responses(
        (status = 200, description = "Stopped (or was not running)", body = wire::Container),
        (status = 400, description = "Malformed name or body", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
    ))]
async fn containers_stop(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    OptJson(req): OptJson<wire::StopContainer>,
) -> Result<Json<wire::Container>, AppError> {
    let t = check_timeout(req.timeout)?;
    lifecycle(
        &state,
        &actor,
        &name,
        "container.stop",
        None,
        |m, n| async move { m.stop(&n, t).await },
    )
    .await
}

fn check_timeout(t: Option<u64>) -> Result<Option<u64>, AppError> {
    match t {
        Some(t) if t > 3600 => Err(AppError::Invalid {
            field: "timeout".into(),
            message: format!("{t} must be at most 3600 seconds"),
        }),
        t => Ok(t),
    }
}

/// Restart: stop, then start.
#[utoipa::path(post, path = "/containers/{name}/restart", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    request_body(content = Option<wire::StopContainer>, description = "Optional; an empty body uses the container's timeout"),
    responses(
        (status = 200, description = "Running again", body = wire::Container),
        (status = 400, description = "Malformed name or body, or the command could not start", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "Conflicting state", body = wire::ApiError),
    ))]
async fn containers_restart(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    OptJson(req): OptJson<wire::StopContainer>,
) -> Result<Json<wire::Container>, AppError> {
    let t = check_timeout(req.timeout)?;
    lifecycle(
        &state,
        &actor,
        &name,
        "container.restart",
        None,
        |m, n| async move { m.restart(&n, t).await },
    )
    .await
}

/// Send a signal to the container's init. A paused container takes only KILL (it ends exited,
/// thawed); other signals are refused, as docker does.
#[utoipa::path(post, path = "/containers/{name}/kill", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    request_body(content = Option<wire::KillContainer>, description = "Optional; default signal KILL"),
    responses(
        (status = 200, description = "Signalled", body = wire::Container),
        (status = 400, description = "Malformed name, body or signal", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "Not running, or paused and the signal is not KILL", body = wire::ApiError),
    ))]
async fn containers_kill(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    OptJson(req): OptJson<wire::KillContainer>,
) -> Result<Json<wire::Container>, AppError> {
    let signal = req.signal.clone();
    let extra = Some(json!({"signal": signal.as_deref().unwrap_or("KILL")}));
    lifecycle(
        &state,
        &actor,
        &name,
        "container.kill",
        extra,
        |m, n| async move { m.kill(&n, signal.as_deref()).await },
    )
    .await
}

/// Freeze every process of the container.
#[utoipa::path(post, path = "/containers/{name}/freeze", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    responses(
        (status = 200, description = "Paused", body = wire::Container),
        (status = 400, description = "Malformed name", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "Not running", body = wire::ApiError),
    ))]
async fn containers_freeze(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<wire::Container>, AppError> {
    lifecycle(
        &state,
        &actor,
        &name,
        "container.freeze",
        None,
        |m, n| async move { m.freeze(&n, true).await },
    )
    .await
}

/// Thaw a frozen container.
#[utoipa::path(post, path = "/containers/{name}/thaw", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    responses(
        (status = 200, description = "Running again", body = wire::Container),
        (status = 400, description = "Malformed name", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "Not paused", body = wire::ApiError),
    ))]
async fn containers_thaw(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<wire::Container>, AppError> {
    lifecycle(
        &state,
        &actor,
        &name,
        "container.thaw",
        None,
        |m, n| async move { m.freeze(&n, false).await },
    )
    .await
}

/// The limits in force, read back from the kernel.
#[utoipa::path(get, path = "/containers/{name}/limits", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    responses(
        (status = 200, description = "Limits as the kernel reports them", body = wire::Limits),
        (status = 400, description = "Malformed name", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
    ))]
async fn containers_limits(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<wire::Limits>, AppError> {
    let c = visible(&state, &actor, &name).await?;
    Ok(Json(manager(&state)?.kernel_limits(&c.name).await?))
}

/// Live re-limit: each field of the body is absent (kept), `null` or `"max"` (removed: the
/// kernel's default is written back — no limit, weight 100, the parent's cpus — and the stored
/// spec no longer holds it) or a value (set). A rejected change leaves the old limits in force,
/// kernel and record. Recorded with the old and new limits (the container's timeline, which
/// `POST /containers/{name}/undo` reads).
#[utoipa::path(patch, path = "/containers/{name}/limits", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    request_body(content = wire::LimitsPatch, description = "Absent field: unchanged; `null` or `\"max\"`: no limit; a value: set"),
    responses(
        (status = 200, description = "The container with its new limits", body = wire::Container),
        (status = 400, description = "Invalid limit (named in `field`, e.g. limits.cpus)", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
    ))]
async fn containers_update(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiJson(patch): ApiJson<wire::LimitsPatch>,
) -> Result<Json<wire::Container>, AppError> {
    const ACTION: &str = "container.update";
    let c = actionable(&state, &actor, &name, ACTION).await?;
    let requested = json!(patch);
    let r = async { Ok(manager(&state)?.update(&c.name, patch).await?.1) }.await;
    let before = json!({"limits": c.limits});
    finish(&state, &actor, ACTION, &c.name, Some(before), r, |n| {
        Some(json!({"limits": n.limits, "requested": requested}))
    })
    .await
    .map(Json)
}

/// The audit actions that change a container's limits (the ones undo can take back).
const LIMIT_CHANGES: [&str; 2] = ["container.update", "container.undo"];

/// The limits recorded before the limit change `event` of `name` (default: the latest), read
/// from the container's timeline: `(event id, limits)`.
async fn limits_before(
    state: &AppState,
    c: &wire::Container,
    event: Option<i64>,
) -> Result<(i64, wire::Limits), AppError> {
    let t = target(&c.name);
    let since_ms = c.created_at.saturating_mul(1000);
    let rows = db::run(state.store(), move |conn| {
        audit::for_target(conn, &t, since_ms)
    })
    .await?;
    let change = rows
        .into_iter()
        .rev()
        .filter(|r| r.result == "ok" && LIMIT_CHANGES.contains(&r.action.as_str()))
        .find(|r| event.is_none_or(|id| r.id == id))
        .ok_or_else(|| match event {
            Some(id) => AppError::Invalid {
                field: "event".into(),
                message: format!("{id} is no limit change of this container (see its events)"),
            },
            None => AppError::Conflict(format!("{} has no limit change to undo", c.name)),
        })?;
    let limits = change
        .before
        .as_deref()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|mut b| serde_json::from_value::<wire::Limits>(b["limits"].take()).ok())
        .ok_or_else(|| AppError::Conflict(format!("event {} recorded no limits", change.id)))?;
    Ok((change.id, limits))
}

/// Undo a limit change: puts back the limits recorded before it (`event`, an id from
/// `GET /containers/{name}/events` of a `container.update` or `container.undo` row; default the
/// latest). The undo is itself a change, audited as `container.undo` with the old and new
/// limits, so undoing it again redoes the change. Operators of the team and admins.
#[utoipa::path(post, path = "/containers/{name}/undo", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    request_body(content = Option<wire::UndoLimits>, description = "Empty: the latest limit change"),
    responses(
        (status = 200, description = "The container with the restored limits", body = wire::Container),
        (status = 400, description = "`event` is no limit change of this container, or the old limits are refused now", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "No limit change to undo", body = wire::ApiError),
    ))]
async fn containers_undo(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    OptJson(req): OptJson<wire::UndoLimits>,
) -> Result<Json<wire::Container>, AppError> {
    const ACTION: &str = "container.undo";
    let c = actionable(&state, &actor, &name, ACTION).await?;
    let r = async {
        let (id, limits) = limits_before(&state, &c, req.event).await?;
        let (_, n) = manager(&state)?
            .set_limits(&c.name, move |_| limits)
            .await?;
        Ok((id, n))
    }
    .await;
    let before = json!({"limits": c.limits});
    finish(
        &state,
        &actor,
        ACTION,
        &c.name,
        Some(before),
        r,
        |(id, n)| Some(json!({"limits": n.limits, "undo": id})),
    )
    .await
    .map(|(_, n)| Json(n))
}

/// Run a command inside the running container, with all its restrictions.
///
/// With `Accept: application/x-ndjson` the output streams as the command produces it
/// (`wire::ExecFrame` lines, data in base64), with back-pressure: a client that reads slowly
/// slows the command down, the daemon never holds the output. Without it the answer is one
/// JSON object with each stream capped at 1 MiB (`truncated`; the command is killed at the
/// cap) and `timeout` at most 25 s (default 25). A client that goes away, a passed `timeout`
/// or the cap kill the command and every process it started in its session.
#[utoipa::path(post, path = "/containers/{name}/exec", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    request_body = wire::ExecRequest,
    responses(
        (status = 200, description = "The command's exit code and output (each stream at most 1 MiB, `truncated` beyond it); with `Accept: application/x-ndjson`: the output as it is produced, one `ExecFrame` per line, the last one has `exit_code` or `error`",
            content(
                (wire::ExecResult = "application/json"),
                (wire::ExecFrame = "application/x-ndjson"),
            )),
        (status = 400, description = "Invalid field (command, env, timeout)", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "Not running", body = wire::ApiError),
    ))]
async fn containers_exec(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    headers: header::HeaderMap,
    ApiJson(mut req): ApiJson<wire::ExecRequest>,
) -> Result<Response, AppError> {
    const ACTION: &str = "container.exec";
    let streamed = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(wire::NDJSON));
    let c = actionable(&state, &actor, &name, ACTION).await?;
    let mut requested = json!({"command": req.command, "env": redact_env(&req.env)});
    if let (Some(t), Value::Object(o)) = (req.timeout, &mut requested) {
        o.insert("timeout".into(), json!(t));
    }
    let started = async {
        if req.command.iter().any(|a| a.contains('\0')) {
            return Err(AppError::Invalid {
                field: "command".into(),
                message: "must not contain NUL bytes".into(),
            });
        }
        if !streamed {
            match req.timeout {
                None => req.timeout = Some(wire::EXEC_JSON_MAX_TIMEOUT),
                Some(t) if t == 0 || t > wire::EXEC_JSON_MAX_TIMEOUT => {
                    return Err(AppError::Invalid {
                        field: "timeout".into(),
                        message: format!(
                            "{t} is out of range: 1..={} seconds without streaming (the answer \
                             must come within 30 s); ask for Accept: {} to run longer",
                            wire::EXEC_JSON_MAX_TIMEOUT,
                            wire::NDJSON
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(manager(&state)?.exec(&c.name, req).await?)
    }
    .await;
    if streamed {
        return match started {
            Ok(session) => Ok(exec_streamed(state, actor, c.name, requested, session).await),
            Err(e) => {
                finish::<Response>(&state, &actor, ACTION, &c.name, None, Err(e), |_| None).await
            }
        };
    }
    let r = match started {
        Ok(session) => session
            .collect(wire::EXEC_OUTPUT_CAP)
            .await
            .map_err(AppError::from),
        Err(e) => Err(e),
    };
    finish(&state, &actor, ACTION, &c.name, None, r, |x| {
        let mut a = requested;
        if let Value::Object(o) = &mut a {
            o.insert("exit_code".into(), json!(x.exit_code));
            o.insert("truncated".into(), json!(x.truncated));
            o.insert("timed_out".into(), json!(x.timed_out));
        }
        Some(a)
    })
    .await
    .map(|x| Json(x).into_response())
}

/// Streams an exec's output as `application/x-ndjson` lines of `wire::ExecFrame`. Between the
/// session and the body is a channel of two lines: when the client does not read, the session
/// stops reading the command's pipes. When the body is dropped (the client went away), the
/// command is killed; the outcome is audited when the session ends.
async fn exec_streamed(
    state: AppState,
    actor: Actor,
    name: String,
    requested: Value,
    mut session: crate::runtime::exec::ExecSession,
) -> Response {
    use crate::runtime::exec::ExecEvent;
    // The outcome is known only after the answer has begun: the start is audited now (the
    // guard would otherwise log a generic row), the outcome when the session ends.
    audit::record(
        state.store(),
        audit::Event::new(&actor, "container.exec.start")
            .target(target(&name))
            .after(requested.clone()),
    )
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    tokio::spawn(async move {
        let mut client_gone = false;
        let mut ev = audit::Event::new(&actor, "container.exec").target(target(&name));
        let mut after = requested;
        loop {
            let event = tokio::select! {
                e = session.next() => e,
                () = tx.closed(), if !client_gone => {
                    // The body was dropped while the command was silent.
                    client_gone = true;
                    session.kill();
                    continue;
                }
            };
            let Some(event) = event else { break };
            let frame = match event {
                ExecEvent::Output(stream, data) => {
                    if client_gone {
                        continue;
                    }
                    if tx.send(output_line(stream, &data)).await.is_err() {
                        client_gone = true;
                        session.kill();
                    }
                    continue;
                }
                ExecEvent::Exit { code, timed_out } => {
                    if let Value::Object(o) = &mut after {
                        o.insert("exit_code".into(), json!(code));
                        o.insert("timed_out".into(), json!(timed_out));
                        o.insert("client_gone".into(), json!(client_gone));
                    }
                    wire::ExecFrame {
                        exit_code: Some(code),
                        timed_out,
                        ..Default::default()
                    }
                }
                ExecEvent::Failed(e) => {
                    let e = AppError::from(e);
                    ev = ev.result(outcome(&e)).detail(e.to_string());
                    wire::ExecFrame {
                        error: Some(e.body()),
                        ..Default::default()
                    }
                }
            };
            if client_gone {
                continue;
            }
            let mut line = serde_json::to_vec(&frame).unwrap_or_default();
            line.push(b'\n');
            if tx.send(line).await.is_err() {
                // The body was dropped: the client went away.
                client_gone = true;
                session.kill();
            }
        }
        audit::record(state.store(), ev.after(after)).await;
    });
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, wire::NDJSON),
            (header::CACHE_CONTROL, "no-store"),
            // Never compressed: a compressor would hold output back until its buffer fills.
            (header::CONTENT_ENCODING, "identity"),
        ],
        Body::from_stream(lines),
    )
        .into_response()
}

/// The NDJSON line of one output chunk: `wire::ExecFrame` written by hand, base64 straight
/// into the line (serde would copy and scan the base64 text once more).
fn output_line(stream: wire::ExecStream, data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let name = match stream {
        wire::ExecStream::Stdout => "stdout",
        wire::ExecStream::Stderr => "stderr",
    };
    let mut line = String::with_capacity(32 + data.len().div_ceil(3) * 4);
    line.push_str(r#"{"stream":""#);
    line.push_str(name);
    line.push_str(r#"","data":""#);
    base64::engine::general_purpose::STANDARD.encode_string(data, &mut line);
    line.push_str("\"}\n");
    line.into_bytes()
}

/// The most lines `tail` may ask for (the log files are size-capped anyway).
pub(crate) const MAX_TAIL: u32 = 1_000_000;

/// Query of the logs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only the last N lines, at most 1 000 000.
    #[param(minimum = 0, maximum = 1000000)]
    tail: Option<u32>,
    /// Keep the response open and stream new output until the container exits.
    #[serde(default)]
    follow: bool,
}

/// Reads `path` from `offset`; returns the bytes and the new offset (0 and everything when
/// the file was rotated and is now shorter).
pub(crate) async fn read_from(path: &PathBuf, offset: u64) -> (Vec<u8>, u64) {
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return (Vec::new(), offset);
    };
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let start = if len < offset { 0 } else { offset };
    if f.seek(SeekFrom::Start(start)).await.is_err() {
        return (Vec::new(), offset);
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf).await;
    let end = start + buf.len() as u64;
    (buf, end)
}

pub(crate) fn tail_lines(data: &[u8], n: usize) -> &[u8] {
    let mut count = 0;
    let end = if data.ends_with(b"\n") {
        data.len() - 1
    } else {
        data.len()
    };
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            count += 1;
            if count == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

/// stdout and stderr as they arrived (`tail`, `follow`).
#[utoipa::path(get, path = "/containers/{name}/logs", tag = "containers",
    params(("name" = String, Path, description = "Container name or id"), LogsQuery),
    responses(
        (status = 200, description = "The log text", content_type = "text/plain", body = String),
        (status = 400, description = "Malformed name or query", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
    ))]
async fn containers_logs(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response, AppError> {
    if let Some(n) = q.tail.filter(|n| *n > MAX_TAIL) {
        return Err(AppError::Invalid {
            field: "tail".into(),
            message: format!("tail {n} must be at most {MAX_TAIL} lines"),
        });
    }
    let c = visible(&state, &actor, &name).await?;
    let name = c.name;
    let m = manager(&state)?.clone();
    let (files, name) = m.log_source(&name).await?;
    let (old, _) = read_from(&files[0], 0).await;
    let (cur, offset) = read_from(&files[1], 0).await;
    let mut all = old;
    all.extend_from_slice(&cur);
    let first = match q.tail {
        Some(n) => tail_lines(&all, n as usize).to_vec(),
        None => all,
    };
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !q.follow {
        return Ok((headers, first).into_response());
    }
    let path = files[1].clone();
    let stream = futures_util::stream::unfold(
        (Some(first), offset, false),
        move |(first, offset, finished)| {
            let m = m.clone();
            let name = name.clone();
            let path = path.clone();
            async move {
                if let Some(f) = first {
                    return Some((
                        Ok::<_, std::io::Error>(Bytes::from(f)),
                        (None, offset, false),
                    ));
                }
                if finished {
                    return None;
                }
                loop {
                    let running = m.is_running(&name).await;
                    let (data, off) = read_from(&path, offset).await;
                    if !data.is_empty() {
                        return Some((Ok(Bytes::from(data)), (None, off, !running)));
                    }
                    if !running {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        },
    );
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// The container's timeline: every recorded change and attempt since it was created (who,
/// when, what, before, after, result), oldest first — e.g. limit changes with old and new
/// limits, for chart annotations.
#[utoipa::path(get, path = "/containers/{name}/events", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    responses(
        (status = 200, description = "Audit rows of this container, oldest first", body = Vec<wire::AuditEntry>),
        (status = 400, description = "Malformed name", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
    ))]
async fn containers_events(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<wire::AuditEntry>>, AppError> {
    let c = visible(&state, &actor, &name).await?;
    let t = target(&c.name);
    // A removed container's name may be reused: only rows since this one was created.
    let since_ms = c.created_at.saturating_mul(1000);
    let rows = db::run(state.store(), move |conn| {
        audit::for_target(conn, &t, since_ms)
    })
    .await?;
    Ok(Json(rows))
}

#[cfg(test)]
mod tests {
    use super::{output_line, tail_lines};

    #[test]
    fn output_lines_are_exec_frames() {
        for (stream, data) in [
            (wire::ExecStream::Stdout, &b"hi\n"[..]),
            (wire::ExecStream::Stderr, &[0u8, 255, 10, 34, 92][..]),
            (wire::ExecStream::Stdout, &[][..]),
        ] {
            let line = output_line(stream, data);
            assert_eq!(line.last(), Some(&b'\n'));
            let f: wire::ExecFrame = serde_json::from_slice(&line).unwrap();
            assert_eq!(f.stream, Some(stream));
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(f.data.unwrap())
                .unwrap();
            assert_eq!(bytes, data);
        }
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(tail_lines(b"a\n", 5), b"a\n");
    }
}
