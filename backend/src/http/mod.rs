//! The HTTP edge: one router for the JSON API under `/api/v1` and the embedded dashboard.
//!
//! Architecture invariant: `app(state)` is the one constructor of the router, used by the daemon
//! and by every test. Handlers convert domain types to `wire` types here and nowhere else.

mod assets;
mod billing;
mod error;
mod health;
mod history;
mod host;
mod metrics;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tower_http::{
    catch_panic::CatchPanicLayer, compression::CompressionLayer, limit::RequestBodyLimitLayer,
    timeout::TimeoutLayer, trace::TraceLayer,
};

pub use error::AppError;

use crate::{cgroup::Cgroups, config::Config, store::Store};

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
    metering: Option<crate::metering::Metering>,
    cgroups: Arc<Cgroups>,
}

impl AppState {
    pub fn new(config: Config, store: Store, cgroups: Arc<Cgroups>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                store,
                metering: None,
                cgroups,
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Adds the metering registry (done once, before the state is shared).
    pub fn with_metering(mut self, metering: crate::metering::Metering) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.metering = Some(metering);
        }
        self
    }

    /// The metering registry, when the daemon runs the sampler.
    pub fn metering(&self) -> Option<&crate::metering::Metering> {
        self.inner.metering.as_ref()
    }

    /// The cgroup engine, detected at daemon start with Corral's subtree created.
    pub fn cgroups(&self) -> &Arc<Cgroups> {
        &self.inner.cgroups
    }
}

/// Builds the whole router: API, dashboard and the middleware every request passes.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .merge(health::router())
        .merge(billing::router())
        .merge(history::router())
        .merge(host::router())
        .fallback(error::api_not_found);
    Router::new()
        .nest("/api/v1", api)
        .merge(metrics::router())
        .fallback(assets::serve)
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
