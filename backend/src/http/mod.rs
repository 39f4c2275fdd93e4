//! The HTTP edge: one router for the JSON API under `/api/v1` and the embedded dashboard.
//!
//! Architecture invariant: `app(state)` is the one constructor of the router, used by the daemon
//! and by every test. Handlers convert domain types to `wire` types here and nowhere else.

mod assets;
mod audit;
mod auth;
mod billing;
mod budgets;
mod checkpoint;
mod containers;
mod error;
mod events;
mod fleet;
mod forward;
mod health;
mod history;
mod host;
mod images;
mod metrics;
mod networks;
mod openapi;
mod recommend;
mod registries;
mod term;
mod tokens;
mod top;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::{
    Router,
    http::{HeaderValue, header},
};
use tower_http::{
    catch_panic::CatchPanicLayer, compression::CompressionLayer,
    set_header::SetResponseHeaderLayer, trace::TraceLayer,
};

pub(crate) use containers::{
    MAX_TAIL, change, change_limits, create_container, outcome, read_from, remove_container,
    tail_lines, target as audit_target,
};
pub use error::AppError;
pub(crate) use error::error_response;
pub use events::PATH as EVENTS_PATH;
pub use host::host_info_of;
pub(crate) use images::{import_upload, remove_image};
pub(crate) use registries::{PullMsg, Started, start_pull};

use crate::{auth::Auth, cgroup::Cgroups, config::Config, store::Store};

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
    containers: Option<crate::runtime::Manager>,
    metering: Option<crate::metering::Metering>,
    cgroups: Arc<Cgroups>,
    auth: Auth,
    network: crate::network::Network,
    events: crate::events::Events,
    pools: crate::teams::Pools,
    governor: crate::budget::Governor,
    registries: crate::registry::Registries,
    ledger: Option<crate::ledger::Ledger>,
}

impl AppState {
    pub fn new(config: Config, store: Store, cgroups: Arc<Cgroups>) -> Self {
        let pools = crate::teams::Pools::new(cgroups.clone());
        let events = crate::events::Events::new();
        let governor = crate::budget::Governor::new(
            store.clone(),
            pools.clone(),
            events.clone(),
            &config.state_dir,
        );
        let registries = crate::registry::Registries::new(
            &config.state_dir,
            std::path::Path::new(crate::registry::SYSTEM_ROOTS),
            &config.images.insecure_registry,
        );
        Self {
            inner: Arc::new(Inner {
                registries,
                ledger: None,
                auth: Auth::new(config.auth.clone()),
                network: crate::network::Network::new(config.network.to_config(), store.clone()),
                config,
                store,
                containers: None,
                metering: None,
                governor,
                pools,
                cgroups,
                events,
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Adds the container manager (done once, before the state is shared).
    pub fn with_containers(mut self, manager: crate::runtime::Manager) -> Self {
        manager.set_events(self.inner.events.clone());
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.containers = Some(manager);
        }
        self
    }

    /// Adds the metering registry (done once, before the state is shared).
    pub fn with_metering(mut self, metering: crate::metering::Metering) -> Self {
        let hub = self.inner.events.clone();
        metering.on_oom(Box::new(move |owner, running| hub.oom(owner, running)));
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.metering = Some(metering);
        }
        self
    }

    /// The container manager, when the daemon runs one.
    pub fn containers(&self) -> Option<&crate::runtime::Manager> {
        self.inner.containers.as_ref()
    }

    /// The metering registry, when the daemon runs the sampler.
    pub fn metering(&self) -> Option<&crate::metering::Metering> {
        self.inner.metering.as_ref()
    }

    /// The cgroup engine, detected at daemon start with Corral's subtree created.
    /// The team pools (team cgroups and their ceilings).
    pub fn pools(&self) -> &crate::teams::Pools {
        &self.inner.pools
    }

    /// The budget governor (team budgets and their ladders).
    pub fn governor(&self) -> &crate::budget::Governor {
        &self.inner.governor
    }

    /// The shared ledger (`corral serve --ledger`).
    pub fn ledger(&self) -> Option<&crate::ledger::Ledger> {
        self.inner.ledger.as_ref()
    }

    pub fn with_ledger(mut self, ledger: crate::ledger::Ledger) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.ledger = Some(ledger);
        }
        self
    }

    pub fn cgroups(&self) -> &Arc<Cgroups> {
        &self.inner.cgroups
    }

    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// The hub of `GET /api/v1/events`: lifecycle events and live stats.
    pub fn events(&self) -> &crate::events::Events {
        &self.inner.events
    }

    /// Registry pulls: trusted roots, `--insecure-registry` hosts, stored credentials.
    pub fn registries(&self) -> &crate::registry::Registries {
        &self.inner.registries
    }

    /// Container networking: bridge, addresses, NAT, published ports.
    pub fn network(&self) -> &crate::network::Network {
        &self.inner.network
    }
}

/// Content-Security-Policy of every response: scripts only from our origin (plus WASM
/// compilation), no framing, no plugins, requests only to our origin.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The body cap ([`MAX_BODY`]; an announced longer body is answered 413 at once, a longer one
/// read is cut off) and the 30 s deadline of every request but an image upload
/// ([`images::is_upload`]), whose handler bounds its body itself. The deadline times the
/// answer's head only: a streamed body (events, import progress) runs on.
async fn bounded(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if images::is_upload(&req) {
        return next.run(req).await;
    }
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > MAX_BODY) {
        return AppError::TooLarge(format!("the body is larger than {} KiB", MAX_BODY >> 10))
            .into_response();
    }
    // A pull answers when it is done (or with its first progress line): no deadline.
    let pull = req.uri().path() == registries::PULL_PATH;
    let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, MAX_BODY)));
    if pull {
        return next.run(req).await;
    }
    match tokio::time::timeout(Duration::from_secs(30), next.run(req)).await {
        Ok(r) => r,
        Err(_) => axum::http::StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

/// Builds the whole router: API, dashboard and the middleware every request passes.
pub fn app(state: AppState) -> Router {
    // Routes documented in the OpenAPI document (utoipa-axum); paths relative to /api/v1.
    let (documented, paths) = utoipa_axum::router::OpenApiRouter::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(budgets::router())
        .merge(tokens::router())
        .merge(audit::router())
        .merge(containers::router())
        .merge(top::router())
        .merge(checkpoint::router())
        .merge(term::router())
        .merge(images::router())
        .merge(registries::router())
        .merge(billing::router())
        .merge(fleet::router())
        .merge(forward::router())
        .merge(history::router())
        .merge(recommend::router())
        .merge(events::router())
        .merge(host::router())
        .merge(networks::router())
        .split_for_parts();
    let (metrics, metrics_paths) = metrics::router().split_for_parts();
    let doc = openapi::document(paths, metrics_paths);
    let api = Router::new()
        .merge(health::router())
        .merge(documented)
        .merge(openapi::router(&doc))
        .fallback(error::api_not_found);
    Router::new()
        .nest("/api/v1", api)
        .merge(metrics)
        .fallback(assets::serve)
        // Host allowlist, credentials, CSRF and audit for every route (see `auth`).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware::guard,
        ))
        .layer(axum::middleware::from_fn(bounded))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .with_state(state)
}
