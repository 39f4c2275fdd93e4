//! `GET /api/v1/network`: the bridge, its subnet, NAT, and (for admins) every container's
//! address and published ports.

use axum::{Json, extract::State};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppError, AppState};
use crate::auth::Actor;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(networks_get))
}

/// The bridge, its subnet and NAT; for admins also every container's address and published
/// ports (others get an empty `endpoints`: the list names every team's containers).
#[utoipa::path(get, path = "/network", tag = "host",
    responses(
        (status = 200, description = "The bridge network (endpoints: admins only)", body = wire::NetworkInfo),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn networks_get(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Json<wire::NetworkInfo>, AppError> {
    let net = state.network();
    let (subnet, nat) = net
        .status()
        .await
        .map_err(|e| AppError::internal("reading the network state", e))?;
    let endpoints = if actor.is_admin() {
        net.endpoints()
            .await
            .map_err(|e| AppError::internal("reading network endpoints", e))?
            .into_iter()
            .map(|e| wire::NetworkEndpoint {
                container: e.owner,
                mode: if e.bridge.is_some() { "bridge" } else { "none" }.into(),
                address: e.address.map(|a| a.to_string()),
                ports: e.ports.iter().map(ToString::to_string).collect(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Json(wire::NetworkInfo {
        bridge: net.config().bridge.clone(),
        subnet: subnet.map(|s| s.to_string()),
        nat,
        nat_backend: net.nat_backend().await,
        l2_filter: net.l2_filter().await,
        endpoints,
    }))
}
