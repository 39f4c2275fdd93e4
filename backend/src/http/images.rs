//! `/api/v1/images`: import (docker save tarball or OCI layout), list, remove.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get, post},
};

use super::{AppError, AppState, containers::ApiJson, containers::manager};
use crate::image::ImageError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/images", get(images_list))
        .route("/images/import", post(images_import))
        .route("/images/{image}", delete(images_remove))
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

async fn images_list(State(state): State<AppState>) -> Result<Json<Vec<wire::Image>>, AppError> {
    let images = manager(&state)?.images().clone();
    let list = tokio::task::spawn_blocking(move || images.list())
        .await
        .map_err(|e| AppError::internal("list images", e))??;
    Ok(Json(list))
}

async fn images_import(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<wire::ImportImage>,
) -> Result<(StatusCode, Json<wire::Image>), AppError> {
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
    let images = manager(&state)?.images().clone();
    let tag = req.tag.clone();
    let imported = tokio::task::spawn_blocking(move || {
        images.import(&path, tag.as_deref(), &mut |line| {
            tracing::info!(image = %path.display(), "import: {line}");
        })
    })
    .await
    .map_err(|e| AppError::internal("import image", e))??;
    let first = imported
        .into_iter()
        .next()
        .ok_or_else(|| AppError::NotFound("the file holds no image".into()))?;
    Ok((StatusCode::CREATED, Json(first)))
}

async fn images_remove(
    State(state): State<AppState>,
    Path(image): Path<String>,
) -> Result<StatusCode, AppError> {
    manager(&state)?.remove_image(&image).await?;
    Ok(StatusCode::NO_CONTENT)
}
