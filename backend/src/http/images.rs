//! `/api/v1/images`: import (docker save tarball or OCI layout), list, remove.
//!
//! Everyone signed in lists images (operators create containers from them); import and remove
//! are admin only. Both are audited with target `image:REF`.
//!
//! Import takes the file in one of two ways. Uploaded: the body is the file itself (any
//! content type but JSON, e.g. `application/x-tar`; `?tag=` and `?filename=` in the query),
//! streamed to `<state>/images/tmp` under `--max-upload-size` (default 8 GiB) with the state
//! filesystem's room checked before and while it is written, and removed when the import ends,
//! fails, or the client goes away; this is what `corral image import` and the dashboard send,
//! so a remote daemon can import. Or by path: a JSON `wire::ImportImage` naming a file on the
//! daemon's host. The 1 MiB body cap and the 30 s answer deadline of other routes do not apply
//! to an upload (`is_upload`); an upload idle for [`UPLOAD_IDLE`] is dropped.
//!
//! Import answers `201` with the image, or — when `Accept` asks for `application/x-ndjson`, as
//! `corral image import` does — `200` with a stream of `wire::ImportProgress` lines (bytes read
//! of the file and of each layer, then `done` or `error`), the way `docker load` streams its
//! progress. The request timeout times the answer's head only, so long imports finish.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use axum::{
    Json,
    body::Body,
    extract::{FromRequest, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppError, AppState, containers::manager, containers::outcome};
use crate::auth::{Actor, ApiJson, ApiPath, ApiQuery, audit};
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

/// Query of an uploaded import.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// Name (`name` or `name:tag`) to give the image, besides the names the file carries; a
    /// bare OCI tag (`ref.name` = `latest`) becomes `NAME:latest`.
    #[param(pattern = r"^[A-Za-z0-9._/:@-]{1,255}$")]
    tag: Option<String>,
    /// The file's name on the client: the image name of a bare OCI tag when no `tag` is
    /// given (`x.tar` → `x:latest`).
    #[param(max_length = 255)]
    filename: Option<String>,
}

/// An upload that sends nothing for this long is dropped (and its file removed).
pub const UPLOAD_IDLE: Duration = Duration::from_secs(60);

/// Whether `req` is an image upload: `POST /api/v1/images/import` with a body that is not
/// JSON. Its handler bounds the body itself; the router's cap and deadline skip it.
pub fn is_upload(req: &Request) -> bool {
    req.method() == Method::POST
        && req.uri().path() == "/api/v1/images/import"
        && !is_json(req.headers())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Import a `docker save` tarball or an OCI layout (admin): the file uploaded as the body, or
/// (JSON body) a file on the daemon's host.
#[utoipa::path(post, path = "/images/import", tag = "images",
    params(UploadParams),
    request_body(description = "The image file (`docker save` tarball or OCI layout tar, gzip or zstd allowed), or a JSON `ImportImage` naming a file on the daemon's host",
        content(
            (Vec<u8> = "application/x-tar"),
            (Vec<u8> = "application/octet-stream"),
            (wire::ImportImage = "application/json"),
        )),
    responses(
        (status = 200, description = "With `Accept: application/x-ndjson`: progress, one JSON object per line; the last one is `done` or `error`",
            body = wire::ImportProgress, content_type = "application/x-ndjson"),
        (status = 201, description = "Imported", body = wire::Image),
        (status = 400, description = "Invalid path, tag, file name or image file; an upload cut short", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "The file holds no image", body = wire::ApiError),
        (status = 413, description = "The upload is larger than --max-upload-size", body = wire::ApiError),
        (status = 507, description = "The state filesystem has no room for the upload", body = wire::ApiError),
    ))]
async fn images_import(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<UploadParams>,
    request: Request,
) -> Result<Response, AppError> {
    let streamed = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(wire::NDJSON));
    let job = if is_json(&headers) {
        let ApiJson(req) = ApiJson::<wire::ImportImage>::from_request(request, &state).await?;
        let ev = audit::Event::new(&actor, "image.import").target(format!("image:{}", req.path));
        if let Err(e) = check(&actor, &req) {
            audit::record(state.store(), audited(ev, Err(&e), &req.tag)).await;
            return Err(e);
        }
        Job {
            target: format!("image:{}", req.path),
            path: PathBuf::from(&req.path),
            tag: req.tag,
            source_name: None,
            upload: None,
        }
    } else {
        let name = params.filename.clone().unwrap_or_default();
        let target = format!("image:upload:{name}");
        let ev = audit::Event::new(&actor, "image.import").target(target.clone());
        match receive(&state, &actor, &headers, &params, request.into_body()).await {
            Ok(upload) => Job {
                target,
                path: upload.path.clone(),
                tag: params.tag,
                source_name: params.filename,
                upload: Some(upload),
            },
            Err(e) => {
                audit::record(state.store(), audited(ev, Err(&e), &params.tag)).await;
                return Err(e);
            }
        }
    };
    let images = manager(&state)?.images().clone();
    if streamed {
        return Ok(import_streamed(state, actor, job, images).await);
    }
    let ev = audit::Event::new(&actor, "image.import").target(job.target.clone());
    let tag = job.tag.clone();
    let r = run_import(images, job, move |p| {
        tracing::debug!("import: {p:?}");
    })
    .await;
    audit::record(state.store(), audited(ev, r.as_ref(), &tag)).await;
    Ok((StatusCode::CREATED, Json(r?)).into_response())
}

/// One import: the file, how to name its images, the audit target; an upload's file, removed
/// when the job is dropped.
struct Job {
    path: PathBuf,
    tag: Option<String>,
    source_name: Option<String>,
    target: String,
    upload: Option<Upload>,
}

/// An uploaded file under `<state>/images/tmp`, removed when dropped.
struct Upload {
    path: PathBuf,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove an upload");
        }
    }
}

/// Bytes free for the daemon on the filesystem of `dir`, if it can tell.
fn room(dir: &Path) -> Option<u64> {
    nix::sys::statvfs::statvfs(dir)
        .ok()
        .map(|v| v.blocks_available().saturating_mul(v.fragment_size()))
}

/// Checks an upload's request (admin, tag, file name, announced size, room) and writes its
/// body to a file of the image store's temporary directory.
async fn receive(
    state: &AppState,
    actor: &Actor,
    headers: &HeaderMap,
    params: &UploadParams,
    body: Body,
) -> Result<Upload, AppError> {
    actor.require_admin()?;
    if let Some(t) = &params.tag {
        check_tag(t)?;
    }
    if let Some(f) = &params.filename
        && (f.is_empty() || f.len() > 255 || f.contains(['/', '\0']))
    {
        return Err(AppError::Invalid {
            field: "filename".into(),
            message: format!("{f:?} must be a file name of 1 to 255 bytes without '/'"),
        });
    }
    let images = manager(state)?.images().clone();
    let max = images.limits().max_upload_size;
    let too_large = |n: u64| {
        AppError::TooLarge(format!(
            "the upload ({n} bytes) is larger than --max-upload-size ({})",
            crate::image::show_size(max)
        ))
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let path = images.upload_path();
    let dir = path.parent().map(Path::to_owned).unwrap_or_default();
    // Room for the file plus the audit reserve; the import then unpacks under its own caps.
    let reserve = crate::auth::audit::RESERVE_BYTES;
    let no_room = |need: u64, free: u64| {
        AppError::NoRoom(format!(
            "the state filesystem has {} MiB free, the upload needs {} MiB more (and {} MiB \
             are kept for the audit log); free space there and try again",
            free >> 20,
            need.div_ceil(1 << 20),
            reserve >> 20
        ))
    };
    if let Some(n) = announced {
        if n > max {
            return Err(too_large(n));
        }
        if let Some(free) = room(&dir)
            && free < n.saturating_add(reserve)
        {
            return Err(no_room(n, free));
        }
    }
    let upload = Upload { path };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&upload.path)
        .await
        .map_err(|e| AppError::internal(format!("create {}", upload.path.display()), e))?;
    let mut stream = body.into_data_stream();
    let (mut written, mut checked) = (0u64, 0u64);
    let cut = |message: String| AppError::Invalid {
        field: "body".into(),
        message,
    };
    loop {
        let chunk = match tokio::time::timeout(UPLOAD_IDLE, stream.next()).await {
            Err(_) => {
                return Err(cut(format!(
                    "the upload stalled: nothing arrived for {} s after {written} bytes",
                    UPLOAD_IDLE.as_secs()
                )));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(cut(format!(
                    "the upload broke off after {written} bytes: {e}"
                )));
            }
            Ok(Some(Ok(c))) => c,
        };
        written += chunk.len() as u64;
        if written > max {
            return Err(too_large(written));
        }
        // A body of unknown length is checked for room every 64 MiB.
        if announced.is_none() && written - checked >= 64 << 20 {
            checked = written;
            if let Some(free) = room(&dir)
                && free < reserve + (64 << 20)
            {
                return Err(no_room(64 << 20, free));
            }
        }
        file.write_all(&chunk).await.map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ENOSPC) {
                no_room(chunk.len() as u64, 0)
            } else {
                AppError::internal(format!("write {}", upload.path.display()), e)
            }
        })?;
    }
    if let Some(n) = announced
        && n != written
    {
        return Err(cut(format!(
            "the upload ended after {written} of {n} bytes"
        )));
    }
    file.flush()
        .await
        .map_err(|e| AppError::internal(format!("write {}", upload.path.display()), e))?;
    if written == 0 {
        return Err(cut(
            "the upload is empty: send the image file as the body".into()
        ));
    }
    Ok(upload)
}

/// Streams the import's progress as `application/x-ndjson`. The import runs to its end even
/// when the client goes away; its outcome is audited then.
async fn import_streamed(state: AppState, actor: Actor, job: Job, images: ImageStore) -> Response {
    let target = job.target.clone();
    let tag = job.tag.clone();
    // The outcome is known only after the response has begun: the start is audited now (the
    // guard would otherwise log a generic row), the outcome when the import ends.
    audit::record(
        state.store(),
        audit::Event::new(&actor, "image.import.start")
            .target(target.clone())
            .after(json!({"tag": tag})),
    )
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<wire::ImportProgress>(64);
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let mut throttle = Throttle::default();
        let r = run_import(images, job, move |p| {
            if let Some(ev) = throttle.event(p) {
                // A client that went away stops hearing progress; the import goes on.
                let _ = progress_tx.blocking_send(ev);
            }
        })
        .await;
        let ev = audited(
            audit::Event::new(&actor, "image.import").target(target),
            r.as_ref(),
            &tag,
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

/// Runs `job`, telling `on` of the progress; the first image the file holds. An uploaded
/// file is removed when the import ends (also when the client has gone away meanwhile).
async fn run_import(
    images: ImageStore,
    job: Job,
    on: impl FnMut(Progress) + Send + 'static,
) -> Result<wire::Image, AppError> {
    run_import_all(images, job, on)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| AppError::NotFound("the file holds no image".into()))
}

/// Runs `job`: every image the file holds (at least one).
async fn run_import_all(
    images: ImageStore,
    job: Job,
    mut on: impl FnMut(Progress) + Send + 'static,
) -> Result<Vec<wire::Image>, AppError> {
    let imported = tokio::task::spawn_blocking(move || {
        let r = images.import(
            &job.path,
            job.tag.as_deref(),
            job.source_name.as_deref(),
            &mut on,
        );
        drop(job.upload);
        r
    })
    .await
    .map_err(|e| AppError::internal("import image", e))??;
    if imported.is_empty() {
        return Err(AppError::NotFound("the file holds no image".into()));
    }
    Ok(imported)
}

/// Imports an image file uploaded as `body` for `actor` (an admin), under the upload's
/// limits and audited as `image.import` with target `image:upload:SOURCE`, like
/// `POST /images/import`: every image the file holds. The Docker API's `docker load`.
pub(crate) async fn import_upload(
    state: &AppState,
    actor: &Actor,
    headers: &HeaderMap,
    body: Body,
    source: &str,
) -> Result<Vec<wire::Image>, AppError> {
    let params = UploadParams {
        tag: None,
        filename: Some(source.to_owned()),
    };
    let ev = audit::Event::new(actor, "image.import").target(format!("image:upload:{source}"));
    let r = async {
        let upload = receive(state, actor, headers, &params, body).await?;
        let job = Job {
            target: String::new(),
            path: upload.path.clone(),
            tag: None,
            source_name: params.filename.clone(),
            upload: Some(upload),
        };
        let images = manager(state)?.images().clone();
        run_import_all(images, job, |_| {}).await
    }
    .await;
    let ev = match &r {
        Ok(list) => ev.after(json!({"images": list})),
        Err(e) => ev.result(outcome(e)).detail(e.to_string()),
    };
    audit::record(state.store(), ev).await;
    r
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
fn check(actor: &Actor, req: &wire::ImportImage) -> Result<(), AppError> {
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
        check_tag(t)?;
    }
    if !path.exists() {
        return Err(AppError::Invalid {
            field: "path".into(),
            message: format!("no such file or directory: {}", req.path),
        });
    }
    Ok(())
}

/// `name[:tag]` of `[A-Za-z0-9._-/:@]`, 1 to 255 bytes.
fn check_tag(t: &str) -> Result<(), AppError> {
    let ok = !t.is_empty()
        && t.len() <= 255
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AppError::Invalid {
            field: "tag".into(),
            message: format!("{t:?} must be name[:tag] of [A-Za-z0-9._-/:@]"),
        })
    }
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
    remove_image(&state, &actor, &image).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes `image` (name:tag or id) for `actor` (an admin) unless a container uses it,
/// audited as `image.remove` with the image as it was: the image removed, if the store
/// could list it first. Also the Docker API's `docker rmi`.
pub(crate) async fn remove_image(
    state: &AppState,
    actor: &Actor,
    image: &str,
) -> Result<Option<wire::Image>, AppError> {
    let image = image.to_owned();
    let r = async {
        actor.require_admin()?;
        let images = manager(state)?.images().clone();
        let reference = image.clone();
        let before = tokio::task::spawn_blocking(move || images.list())
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|l| {
                l.into_iter()
                    .find(|i| i.id == reference || i.tags.contains(&reference))
            });
        manager(state)?.remove_image(&image).await?;
        Ok::<_, AppError>(before)
    }
    .await;
    let mut ev = audit::Event::new(actor, "image.remove").target(format!("image:{image}"));
    ev = match &r {
        Ok(before) => ev.before(json!(before)).after(json!("removed")),
        Err(e) => ev.result(outcome(e)).detail(e.to_string()),
    };
    audit::record(state.store(), ev).await;
    r
}
