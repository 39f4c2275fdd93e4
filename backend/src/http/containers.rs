//! `/api/v1/containers`: create, list, inspect, start, stop, kill, restart, freeze/thaw,
//! live re-limit, exec, logs, remove.

use std::{io::SeekFrom, path::PathBuf, time::Duration};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{FromRequest, Path, Query, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, de::DeserializeOwned};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{AppError, AppState};
use crate::runtime::{Manager, RuntimeError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/containers", get(containers_list).post(containers_create))
        .route(
            "/containers/{name}",
            get(containers_get).delete(containers_remove),
        )
        .route("/containers/{name}/start", post(containers_start))
        .route("/containers/{name}/stop", post(containers_stop))
        .route("/containers/{name}/restart", post(containers_restart))
        .route("/containers/{name}/kill", post(containers_kill))
        .route("/containers/{name}/freeze", post(containers_freeze))
        .route("/containers/{name}/thaw", post(containers_thaw))
        .route(
            "/containers/{name}/limits",
            get(containers_limits).patch(containers_update),
        )
        .route("/containers/{name}/exec", post(containers_exec))
        .route("/containers/{name}/logs", get(containers_logs))
}

/// A JSON body whose decoding errors become `invalid_value` answers naming the field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| AppError::Invalid {
                field: "body".into(),
                message: e.body_text(),
            })?;
        let body: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        serde_json::from_slice(body).map(ApiJson).map_err(|e| {
            let msg = e.to_string();
            let field = ["unknown field `", "missing field `", "duplicate field `"]
                .iter()
                .find_map(|p| msg.split_once(p).and_then(|(_, r)| r.split('`').next()))
                .unwrap_or("body")
                .to_owned();
            AppError::Invalid {
                field,
                message: msg,
            }
        })
    }
}

impl From<RuntimeError> for AppError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Invalid { field, message } => AppError::Invalid { field, message },
            RuntimeError::NotFound(n) => AppError::NotFound(format!("no such container: {n}")),
            e @ (RuntimeError::NameInUse(_) | RuntimeError::Conflict { .. }) => {
                AppError::Conflict(e.to_string())
            }
            e @ RuntimeError::Start { .. } => AppError::Invalid {
                field: "command".into(),
                message: e.to_string(),
            },
            RuntimeError::Image(e) => e.into(),
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn containers_list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<wire::Container>>, AppError> {
    Ok(Json(manager(&state)?.list(q.all).await?))
}

async fn containers_create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<wire::CreateContainer>,
) -> Result<(StatusCode, Json<wire::Container>), AppError> {
    let c = manager(&state)?.create(req).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

async fn containers_get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<wire::Container>, AppError> {
    Ok(Json(manager(&state)?.get(&name).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

async fn containers_remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, AppError> {
    manager(&state)?.remove(&name, q.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn containers_start(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<wire::Container>, AppError> {
    Ok(Json(manager(&state)?.start(&name).await?))
}

async fn containers_stop(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<wire::StopContainer>,
) -> Result<Json<wire::Container>, AppError> {
    Ok(Json(manager(&state)?.stop(&name, req.timeout).await?))
}

async fn containers_restart(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<wire::StopContainer>,
) -> Result<Json<wire::Container>, AppError> {
    Ok(Json(manager(&state)?.restart(&name, req.timeout).await?))
}

async fn containers_kill(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<wire::KillContainer>,
) -> Result<Json<wire::Container>, AppError> {
    Ok(Json(
        manager(&state)?.kill(&name, req.signal.as_deref()).await?,
    ))
}

async fn containers_freeze(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<wire::Container>, AppError> {
    Ok(Json(manager(&state)?.freeze(&name, true).await?))
}

async fn containers_thaw(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<wire::Container>, AppError> {
    Ok(Json(manager(&state)?.freeze(&name, false).await?))
}

async fn containers_limits(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<wire::Limits>, AppError> {
    Ok(Json(manager(&state)?.kernel_limits(&name).await?))
}

async fn containers_update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<wire::Limits>,
) -> Result<Json<wire::Container>, AppError> {
    Ok(Json(manager(&state)?.update(&name, patch).await?))
}

async fn containers_exec(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<wire::ExecRequest>,
) -> Result<Json<wire::ExecResult>, AppError> {
    Ok(Json(manager(&state)?.exec(&name, req).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
}

/// Reads `path` from `offset`; returns the bytes and the new offset (0 and everything when
/// the file was rotated and is now shorter).
async fn read_from(path: &PathBuf, offset: u64) -> (Vec<u8>, u64) {
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

fn tail_lines(data: &[u8], n: usize) -> &[u8] {
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

/// `GET /containers/{name}/logs?tail=N&follow=true`: stdout and stderr as they arrived.
async fn containers_logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, AppError> {
    let m = manager(&state)?.clone();
    let (files, name) = m.log_source(&name).await?;
    let (old, _) = read_from(&files[0], 0).await;
    let (cur, offset) = read_from(&files[1], 0).await;
    let mut all = old;
    all.extend_from_slice(&cur);
    let first = match q.tail {
        Some(n) => tail_lines(&all, n).to_vec(),
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

#[cfg(test)]
mod tests {
    use super::tail_lines;

    #[test]
    fn tails() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(tail_lines(b"a\n", 5), b"a\n");
    }
}
