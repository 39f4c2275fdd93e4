//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` attributes and the `wire` types at start-up.

use std::sync::Arc;

use axum::{
    Extension, Router,
    http::{HeaderValue, header},
    response::IntoResponse,
    routing::get,
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::AppState;

/// Every path of the API lives under this prefix; handlers declare paths without it.
pub const PREFIX: &str = "/api/v1";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Corral API",
        description = "Run, limit and meter containers. Every route needs a session cookie \
                       (POST /api/v1/login) or an API token (Authorization: Bearer), except the \
                       ones marked public. State-changing requests of a cookie session send the \
                       session's csrf_token as X-Corral-CSRF. Under TLS the session cookie is \
                       __Host-corral_session. Any state-changing request but logout and a \
                       container's stop/kill answers 503 audit_unavailable when the state \
                       filesystem has too little room left for its audit row."
    ),
    paths(super::health::health_get, openapi_get),
    components(schemas(
        wire::formats::Name,
        wire::formats::Time,
        wire::formats::Description
    )),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "auth", description = "Login, logout, first-run setup"),
        (name = "users", description = "User accounts (admin)"),
        (name = "teams", description = "Teams that scope operators and viewers"),
        (name = "tokens", description = "API tokens for the CLI and scripts"),
        (name = "audit", description = "The append-only audit log"),
        (name = "containers", description = "Containers of the caller's teams"),
        (name = "images", description = "Imported images (import and remove: admin)"),
        (name = "events", description = "Live stats and lifecycle events (Server-Sent Events)"),
        (name = "host", description = "Host facts; the cgroup tree, scoped to the caller's teams (admins: all of it)"),
        (name = "fleet", description = "The fleet, on a hub (`corral serve --hub`): hosts, statements and history across hosts from the shared ledger; a host's containers acted on through its own API"),
        (name = "meta", description = "Health and this document"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// The OpenAPI document itself.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn openapi_get(Extension(json): Extension<Arc<str>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json.to_string(),
    )
}

/// Joins the base document with the routers' paths and puts every path under [`PREFIX`];
/// `rooted` (`/metrics`) keeps its paths as they are, since it is served outside the prefix.
pub fn document(
    routes: utoipa::openapi::OpenApi,
    rooted: utoipa::openapi::OpenApi,
) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(routes);
    let paths = std::mem::take(&mut doc.paths.paths);
    for (path, item) in paths {
        doc.paths.paths.insert(format!("{PREFIX}{path}"), item);
    }
    doc.merge(rooted);
    doc
}

/// The route serving `doc` (relative to [`PREFIX`]).
pub fn router(doc: &utoipa::openapi::OpenApi) -> Router<AppState> {
    let json: Arc<str> = match doc.to_pretty_json() {
        Ok(s) => s.into(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize the openapi document");
            "{}".into()
        }
    };
    Router::new().route("/openapi.json", get(openapi_get).layer(Extension(json)))
}
