//! `POST /api/v1/containers/{name}/checkpoint` and `POST /api/v1/containers/{name}/restore`
//! (issue 18): through CRIU, where `criu check` passes on this kernel
//! ([`crate::runtime::checkpoint::support`]). Where it does not, both answer 503
//! `checkpoint_unavailable` with criu's reason and change nothing.
//!
//! Who may: as the other container actions — admins, and operators of the container's team;
//! viewers are refused (403). A path on the daemon's host (`export`, `import`) needs an admin,
//! like a bind mount. Every attempt is one audit row (`container.checkpoint`,
//! `container.restore`), refused ones too.
//!
//! Order of the checks: the body (400 naming the field), then the rights (404 for a container
//! the caller may not see, 403), then the host (503), then the container's state (409).

use axum::{Json, extract::State, http::StatusCode};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppError, AppState,
    containers::{OptJson, actionable, manager, outcome, target},
};
use crate::auth::{Actor, ApiPath, AuthError, Role, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(containers_checkpoint))
        .routes(routes!(containers_restore))
        .routes(routes!(checkpoints_list))
        .routes(routes!(checkpoints_remove))
}

/// The longest path accepted for `export` and `import`.
const MAX_PATH: usize = 4096;

/// An absolute, normalized path on the daemon's host (no `.`, `..` or empty segment, no
/// NUL), or a 400 naming `field`.
fn host_path(field: &str, p: &str) -> Result<(), AppError> {
    let bad = |message: String| AppError::Invalid {
        field: field.to_owned(),
        message,
    };
    if p.is_empty() || p.len() > MAX_PATH || p.contains('\0') {
        return Err(bad(format!(
            "{p:?} must be an absolute path of 1 to {MAX_PATH} bytes without NUL"
        )));
    }
    // Read segment by segment: `Path::components` drops a `.` in the middle, and `//` too.
    if !p.starts_with('/') || p[1..].split('/').any(|seg| matches!(seg, "" | "." | "..")) {
        return Err(bad(format!(
            "{p:?} must be an absolute path to a file, without . or .. (e.g. /srv/ckpt/web.tar)"
        )));
    }
    Ok(())
}

/// 503 `checkpoint_unavailable` with criu's reason when this host cannot checkpoint.
async fn available() -> Result<(), AppError> {
    let s = tokio::task::spawn_blocking(crate::runtime::checkpoint::support)
        .await
        .map_err(|e| AppError::internal("probing criu", e))?;
    if s.available {
        return Ok(());
    }
    Err(AppError::Refused {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "checkpoint_unavailable",
        message: format!("checkpoint is unavailable on this host: {}", s.reason),
    })
}

/// One audit row for a checkpoint or restore attempt that ended in `e`.
async fn record_refusal(state: &AppState, actor: &Actor, action: &str, name: &str, e: &AppError) {
    let ev = audit::Event::new(actor, action)
        .target(target(name))
        .result(outcome(e))
        .detail(e.to_string());
    audit::record(state.store(), ev).await;
}

/// Checkpoint a running container with CRIU: its processes, namespaces, cgroup limits,
/// network address and writable layer, kept in the state directory (and written as a tarball
/// with `export`). Answers 503 `checkpoint_unavailable` with criu's own reason where `criu
/// check` fails on this kernel, and changes nothing.
#[utoipa::path(post, path = "/containers/{name}/checkpoint", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    request_body(content = Option<wire::CheckpointRequest>, description = "Optional; default: stop the container after the checkpoint, no export"),
    responses(
        (status = 200, description = "Checkpointed", body = wire::Checkpoint),
        (status = 400, description = "Malformed name or body (`export` not an absolute file path)", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, `export` without admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "Not running, or with a terminal or a user namespace", body = wire::ApiError),
        (status = 500, description = "`checkpoint_failed`: criu could not dump the container (its log's errors); the container runs on, the last checkpoint stays", body = wire::ApiError),
        (status = 503, description = "`checkpoint_unavailable`: criu is missing or `criu check` fails on this kernel (the message says why); nothing changed", body = wire::ApiError),
    ))]
async fn containers_checkpoint(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    OptJson(req): OptJson<wire::CheckpointRequest>,
) -> Result<Json<wire::Checkpoint>, AppError> {
    const ACTION: &str = "container.checkpoint";
    if let Some(p) = &req.export {
        host_path("export", p)?;
    }
    let c = actionable(&state, &actor, &name, ACTION).await?;
    let r = async {
        if req.export.is_some() {
            actor.require_admin().map_err(|e| {
                AppError::from(AuthError::Forbidden(format!(
                    "export: {e} (a path on the host)"
                )))
            })?;
        }
        available().await?;
        if c.status != "running" {
            return Err(AppError::Conflict(format!(
                "container {} is {}: only a running container can be checkpointed",
                c.name, c.status
            )));
        }
        Ok(manager(&state)?
            .checkpoint(
                &c.name,
                req.leave_running,
                req.export.as_ref().map(std::path::PathBuf::from),
            )
            .await?)
    }
    .await;
    match r {
        Ok(ck) => {
            let ev = audit::Event::new(&actor, ACTION)
                .target(target(&c.name))
                .before(json!({"status": c.status}))
                .after(json!({"status": ck.status, "size_bytes": ck.size_bytes,
                    "took_ms": ck.took_ms, "export": ck.export,
                    "leave_running": req.leave_running}));
            audit::record(state.store(), ev).await;
            Ok(Json(ck))
        }
        Err(e) => {
            record_refusal(&state, &actor, ACTION, &c.name, &e).await;
            Err(e)
        }
    }
}

/// Restore a checkpoint as a running container: `{name}` names the checkpoint (the container
/// it was taken of, which may be gone since), `import` reads an exported tarball instead, and
/// `name` gives the restored container another name. Answers 503 `checkpoint_unavailable`
/// with criu's own reason where `criu check` fails on this kernel, and changes nothing.
#[utoipa::path(post, path = "/containers/{name}/restore", tag = "containers",
    params(("name" = String, Path, description = "The checkpointed container's name")),
    request_body(content = Option<wire::RestoreRequest>, description = "Optional; default: the stored checkpoint, restored under its own name"),
    responses(
        (status = 201, description = "Restored and running", body = wire::Container),
        (status = 400, description = "Malformed name or body (`name` not a container name, `import` not an absolute file path)", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, `import` without admin, team not the caller's, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No checkpoint of that name (or one of another team)", body = wire::ApiError),
        (status = 409, description = "The name is taken by another container, or the checkpointed one runs", body = wire::ApiError),
        (status = 500, description = "`checkpoint_failed`: criu could not restore (its log's errors); a container made for the restore is removed again", body = wire::ApiError),
        (status = 503, description = "`checkpoint_unavailable`: criu is missing or `criu check` fails on this kernel (the message says why); nothing changed", body = wire::ApiError),
    ))]
async fn containers_restore(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    OptJson(req): OptJson<wire::RestoreRequest>,
) -> Result<(StatusCode, Json<wire::Container>), AppError> {
    const ACTION: &str = "container.restore";
    if !crate::runtime::manager::valid_name(&name) {
        return Err(AppError::Invalid {
            field: "name".into(),
            message: format!(
                "{name:?} is no checkpoint name: 1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit"
            ),
        });
    }
    if let Some(n) = &req.name
        && !crate::runtime::manager::valid_name(n)
    {
        return Err(AppError::Invalid {
            field: "name".into(),
            message: format!(
                "{n:?} is no container name: 1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit"
            ),
        });
    }
    if let Some(p) = &req.import {
        host_path("import", p)?;
    }
    let r = async {
        if actor.role == Role::Viewer {
            return Err(AppError::from(AuthError::Forbidden(format!(
                "{} is a viewer and cannot restore containers",
                actor.name
            ))));
        }
        if req.import.is_some() {
            actor.require_admin().map_err(|e| {
                AppError::from(AuthError::Forbidden(format!(
                    "import: {e} (a path on the host)"
                )))
            })?;
        }
        available().await?;
        let m = manager(&state)?;
        if req.import.is_none() {
            // The checkpoint's team decides, as the container's would: 404 outside it.
            let team = m.checkpoint_team(&name).await?;
            if !actor.team_scope().contains(&team) {
                return Err(AppError::NotFound(format!(
                    "no checkpoint of container {name}"
                )));
            }
            actor.can_act_on_team(&team)?;
        }
        Ok(m.restore(
            &name,
            req.import.as_ref().map(std::path::PathBuf::from),
            req.name.clone(),
            actor.is_admin(),
        )
        .await?)
    }
    .await;
    let restored = req.name.as_deref().unwrap_or(&name);
    match r {
        Ok(c) => {
            let ev = audit::Event::new(&actor, ACTION)
                .target(target(&c.name))
                .after(json!({"status": c.status, "from": name, "import": req.import}));
            audit::record(state.store(), ev).await;
            Ok((StatusCode::CREATED, Json(c)))
        }
        Err(e) => {
            record_refusal(&state, &actor, ACTION, restored, &e).await;
            Err(e)
        }
    }
}

/// The stored checkpoints the caller may restore (those of its teams; admins: all), by name.
/// A checkpoint outlives its container, so this is where a removed container's is found.
#[utoipa::path(get, path = "/checkpoints", tag = "containers",
    responses(
        (status = 200, description = "The stored checkpoints", body = Vec<wire::StoredCheckpoint>),
        (status = 401, description = "No credentials", body = wire::ApiError),
    ))]
async fn checkpoints_list(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Json<Vec<wire::StoredCheckpoint>>, AppError> {
    let scope = actor.team_scope();
    let all = manager(&state)?.list_checkpoints().await?;
    Ok(Json(
        all.into_iter()
            .filter(|c| scope.contains(&c.team))
            .collect(),
    ))
}

/// Removes a stored checkpoint (admins, and operators of its team). An exported tarball is not
/// touched.
#[utoipa::path(delete, path = "/checkpoints/{name}", tag = "containers",
    params(("name" = String, Path, description = "The checkpoint's (checkpointed container's) name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Viewer, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No checkpoint of that name (or one of another team)", body = wire::ApiError),
    ))]
async fn checkpoints_remove(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    const ACTION: &str = "checkpoint.remove";
    // A name no container can have names no checkpoint (and never a path: `..`).
    if !crate::runtime::manager::valid_name(&name) {
        return Err(AppError::NotFound(format!(
            "no checkpoint of container {name}"
        )));
    }
    let r = async {
        let m = manager(&state)?;
        let team = m.checkpoint_team(&name).await?;
        if !actor.team_scope().contains(&team) {
            return Err(AppError::NotFound(format!(
                "no checkpoint of container {name}"
            )));
        }
        actor.can_act_on_team(&team)?;
        m.remove_checkpoint(&name).await?;
        Ok(())
    }
    .await;
    let ev = audit::Event::new(&actor, ACTION).target(format!("checkpoint:{name}"));
    match r {
        Ok(()) => {
            audit::record(state.store(), ev).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            audit::record(state.store(), ev.result(outcome(&e)).detail(e.to_string())).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_are_absolute_files_without_dots() {
        for ok in ["/srv/ckpt/web.tar", "/tmp/a b.tar", "/x"] {
            assert!(host_path("export", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "web.tar",
            "./web.tar",
            "/srv/../etc/shadow",
            "/srv/./x",
            "/srv/ckpt/",
            "/srv//x",
            "/",
            "/a\0b",
        ] {
            match host_path("export", bad) {
                Err(AppError::Invalid { field, .. }) => assert_eq!(field, "export", "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(host_path("import", &format!("/{}", "a".repeat(MAX_PATH))).is_err());
    }
}
