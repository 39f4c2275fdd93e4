//! `GET /api/v1/health`: liveness, version and cgroup mode. Needs no credentials.

use axum::{Json, Router, extract::State, routing::get};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health_get))
}

async fn health_get(State(state): State<AppState>) -> Json<wire::Health> {
    Json(wire::Health {
        status: "ok".into(),
        version: crate::VERSION.into(),
        cgroup_mode: Some(state.cgroups().mode().to_string()),
    })
}
