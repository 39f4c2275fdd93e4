//! The Docker Engine API on `corral serve --docker-socket PATH` (issue 16), so the real `docker`
//! CLI and tools written against the Engine API drive Corral: `DOCKER_HOST=unix:///run/corral/docker.sock docker ps`.
//!
//! Served: what reads the host and its containers — `/_ping`, `/version`, `/info`,
//! `/containers/json`, `/containers/{id}/json`, `/images/json`, `/images/{name}/json`; the
//! lifecycle — create ([`create`]), start, stop, restart, kill, pause, unpause, update, wait,
//! remove — through the same rights check and audit rows as Corral's API (`http::change`);
//! the streams ([`stream`]) — attach, exec, logs, resize, wait; stats ([`stats`]); `docker
//! load`, `rmi` and `system df` over Corral's image store ([`images`]); `docker events` from
//! Corral's event hub ([`events`]); `docker top` from the runtime's reading of the
//! container's processes ([`top`]). Docker's JSON shapes and status codes (304 for a start of
//! a running container), on versioned (`/v1.43/…`) and unversioned paths. Every other
//! endpoint answers Docker's error shape (`{"message": …}`) naming what is not supported yet,
//! never a hang or a 500.
//!
//! Who may: the socket is 0600 like `docker.sock`, and only a peer with uid 0 (SO_PEERCRED) is
//! served, as root on Corral's own socket: an admin. There is no TCP listener: the docker CLI
//! cannot send a bearer token, and Corral's TLS listener has no client certificates.

mod create;
mod events;
mod images;
mod shapes;
mod stats;
mod stream;
mod top;

use axum::{
    Json, Router,
    extract::{ConnectInfo, Path, Query, Request, State},
    http::{HeaderValue, StatusCode, Uri, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::{auth::UnixPeer, http::AppState};

/// The Engine API version we answer with; the CLI negotiates down to it.
pub const API_VERSION: &str = "1.43";
/// The oldest version a client may ask for.
pub const MIN_API_VERSION: &str = "1.24";

/// An Engine API error: Docker's status and `{"message": …}` body.
#[derive(Debug)]
pub struct DockerError(pub StatusCode, pub String);

impl IntoResponse for DockerError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "message": self.1 }))).into_response()
    }
}

impl From<crate::http::AppError> for DockerError {
    fn from(e: crate::http::AppError) -> Self {
        let message = e.body().message;
        let status = e.into_response().status();
        DockerError(status, message)
    }
}

impl From<crate::runtime::RuntimeError> for DockerError {
    fn from(e: crate::runtime::RuntimeError) -> Self {
        use crate::runtime::RuntimeError as E;
        match &e {
            E::NotFound(name) => {
                DockerError(StatusCode::NOT_FOUND, format!("No such container: {name}"))
            }
            E::Invalid { .. } | E::Forbidden { .. } => {
                DockerError(StatusCode::BAD_REQUEST, e.to_string())
            }
            E::Conflict { .. } | E::NameInUse(_) => {
                DockerError(StatusCode::CONFLICT, e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "docker api");
                DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

/// The router of the Docker socket, wrapped so that a `/v1.NN` prefix is taken off before
/// routing.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/containers/json", get(containers_list))
        .route("/containers/{id}/json", get(container_inspect))
        .route("/containers/{id}", axum::routing::delete(container_remove))
        .route("/containers/{id}/start", post(container_start))
        .route("/containers/{id}/stop", post(container_stop))
        .route("/containers/{id}/restart", post(container_restart))
        .route("/containers/{id}/kill", post(container_kill))
        .route("/containers/{id}/pause", post(container_pause))
        .route("/containers/{id}/unpause", post(container_unpause))
        .route("/containers/{id}/update", post(container_update))
        .route(
            "/containers/{id}/wait",
            post(stream::container_wait).get(stream::container_wait),
        )
        .route("/containers/create", post(create::container_create))
        .route("/containers/{id}/attach", post(stream::container_attach))
        .route("/containers/{id}/resize", post(stream::container_resize))
        .route("/containers/{id}/logs", get(stream::container_logs))
        .route("/containers/{id}/exec", post(stream::exec_create))
        .route("/containers/{id}/stats", get(stats::container_stats))
        .route("/exec/{id}/start", post(stream::exec_start))
        .route("/exec/{id}/resize", post(stream::exec_resize))
        .route("/exec/{id}/json", get(stream::exec_inspect))
        .route("/images/create", post(images::image_pull))
        .route("/containers/{id}/top", get(top::container_top))
        .route("/images/json", get(images_list))
        .route("/images/load", post(images::images_load))
        .route("/images/{*name}", get(image_inspect))
        .route(
            "/images/{*name}",
            axum::routing::delete(images::image_remove),
        )
        .route("/system/df", get(images::system_df))
        .route("/events", get(events::events))
        .fallback(unsupported)
        .with_state(state);
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::from_fn(guard))
}

/// Root only (the peer's uid from SO_PEERCRED), the version prefix stripped, and Docker's
/// headers on every answer.
async fn guard(mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<UnixPeer>>()
        .map(|ConnectInfo(p)| *p);
    if peer.and_then(|p| p.uid) != Some(0) {
        return DockerError(
            StatusCode::FORBIDDEN,
            "the Docker socket of Corral is for root only".into(),
        )
        .into_response();
    }
    if let Some(path) = strip_version(req.uri().path()) {
        let pq = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        match pq.parse::<Uri>() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => {
                return DockerError(StatusCode::BAD_REQUEST, "bad request path".into())
                    .into_response();
            }
        }
    }
    // Changes are root's, over this socket: lifecycle events name it as Corral's own socket does.
    let mut resp = crate::events::with_actor(Some("root".into()), next.run(req)).await;
    let h = resp.headers_mut();
    h.insert("api-version", HeaderValue::from_static(API_VERSION));
    h.insert("docker-experimental", HeaderValue::from_static("false"));
    h.insert("ostype", HeaderValue::from_static("linux"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("Corral/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    resp
}

/// `/v1.43/containers/json` → `/containers/json`; `None` without a version prefix.
fn strip_version(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v")?;
    let (ver, tail) = rest.split_once('/')?;
    let (major, minor) = ver.split_once('.')?;
    (major.bytes().all(|b| b.is_ascii_digit())
        && !major.is_empty()
        && minor.bytes().all(|b| b.is_ascii_digit())
        && !minor.is_empty())
    .then(|| &path[path.len() - tail.len() - 1..])
}

async fn ping() -> Response {
    (
        [(header::CACHE_CONTROL, "no-cache, no-store, must-revalidate")],
        "OK",
    )
        .into_response()
}

fn manager(state: &AppState) -> Result<&crate::runtime::Manager, DockerError> {
    state.containers().ok_or_else(|| {
        DockerError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the container runtime is not available".into(),
        )
    })
}

async fn host(state: &AppState) -> Result<wire::HostInfo, DockerError> {
    crate::http::host_info_of(state)
        .await
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn version(State(state): State<AppState>) -> Result<Json<Value>, DockerError> {
    Ok(Json(shapes::version(&host(&state).await?)))
}

async fn info(State(state): State<AppState>) -> Result<Json<Value>, DockerError> {
    let host = host(&state).await?;
    let m = manager(&state)?;
    let containers = m.list(true).await?;
    let images = m
        .images()
        .list()
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(shapes::info(
        &host,
        &containers,
        images.len(),
        &state.config().state_dir,
    )))
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    all: Option<String>,
    filters: Option<String>,
    limit: Option<i64>,
    #[serde(flatten)]
    _rest: std::collections::HashMap<String, String>,
}

async fn containers_list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Value>>, DockerError> {
    let all = matches!(q.all.as_deref(), Some("1" | "true" | "True"));
    let filters = shapes::Filters::parse(q.filters.as_deref())
        .map_err(|e| DockerError(StatusCode::BAD_REQUEST, e))?;
    let mut list = manager(&state)?
        .list(all || filters.wants_stopped())
        .await?;
    list.retain(|c| filters.matches(c));
    // Newest first, like dockerd.
    list.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    if let Some(n) = q.limit.filter(|n| *n > 0) {
        list.truncate(n as usize);
    }
    let now = crate::metering::sampler::wall_ms() / 1000;
    Ok(Json(list.iter().map(|c| shapes::summary(c, now)).collect()))
}

async fn container_inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, DockerError> {
    let c = manager(&state)?.get(&resolve(&state, &id).await?).await?;
    Ok(Json(shapes::inspect(&c)))
}

/// Root on the Docker socket: an admin, audited as `root` via `unix`.
fn root() -> crate::auth::Actor {
    crate::auth::Actor::unix_root(0)
}

/// The container a Docker reference names: its name (with or without the leading `/`),
/// Corral's id, or Docker's 64-digit id or a unique prefix of it (what `docker ps` shows).
pub(crate) async fn resolve(state: &AppState, id: &str) -> Result<String, DockerError> {
    use crate::runtime::RuntimeError;
    let id = id.trim_start_matches('/');
    let m = manager(state)?;
    match m.get(id).await {
        Ok(c) => return Ok(c.name),
        Err(RuntimeError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        let all = m.list(true).await?;
        let hits: Vec<&wire::Container> = all
            .iter()
            .filter(|c| shapes::docker_id(&c.id).starts_with(id))
            .collect();
        match hits.as_slice() {
            [one] => return Ok(one.name.clone()),
            [] => {}
            _ => {
                return Err(DockerError(
                    StatusCode::BAD_REQUEST,
                    format!("multiple IDs found with provided prefix: {id}"),
                ));
            }
        }
    }
    Err(DockerError(
        StatusCode::NOT_FOUND,
        format!("No such container: {id}"),
    ))
}

/// 304 when the container is already in `status` (Docker's answer to a start of a running or
/// a stop of a stopped container).
async fn already(state: &AppState, name: &str, statuses: &[&str]) -> Result<bool, DockerError> {
    let c = manager(state)?.get(name).await?;
    Ok(statuses.contains(&c.status.as_str()))
}

#[derive(Debug, serde::Deserialize)]
struct StopQuery {
    t: Option<i64>,
    #[serde(flatten)]
    _rest: std::collections::HashMap<String, String>,
}

impl StopQuery {
    /// Docker's `-t`: seconds, `-1` waits forever (here: Corral's longest, 3600).
    fn timeout(&self) -> Result<Option<u64>, DockerError> {
        match self.t {
            None => Ok(None),
            Some(-1) => Ok(Some(3600)),
            Some(t @ 0..=3600) => Ok(Some(t as u64)),
            Some(t) => Err(DockerError(
                StatusCode::BAD_REQUEST,
                format!("invalid stop timeout {t}: 0 to 3600 seconds, or -1"),
            )),
        }
    }
}

async fn container_start(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, DockerError> {
    let name = &resolve(&state, &id).await?;
    if already(&state, name, &["running", "paused"]).await? {
        return Ok(StatusCode::NOT_MODIFIED);
    }
    crate::http::change(
        &state,
        &root(),
        name,
        "container.start",
        |m, n| async move { m.start(&n).await },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn container_stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> Result<StatusCode, DockerError> {
    let name = &resolve(&state, &id).await?;
    let t = q.timeout()?;
    if already(&state, name, &["exited", "created"]).await? {
        return Ok(StatusCode::NOT_MODIFIED);
    }
    crate::http::change(&state, &root(), name, "container.stop", |m, n| async move {
        m.stop(&n, t).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn container_restart(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StopQuery>,
) -> Result<StatusCode, DockerError> {
    let t = q.timeout()?;
    crate::http::change(
        &state,
        &root(),
        &resolve(&state, &id).await?,
        "container.restart",
        |m, n| async move { m.restart(&n, t).await },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize)]
struct KillQuery {
    signal: Option<String>,
}

async fn container_kill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<KillQuery>,
) -> Result<StatusCode, DockerError> {
    let name = &resolve(&state, &id).await?;
    if !already(&state, name, &["running", "paused"]).await? {
        return Err(DockerError(
            StatusCode::CONFLICT,
            format!("Container {name} is not running"),
        ));
    }
    // Docker spells signals SIGTERM, TERM or 15.
    let signal = q
        .signal
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_start_matches("SIG").to_owned());
    crate::http::change(&state, &root(), name, "container.kill", |m, n| async move {
        m.kill(&n, signal.as_deref()).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn container_pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, DockerError> {
    set_frozen(&state, &resolve(&state, &id).await?, true).await
}

async fn container_unpause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, DockerError> {
    set_frozen(&state, &resolve(&state, &id).await?, false).await
}

/// `docker pause`/`unpause`: Corral's freeze and thaw, audited as theirs.
async fn set_frozen(state: &AppState, name: &str, freeze: bool) -> Result<StatusCode, DockerError> {
    let action = if freeze {
        "container.freeze"
    } else {
        "container.thaw"
    };
    crate::http::change(state, &root(), name, action, move |m, n| async move {
        m.freeze(&n, freeze).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize)]
struct RemoveQuery {
    force: Option<String>,
    #[serde(flatten)]
    _rest: std::collections::HashMap<String, String>,
}

async fn container_remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, DockerError> {
    let force = matches!(q.force.as_deref(), Some("1" | "true" | "True"));
    crate::http::remove_container(&state, &root(), &resolve(&state, &id).await?, force).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `docker update`: the knobs Docker and Corral share, as one audited re-limit.
async fn container_update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, DockerError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| DockerError(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?;
    let patch = shapes::update_patch(&v).map_err(|e| DockerError(StatusCode::BAD_REQUEST, e))?;
    crate::http::change_limits(&state, &root(), &resolve(&state, &id).await?, patch).await?;
    Ok(Json(json!({"Warnings": []})))
}

async fn images_list(State(state): State<AppState>) -> Result<Json<Vec<Value>>, DockerError> {
    let images = manager(&state)?
        .images()
        .list()
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(images.iter().map(shapes::image_summary).collect()))
}

/// `GET /images/{name}/json` (a name may hold slashes: `library/busybox:latest`).
async fn image_inspect(
    State(state): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Json<Value>, DockerError> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(not_supported("GET", &format!("/images/{rest}")));
    };
    let images = manager(&state)?
        .images()
        .list()
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let wanted = if name.contains(':') || name.starts_with("sha256:") {
        name.to_owned()
    } else {
        format!("{name}:latest")
    };
    images
        .iter()
        .find(|i| {
            i.id == name
                || i.id.trim_start_matches("sha256:").starts_with(name)
                || i.tags.contains(&wanted)
        })
        .map(|i| Json(shapes::image_inspect(i)))
        .ok_or_else(|| DockerError(StatusCode::NOT_FOUND, format!("No such image: {name}")))
}

fn not_supported(method: &str, path: &str) -> DockerError {
    let what = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    DockerError(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "{method} {path} ({what}) is not supported by Corral's Docker API yet; use the corral \
             CLI or its API for it"
        ),
    )
}

async fn unsupported(req: Request) -> DockerError {
    not_supported(req.method().as_str(), req.uri().path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes_are_stripped() {
        assert_eq!(
            strip_version("/v1.43/containers/json"),
            Some("/containers/json")
        );
        assert_eq!(strip_version("/v1.24/_ping"), Some("/_ping"));
        assert_eq!(strip_version("/containers/json"), None);
        assert_eq!(strip_version("/v1/containers"), None);
        assert_eq!(strip_version("/vx.1/containers"), None);
        assert_eq!(strip_version("/volumes"), None);
    }
}
