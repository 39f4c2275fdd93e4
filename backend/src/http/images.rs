//! `/api/v1/images`: import (docker save tarball or OCI layout), list, remove.
//!
//! Everyone signed in lists images (operators create containers from them); import (which
//! reads a file of the daemon's host) and remove are admin only. Both are audited with target
//! `image:REF`.

use axum::{Json, extract::State, http::StatusCode};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppError, AppState, containers::manager, containers::outcome};
use crate::auth::{Actor, ApiJson, ApiPath, audit};
use crate::image::ImageError;

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
        (status = 201, description = "Imported", body = wire::Image),
        (status = 400, description = "Invalid path, tag or image file", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "The file holds no image", body = wire::ApiError),
    ))]
async fn images_import(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<wire::ImportImage>,
) -> Result<(StatusCode, Json<wire::Image>), AppError> {
    let ev = audit::Event::new(&actor, "image.import").target(format!("image:{}", req.path));
    let r = import(&state, &actor, &req).await;
    let ev = match &r {
        Ok(img) => ev.after(json!({"image": img, "tag": req.tag})),
        Err(e) => ev
            .after(json!({"tag": req.tag}))
            .result(outcome(e))
            .detail(e.to_string()),
    };
    audit::record(state.store(), ev).await;
    Ok((StatusCode::CREATED, Json(r?)))
}

async fn import(
    state: &AppState,
    actor: &Actor,
    req: &wire::ImportImage,
) -> Result<wire::Image, AppError> {
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
    let images = manager(state)?.images().clone();
    let tag = req.tag.clone();
    let imported = tokio::task::spawn_blocking(move || {
        images.import(&path, tag.as_deref(), &mut |line| {
            tracing::info!(image = %path.display(), "import: {line}");
        })
    })
    .await
    .map_err(|e| AppError::internal("import image", e))??;
    imported
        .into_iter()
        .next()
        .ok_or_else(|| AppError::NotFound("the file holds no image".into()))
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
