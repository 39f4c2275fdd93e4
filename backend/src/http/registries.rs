//! `POST /api/v1/images/pull` (a registry pull into the image store) and
//! `POST /api/v1/registries/login|logout` (the credentials pulls use).
//!
//! All three are admin only, like an image import, and audited: `image.pull` with target
//! `image:REF` (and `image.pull.start` when the answer streams), `registry.login` and
//! `registry.logout` with target `registry:HOST` (never the password). A pull answers `201`
//! with `wire::Pulled` (`200` when the image was up to date), or — with `Accept:
//! application/x-ndjson` — `200` and `wire::PullProgress` lines in `docker pull`'s words. A
//! refusal found before the first progress line (bad reference, unknown image,
//! unauthorized, rate-limited, no matching platform, TLS, unreachable) is an error answer:
//! 400 for the reference, 404 `image_unknown`, else 424 with a code naming the cause; one
//! found later is the stream's `error` line.

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use tokio::sync::mpsc;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppError, AppState, containers::manager, containers::outcome};
use crate::auth::{Actor, ApiJson, audit};
use crate::image::ImageError;
use crate::registry::{Credentials, PullEvent, Pulled, RegistryError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(images_pull))
        .routes(routes!(registries_login))
        .routes(routes!(registries_logout))
}

/// The path of the pull route, whose answer may take longer than the router's deadline.
pub const PULL_PATH: &str = "/api/v1/images/pull";

impl From<RegistryError> for AppError {
    fn from(e: RegistryError) -> Self {
        let code = e.code();
        match e {
            RegistryError::BadReference { .. } => AppError::Invalid {
                field: "reference".into(),
                message: e.to_string(),
            },
            RegistryError::BadRegistry(_) => AppError::Invalid {
                field: "registry".into(),
                message: e.to_string(),
            },
            RegistryError::NotFound { .. } => AppError::Refused {
                status: StatusCode::NOT_FOUND,
                code,
                message: e.to_string(),
            },
            RegistryError::Io { .. }
            | RegistryError::Credentials { .. }
            | RegistryError::Image(ImageError::Io { .. } | ImageError::Sql(_)) => {
                AppError::internal("registry pull", e)
            }
            e => AppError::Refused {
                status: StatusCode::FAILED_DEPENDENCY,
                code,
                message: e.to_string(),
            },
        }
    }
}

/// What a running pull sends: progress, then its outcome.
pub(crate) enum PullMsg {
    Event(PullEvent),
    Done(Result<Pulled, AppError>),
}

/// A pull that got as far as its first progress event: that event and the rest.
pub(crate) struct Started {
    pub first: PullEvent,
    pub rx: mpsc::UnboundedReceiver<PullMsg>,
}

/// Starts pulling `reference` for `actor` (an admin), audited as `image.pull` with target
/// `image:REFERENCE` when it ends (it runs to its end even when the client goes away). A
/// refusal before the first progress event is returned as the error; also the Docker API's
/// `docker pull`.
pub(crate) async fn start_pull(
    state: &AppState,
    actor: &Actor,
    reference: &str,
) -> Result<Started, AppError> {
    let ev = audit::Event::new(actor, "image.pull").target(format!("image:{reference}"));
    let checked = (|| {
        actor.require_admin()?;
        crate::registry::Reference::parse(reference)?;
        let images = manager(state)?.images().clone();
        Ok::<_, AppError>(images)
    })();
    let images = match checked {
        Ok(i) => i,
        Err(e) => {
            audit::record(state.store(), ev.result(outcome(&e)).detail(e.to_string())).await;
            return Err(e);
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let registries = state.registries().clone();
    let store = state.store().clone();
    let reference = reference.to_owned();
    tokio::spawn(async move {
        let events = tx.clone();
        let mut on = move |e: PullEvent| {
            let _ = events.send(PullMsg::Event(e));
        };
        let r = registries
            .pull(&images, &reference, &mut on)
            .await
            .map_err(AppError::from);
        let ev = match &r {
            Ok(p) => ev.after(json!({
                "name": p.name, "digest": p.digest, "image": p.image.id,
                "up_to_date": p.up_to_date, "downloaded": p.downloaded,
            })),
            Err(e) => ev.result(outcome(e)).detail(e.to_string()),
        };
        audit::record(&store, ev).await;
        let _ = tx.send(PullMsg::Done(r));
    });
    match rx.recv().await {
        Some(PullMsg::Event(first)) => Ok(Started { first, rx }),
        Some(PullMsg::Done(Err(e))) => Err(e),
        Some(PullMsg::Done(Ok(p))) => {
            // Done without a word of progress cannot happen; answer it as a finished pull.
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(PullMsg::Done(Ok(p)));
            Ok(Started {
                first: PullEvent {
                    id: None,
                    status: "Pulling".into(),
                    current: 0,
                    total: 0,
                },
                rx,
            })
        }
        None => Err(AppError::Internal {
            context: "the pull ended without an outcome".into(),
            source: "pull task".into(),
        }),
    }
}

fn progress_of(e: PullEvent) -> wire::PullProgress {
    wire::PullProgress {
        id: e.id,
        current: e.current,
        total: e.total,
        ..wire::PullProgress::new(e.status)
    }
}

/// Pull an image from a registry into the store (admin), as `docker pull` does.
#[utoipa::path(post, path = "/images/pull", tag = "images",
    request_body = wire::PullImage,
    responses(
        (status = 200, description = "Up to date (nothing downloaded); or, with `Accept: application/x-ndjson`, progress lines in `docker pull`'s words, the last one `done` or `error`",
            content(
                (wire::Pulled = "application/json"),
                (wire::PullProgress = "application/x-ndjson"),
            )),
        (status = 201, description = "Pulled and stored", body = wire::Pulled),
        (status = 400, description = "Invalid reference; an image the import refused", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "`image_unknown`: the registry has no such repository, tag or digest", body = wire::ApiError),
        (status = 424, description = "The registry refused or failed: `registry_unauthorized`, `registry_rate_limited`, `no_matching_platform`, `digest_mismatch`, `registry_tls`, `registry_insecure`, `registry_unreachable`, `registry_error`, `image_unsupported`, `image_invalid`", body = wire::ApiError),
    ))]
async fn images_pull(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    ApiJson(req): ApiJson<wire::PullImage>,
) -> Result<Response, AppError> {
    let streamed = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(wire::NDJSON));
    let Started { first, mut rx } = start_pull(&state, &actor, &req.reference).await?;
    if !streamed {
        loop {
            match rx.recv().await {
                Some(PullMsg::Event(_)) => {}
                Some(PullMsg::Done(r)) => {
                    let p = r?;
                    let status = if p.up_to_date {
                        StatusCode::OK
                    } else {
                        StatusCode::CREATED
                    };
                    return Ok((status, Json(wire::Pulled::from(p))).into_response());
                }
                None => {
                    return Err(AppError::Internal {
                        context: "the pull ended without an outcome".into(),
                        source: "pull task".into(),
                    });
                }
            }
        }
    }
    audit::record(
        state.store(),
        audit::Event::new(&actor, "image.pull.start").target(format!("image:{}", req.reference)),
    )
    .await;
    let first = progress_of(first);
    let lines = futures::stream::unfold((Some(first), Some(rx)), |(first, rx)| async move {
        let mut rx = rx?;
        let p = match first {
            Some(p) => p,
            None => match rx.recv().await? {
                PullMsg::Event(e) => progress_of(e),
                PullMsg::Done(Ok(p)) => {
                    let last = wire::PullProgress {
                        pulled: Some(p.into()),
                        ..wire::PullProgress::new("done")
                    };
                    return Some((line(&last), (None, None)));
                }
                PullMsg::Done(Err(e)) => {
                    let last = wire::PullProgress {
                        error: Some(e.body()),
                        ..wire::PullProgress::new("error")
                    };
                    return Some((line(&last), (None, None)));
                }
            },
        };
        Some((line(&p), (None, Some(rx))))
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, wire::NDJSON),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(lines),
    )
        .into_response())
}

fn line(p: &wire::PullProgress) -> Result<Vec<u8>, std::convert::Infallible> {
    let mut l = serde_json::to_vec(p).unwrap_or_default();
    l.push(b'\n');
    Ok(l)
}

/// Check credentials against a registry and keep them for pulls (admin).
#[utoipa::path(post, path = "/registries/login", tag = "images",
    request_body = wire::RegistryLogin,
    responses(
        (status = 200, description = "The registry accepted the credentials; they are stored (root-only, 0600)", body = wire::RegistryAuth),
        (status = 400, description = "Invalid registry name", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "The registry has no /v2/ API", body = wire::ApiError),
        (status = 424, description = "The registry refused the credentials (`registry_unauthorized`) or could not be reached (`registry_tls`, `registry_insecure`, `registry_unreachable`, `registry_error`)", body = wire::ApiError),
    ))]
async fn registries_login(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<wire::RegistryLogin>,
) -> Result<Json<wire::RegistryAuth>, AppError> {
    let ev =
        audit::Event::new(&actor, "registry.login").target(format!("registry:{}", req.registry));
    let r = async {
        actor.require_admin()?;
        if req.username.is_empty() || req.username.len() > 255 || req.username.contains(':') {
            return Err(AppError::Invalid {
                field: "username".into(),
                message: "a user name is 1 to 255 bytes without ':'".into(),
            });
        }
        if req.password.is_empty() || req.password.len() > 4096 {
            return Err(AppError::Invalid {
                field: "password".into(),
                message: "a password (or token) is 1 to 4096 bytes".into(),
            });
        }
        let creds = Credentials {
            username: req.username.clone(),
            password: req.password.clone(),
        };
        Ok(state.registries().login(&req.registry, creds).await?)
    }
    .await;
    let ev = match &r {
        Ok(reg) => ev.after(json!({"registry": reg, "username": req.username})),
        Err(e) => ev
            .after(json!({"username": req.username}))
            .result(outcome(e))
            .detail(e.to_string()),
    };
    audit::record(state.store(), ev).await;
    let registry = r?;
    Ok(Json(wire::RegistryAuth {
        registry,
        status: "Login Succeeded".into(),
    }))
}

/// Forget a registry's stored credentials (admin).
#[utoipa::path(post, path = "/registries/logout", tag = "images",
    request_body = wire::RegistryLogout,
    responses(
        (status = 200, description = "Removed (or there were none)", body = wire::RegistryAuth),
        (status = 400, description = "Invalid registry name", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
    ))]
async fn registries_logout(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<wire::RegistryLogout>,
) -> Result<Json<wire::RegistryAuth>, AppError> {
    let ev =
        audit::Event::new(&actor, "registry.logout").target(format!("registry:{}", req.registry));
    let r = (|| {
        actor.require_admin()?;
        Ok::<_, AppError>(state.registries().logout(&req.registry)?)
    })();
    let ev = match &r {
        Ok((reg, had)) => ev.after(json!({"registry": reg, "removed": had})),
        Err(e) => ev.result(outcome(e)).detail(e.to_string()),
    };
    audit::record(state.store(), ev).await;
    let (registry, had) = r?;
    let status = if had {
        format!("Removed login credentials for {registry}")
    } else {
        format!("Not logged in to {registry}")
    };
    Ok(Json(wire::RegistryAuth { registry, status }))
}
