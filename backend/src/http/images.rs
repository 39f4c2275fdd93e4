//! `/api/v1/images`: import, list, remove.

use axum::{Router, extract::State};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}

#[allow(dead_code)]
fn _state(_: State<AppState>) {}
