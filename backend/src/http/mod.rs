//! The HTTP edge: one router for the JSON API under `/api/v1` and the embedded dashboard.
//!
//! Architecture invariant: `app(state)` is the one constructor of the router, used by the daemon
//! and by every test. Handlers convert domain types to `wire` types here and nowhere else.

mod assets;
mod audit;
mod auth;
mod error;
mod health;
mod openapi;
mod tokens;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tower_http::{
    catch_panic::CatchPanicLayer, compression::CompressionLayer, limit::RequestBodyLimitLayer,
    timeout::TimeoutLayer, trace::TraceLayer,
};

pub use error::AppError;

use crate::{auth::Auth, config::Config, store::Store};

/// Largest request body any endpoint accepts.
pub const MAX_BODY: usize = 1 << 20;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    auth: Auth,
}

impl AppState {
    pub fn new(config: Config, store: Store) -> Self {
        Self {
            inner: Arc::new(Inner {
                auth: Auth::new(config.auth.clone()),
                config,
                store,
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }
}

/// Builds the whole router: API, dashboard and the middleware every request passes.
pub fn app(state: AppState) -> Router {
    // Routes documented in the OpenAPI document (utoipa-axum); paths relative to /api/v1.
    let (documented, paths) = utoipa_axum::router::OpenApiRouter::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(tokens::router())
        .merge(audit::router())
        .split_for_parts();
    let doc = openapi::document(paths);
    let api = Router::new()
        .merge(health::router())
        .merge(documented)
        .merge(openapi::router(&doc))
        .fallback(error::api_not_found);
    Router::new()
        .nest("/api/v1", api)
        .fallback(assets::serve)
        // Host allowlist, credentials, CSRF and audit for every route (see `auth`).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware::guard,
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}
