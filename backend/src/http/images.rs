//! `/api/v1/images`: import (docker save tarball or OCI layout), list, remove.
//!
//! Everyone signed in lists images (operators create containers from them); import (which
//! reads a file of the daemon's host) and remove are admin only. Both are audited with target
//! `image:REF`.
//!
//! Import answers `201` with the image, or — when `Accept` asks for `application/x-ndjson`, as
//! `corral image import` does — `200` with a stream of `wire::ImportProgress` lines (bytes read
//! of the file and of each layer, then `done` or `error`), the way `docker load` streams its
//! progress. The request timeout times the answer's head only, so long imports finish.

use std::time::{Duration, Instant};

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppError, AppState, containers::manager, containers::outcome};
use crate::auth::{Actor, ApiJson, ApiPath, audit};
use crate::image::{ImageError, ImageStore, Progress};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(images_list))
        .routes(routes!(images_import))
        .routes(routes!(images_remove))
}

impl From<ImageError> for AppError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::NotFound(n) => AppError::NotFound(format!("no such image: {n}")),
            e @ (ImageError::Invalid { .. }
            | ImageError::Digest { .. }
            | ImageError::TooLarge { .. }
            | ImageError::Unpack { .. }) => AppError::Invalid {
                field: "path".into(),
                message: e.to_string(),
            },
            e @ ImageError::InUse(..) => AppError::Conflict(e.to_string()),
            other => AppError::internal("image operation failed", other),
        }
    }
}

/// Imported images.
#[utoipa::path(get, path = "/images", tag = "images",
    responses(
        (status = 200, description = "All images", body = Vec<wire::Image>),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn images_list(
    State(state): State<AppState>,
    _actor: Actor,
) -> Result<Json<Vec<wire::Image>>, AppError> {
    let images = manager(&state)?.images().clone();
    let list = tokio::task::spawn_blocking(move || images.list())
        .await
        .map_err(|e| AppError::internal("list images", e))??;
    Ok(Json(list))
}

/// Import a `docker save` tarball or an OCI image layout from the daemon's host (admin).
#[utoipa::path(post, path = "/images/import", tag = "images",
    request_body = wire::ImportImage,
    responses(
        (status = 200, description = "With `Accept: application/x-ndjson`: progress, one JSON object per line; the last one is `done` or `error`",
            body = wire::ImportProgress, content_type = "application/x-ndjson"),
        (status = 201, description = "Imported", body = wire::Image),
        (status = 400, description = "Invalid path, tag or image file", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "The file holds no image", body = wire::ApiError),
    ))]
async fn images_import(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    ApiJson(req): ApiJson<wire::ImportImage>,
) -> Result<Response, AppError> {
    let streamed = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(wire::NDJSON));
    let ev = audit::Event::new(&actor, "image.import").target(format!("image:{}", req.path));
    let images = match check(&state, &actor, &req) {
        Ok(images) => images,
        Err(e) => {
            audit::record(state.store(), audited(ev, Err(&e), &req.tag)).await;
            return Err(e);
        }
    };
    if streamed {
        return Ok(import_streamed(state, actor, req, images).await);
    }
    let path = req.path.clone();
    let r = run_import(images, req.path.clone(), req.tag.clone(), move |p| {
        tracing::debug!(image = %path, "import: {p:?}");
    })
    .await;
    audit::record(state.store(), audited(ev, r.as_ref(), &req.tag)).await;
    Ok((StatusCode::CREATED, Json(r?)).into_response())
}

/// Streams the import's progress as `application/x-ndjson`. The import runs to its end even
/// when the client goes away; its outcome is audited then.
async fn import_streamed(
    state: AppState,
    actor: Actor,
    req: wire::ImportImage,
    images: ImageStore,
) -> Response {
    let target = format!("image:{}", req.path);
    // The outcome is known only after the response has begun: the start is audited now (the
    // guard would otherwise log a generic row), the outcome when the import ends.
    audit::record(
        state.store(),
        audit::Event::new(&actor, "image.import.start")
            .target(target.clone())
            .after(json!({"tag": req.tag})),
    )
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<wire::ImportProgress>(64);
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let mut throttle = Throttle::default();
        let r = run_import(images, req.path.clone(), req.tag.clone(), move |p| {
            if let Some(ev) = throttle.event(p) {
                // A client that went away stops hearing progress; the import goes on.
                let _ = progress_tx.blocking_send(ev);
            }
        })
        .await;
        let ev = audited(
            audit::Event::new(&actor, "image.import").target(target),
            r.as_ref(),
            &req.tag,
        );
        let last = match r {
            Ok(img) => wire::ImportProgress {
                image: Some(img),
                ..wire::ImportProgress::new("done")
            },
            Err(e) => wire::ImportProgress {
                error: Some(e.body()),
                ..wire::ImportProgress::new("error")
            },
        };
        audit::record(state.store(), ev).await;
        let _ = tx.send(last).await;
    });
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, wire::NDJSON),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(lines),
    )
        .into_response()
}

/// Turns the store's progress into events: every step change and finished file, and otherwise
/// one when 100 ms have passed or another 5 % of the file was read.
#[derive(Default)]
struct Throttle {
    last: Option<(String, Option<u32>, u64, Instant)>,
}

impl Throttle {
    fn event(&mut self, p: Progress) -> Option<wire::ImportProgress> {
        let ev = match p {
            Progress::Unpack { current, total } => wire::ImportProgress {
                current,
                total,
                ..wire::ImportProgress::new("unpack")
            },
            Progress::Layer {
                index,
                count,
                id,
                current,
                total,
            } => wire::ImportProgress {
                current,
                total,
                layer: Some(index),
                layers: Some(count),
                id: Some(id),
                ..wire::ImportProgress::new("layer")
            },
            Progress::Imported { id, .. } => wire::ImportProgress {
                id: Some(id),
                ..wire::ImportProgress::new("imported")
            },
        };
        let now = Instant::now();
        let due = match &self.last {
            Some((status, layer, current, at)) => {
                *status != ev.status
                    || *layer != ev.layer
                    || ev.current >= ev.total
                    || ev.current.saturating_sub(*current) >= ev.total / 20
                    || now.duration_since(*at) >= Duration::from_millis(100)
            }
            None => true,
        };
        if due {
            self.last = Some((ev.status.clone(), ev.layer, ev.current, now));
            Some(ev)
        } else {
            None
        }
    }
}

/// Imports the image file at `path` (tagged `tag`), telling `on` of the progress; the first
/// image it holds.
async fn run_import(
    images: ImageStore,
    path: String,
    tag: Option<String>,
    mut on: impl FnMut(Progress) + Send + 'static,
) -> Result<wire::Image, AppError> {
    let imported = tokio::task::spawn_blocking(move || {
        images.import(std::path::Path::new(&path), tag.as_deref(), &mut on)
    })
    .await
    .map_err(|e| AppError::internal("import image", e))??;
    imported
        .into_iter()
        .next()
        .ok_or_else(|| AppError::NotFound("the file holds no image".into()))
}

/// The import's audit row, with its outcome.
fn audited(
    ev: audit::Event,
    r: Result<&wire::Image, &AppError>,
    tag: &Option<String>,
) -> audit::Event {
    match r {
        Ok(img) => ev.after(json!({"image": img, "tag": tag})),
        Err(e) => ev
            .after(json!({"tag": tag}))
            .result(outcome(e))
            .detail(e.to_string()),
    }
}
/// Admin, an absolute path to something that exists, a well-formed tag.
fn check(state: &AppState, actor: &Actor, req: &wire::ImportImage) -> Result<ImageStore, AppError> {
    actor.require_admin()?;
    let path = std::path::PathBuf::from(&req.path);
    if !path.is_absolute() {
        return Err(AppError::Invalid {
            field: "path".into(),
            message: format!(
                "{:?} must be an absolute path on the daemon's host",
                req.path
            ),
        });
    }
    if let Some(t) = &req.tag {
        let ok = !t.is_empty()
            && t.len() <= 255
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
        if !ok {
            return Err(AppError::Invalid {
                field: "tag".into(),
                message: format!("{t:?} must be name[:tag] of [A-Za-z0-9._-/:@]"),
            });
        }
    }
    if !path.exists() {
        return Err(AppError::Invalid {
            field: "path".into(),
            message: format!("no such file or directory: {}", req.path),
        });
    }
    Ok(manager(state)?.images().clone())
}

/// Remove an image no container uses (admin).
#[utoipa::path(delete, path = "/images/{image}", tag = "images",
    params(("image" = String, Path, description = "name:tag or id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed reference", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such image", body = wire::ApiError),
        (status = 409, description = "A container uses it", body = wire::ApiError),
    ))]
async fn images_remove(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(image): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    let r = async {
        actor.require_admin()?;
        let images = manager(&state)?.images().clone();
        let reference = image.clone();
        let before = tokio::task::spawn_blocking(move || images.list())
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|l| {
                l.into_iter()
                    .find(|i| i.id == reference || i.tags.contains(&reference))
            });
        manager(&state)?.remove_image(&image).await?;
        Ok::<_, AppError>(before)
    }
    .await;
    let mut ev = audit::Event::new(&actor, "image.remove").target(format!("image:{image}"));
    ev = match &r {
        Ok(before) => ev.before(json!(before)).after(json!("removed")),
        Err(e) => ev.result(outcome(e)).detail(e.to_string()),
    };
    audit::record(state.store(), ev).await;
    r?;
    Ok(StatusCode::NO_CONTENT)
}
