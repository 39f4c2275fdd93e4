//! `GET /api/v1/containers/{name}/top`: the processes of a running container (`corral top`);
//! the Docker API's `docker top` reads the same [`crate::runtime::Manager::top`].
//!
//! Who may: whoever may read the container (as its limits and logs).

use axum::{Json, extract::State};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppError, AppState,
    containers::{manager, visible},
};
use crate::auth::{Actor, ApiPath};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(containers_top))
}

/// The processes of a running or paused container, read from its cgroup and `/proc`, with
/// host PIDs (`ps -ef`'s columns).
#[utoipa::path(get, path = "/containers/{name}/top", tag = "containers",
    params(("name" = String, Path, description = "Container name or id")),
    responses(
        (status = 200, description = "Its processes, by PID", body = Vec<wire::ContainerProcess>),
        (status = 400, description = "Malformed name", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
        (status = 409, description = "The container is not running", body = wire::ApiError),
    ))]
async fn containers_top(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<wire::ContainerProcess>>, AppError> {
    let c = visible(&state, &actor, &name).await?;
    Ok(Json(manager(&state)?.top(&c.name).await?))
}
