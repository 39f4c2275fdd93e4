//! `GET /api/v1/network`: the bridge, its subnet, NAT, and (for admins) every container's
//! address and published ports.

use axum::{Json, Router, extract::State, routing::get};

use super::{AppError, AppState};
use crate::auth::Actor;

pub fn router() -> Router<AppState> {
    Router::new().route("/network", get(networks_get))
}

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
