//! Authentication, authorization and audit: the layer every request passes.
//!
//! # What the middleware guarantees before a handler runs
//! [`middleware::guard`] wraps the whole router (see `http::app`). For every request it:
//! 1. checks the `Host` header against the allowlist (`localhost`, `127.0.0.1`, `[::1]` with any
//!    port, plus `--allowed-host` names) — 403 otherwise, SSE included (DNS rebinding);
//! 2. finds the caller: root over the unix socket (SO_PEERCRED uid 0; other uids get 403), an
//!    `Authorization: Bearer` API token, or the session cookie (idle and absolute timeouts;
//!    `__Host-corral_session` under TLS, `corral_session` over plain HTTP; a request carrying
//!    it twice — a shadowing cookie planted for a longer path — is refused with 400 and
//!    audited). TCP always needs one of the last two, even from 127.0.0.1;
//! 3. answers 401 unless the route is public (`GET /api/v1/health`, `POST /api/v1/login`,
//!    `GET|POST /api/v1/setup`, and the dashboard shell/assets outside `/api/`);
//! 4. on every method but GET/HEAD/OPTIONS checks CSRF: a same-origin `Origin` and
//!    `Sec-Fetch-Site` when present, and a custom header — `X-Corral-CSRF` equal to the session's
//!    token for cookie sessions, `X-Corral-CSRF` or `X-Corral-Client` (any value) for root over the
//!    unix socket and for anonymous login/setup; bearer tokens are exempt (browsers cannot attach
//!    them cross-site); `GET /api/v1/events` gets the same-origin part of that check too;
//! 5. on a state-changing request (but logout and a container's stop or kill), refuses with
//!    503 `audit_unavailable` when the state filesystem is below the audit reserve
//!    ([`audit::ensure_room`]): no change without room for its audit row;
//! 6. puts the [`Actor`] into the request extensions, runs the handler (inside
//!    `events::with_actor`, so lifecycle events name who asked), and, for a state-changing
//!    request whose handler did not call [`audit::record`], writes a generic audit row
//!    (`http POST /api/v1/...`, with the status) so no state change goes unrecorded.
//!
//! # How a handler uses it
//! ```ignore
//! use crate::auth::{Actor, ApiJson, ApiPath, audit};
//! use crate::http::{AppError, AppState};
//!
//! async fn containers_stop(
//!     State(state): State<AppState>,
//!     actor: Actor,                      // 401 if absent (never absent behind the middleware)
//!     ApiPath(id): ApiPath<String>,      // path/query/JSON rejections answer JSON `{code, message, field}`
//! ) -> Result<StatusCode, AppError> {
//!     let c = load(&state, &id).await?;
//!     actor.can_act_on_team(&c.team)?;   // admin, or operator member of the team; else 403
//!     // reads: actor.can_see_team(team)? (admin or any member); lists: actor.team_scope()
//!     // admin-only: actor.require_admin()?
//!     stop(&c).await?;
//!     audit::record(state.store(), audit::Event::new(&actor, "container.stop")
//!         .target(&id).before(json!(c.state)).after(json!("stopped"))).await;
//!     Ok(StatusCode::NO_CONTENT)
//! }
//! ```
//! Request bodies: use [`ApiJson<T>`] with `#[serde(deny_unknown_fields)]` on `T` (in `wire`);
//! it requires `Content-Type: application/json` and rejects unknown and duplicate fields.
//! Inside a database transaction, call [`audit::insert`] with the same connection instead, so
//! the change and its audit row commit together.
//! `AuthError` converts into `AppError` with `?`.
//!
//! # Roles
//! `admin` does everything; `operator` reads and acts on the resources of its teams; `viewer`
//! reads its teams. Root over the unix socket is an admin named `root` without an account
//! (`user_id == None`). Roles and teams are read from the database on every request, so a
//! change takes effect at once for existing sessions and tokens.
//!
//! # OpenAPI
//! Routes appear in `/api/v1/openapi.json` when a module returns a
//! `utoipa_axum::router::OpenApiRouter<AppState>` built with `routes!(handler, ...)` from
//! handlers carrying `#[utoipa::path(...)]` (paths relative to `/api/v1`), merged into the
//! `documented` router in `http::app`; request/response types derive `utoipa::ToSchema` in `wire`
//! behind `#[cfg_attr(feature = "openapi", ...)]`. Document every status a route can answer
//! (401/403 always): schemathesis checks it (`tests/schemathesis/run.py`).
//!
//! # Browser clients (the dashboard)
//! `POST /api/v1/login` (with any `X-Corral-CSRF` value, e.g. `1`) sets the HttpOnly cookie and
//! returns `csrf_token`; send it as `X-Corral-CSRF` on every later non-GET request.
//! `GET /api/v1/me` answers 401 when logged out and returns `csrf_token` again after a reload.
//! The setup page reads the token from `location.hash` of `/setup#TOKEN` and posts it to
//! `POST /api/v1/setup` (answer: like login).

pub mod audit;
pub(crate) mod db;
mod extract;
pub mod middleware;
mod password;
pub(crate) mod secret;
mod setup;
pub(crate) mod throttle;
mod unix;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};
use std::time::Duration;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use setup::start;
pub use unix::UnixPeer;
pub use wire::Role;

use crate::store::StoreError;

/// Name of the session cookie over plain HTTP (loopback).
pub const SESSION_COOKIE: &str = "corral_session";
/// Name of the session cookie under TLS. Browsers accept a `__Host-` cookie only with `Secure`,
/// `Path=/` and no `Domain`, from a secure origin: no sibling host and no plain-HTTP page can
/// set or shadow it (cookie tossing).
pub const SESSION_COOKIE_TLS: &str = "__Host-corral_session";
/// Header carrying the session's CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-corral-csrf";
/// Header non-browser clients (the CLI) send on state-changing requests.
pub const CLIENT_HEADER: &str = "x-corral-client";

/// The `corral serve` flags of the auth layer.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// Extra accepted Host header names (the API refuses others against DNS rebinding):
    /// `NAME` for any port, `NAME:PORT` for one. localhost, 127.0.0.1 and [::1] are always allowed.
    #[arg(long = "allowed-host", value_name = "HOST[:PORT]")]
    pub allowed_hosts: Vec<String>,
    /// A browser session ends after this many seconds without a request.
    #[arg(long, default_value_t = 30 * 60, value_name = "SECONDS")]
    pub session_idle_secs: u64,
    /// A browser session ends this many seconds after login, active or not.
    #[arg(long, default_value_t = 12 * 3600, value_name = "SECONDS")]
    pub session_max_secs: u64,
    /// Set when the TCP listener speaks TLS: session cookies are then marked `Secure`.
    #[arg(skip)]
    pub tls: bool,
}

impl AuthConfig {
    /// The session cookie's name on this daemon: [`SESSION_COOKIE_TLS`] under TLS, else
    /// [`SESSION_COOKIE`]. Only this name is read; the other is ignored.
    pub fn session_cookie_name(&self) -> &'static str {
        if self.tls {
            SESSION_COOKIE_TLS
        } else {
            SESSION_COOKIE
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            session_idle_secs: 30 * 60,
            session_max_secs: 12 * 3600,
            tls: false,
        }
    }
}

/// Errors of authentication and authorization. Converts into `AppError` with `?`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: log in or send an api token")]
    Unauthenticated,
    #[error("invalid name or password")]
    BadCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("host {0:?} is not allowed: start the daemon with --allowed-host to accept it")]
    BadHost(String),
    #[error("{0}")]
    Csrf(String),
    #[error(
        "the request carries {0} session cookies: send exactly one (clear this site's cookies)"
    )]
    DuplicateCookie(usize),
    #[error("too many login attempts: retry in {retry_after} s")]
    Throttled { retry_after: u64 },
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    /// The team has no budget (404 `no_budget`).
    #[error("{0}")]
    NoBudget(String),
    /// A change refused because its audit row could not be written (state filesystem full).
    #[error("{0}")]
    AuditUnavailable(String),
    /// The shared ledger (PostgreSQL) is needed and unreachable (503 `ledger_unavailable`).
    #[error("{0}")]
    LedgerUnavailable(String),
    #[error("database query failed")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        AuthError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            AuthError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            AuthError::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AuthError::BadHost(_) => (StatusCode::FORBIDDEN, "bad_host"),
            AuthError::Csrf(_) => (StatusCode::FORBIDDEN, "csrf"),
            AuthError::DuplicateCookie(_) => (StatusCode::BAD_REQUEST, "duplicate_session_cookie"),
            AuthError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "throttled"),
            AuthError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AuthError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_value"),
            AuthError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AuthError::NoBudget(_) => (StatusCode::NOT_FOUND, "no_budget"),
            AuthError::AuditUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable")
            }
            AuthError::LedgerUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable")
            }
            AuthError::Sql(_) | AuthError::Store(_) | AuthError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let this = match self {
            // The disk filled under a change's own transaction: it rolled back with its row.
            AuthError::Sql(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) => {
                AuthError::AuditUnavailable(
                    "the audit log cannot be kept: the state filesystem is full, so the change \
                     and its audit row were not written; free space there and try again"
                        .into(),
                )
            }
            other => other,
        };
        if let AuthError::AuditUnavailable(message) | AuthError::LedgerUnavailable(message) = &this
        {
            // A 503 whose message the caller must see (other 5xx say only "internal error").
            let code = this.status_code().1;
            tracing::error!(%message, code, "request refused");
            let body = wire::ApiError {
                code: code.into(),
                message: message.clone(),
                field: None,
            };
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
        }
        let (status, code) = this.status_code();
        let field = match &this {
            AuthError::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        };
        let mut resp = crate::http::error_response(status, code, field, &this);
        match this {
            AuthError::Throttled { retry_after } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            AuthError::Unauthenticated => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"corral\""),
                );
            }
            _ => {}
        }
        resp
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session cookie; `csrf` must come back in `X-Corral-CSRF`.
    Session { id_hash: [u8; 32], csrf: String },
    /// An `Authorization: Bearer` API token.
    Token { id: i64 },
    /// Root (uid 0) over the unix socket.
    Unix { uid: u32 },
}

impl Via {
    pub fn as_str(&self) -> &'static str {
        match self {
            Via::Session { .. } => "session",
            Via::Token { .. } => "token",
            Via::Unix { .. } => "unix",
        }
    }
}

/// Which teams an actor may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamScope<'a> {
    All,
    Only(&'a [String]),
}

impl TeamScope<'_> {
    pub fn contains(&self, team: &str) -> bool {
        match self {
            TeamScope::All => true,
            TeamScope::Only(teams) => teams.iter().any(|t| t == team),
        }
    }
}

/// The authenticated caller of a request. Extract it in a handler (`actor: Actor`); the
/// middleware has already answered 401 when there is none.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The account; `None` for root over the unix socket.
    pub user_id: Option<i64>,
    pub name: String,
    pub role: Role,
    /// Sorted team names.
    pub teams: Vec<String>,
    pub via: Via,
    /// Set by `audit::record` so the middleware does not add a generic row.
    audited: Arc<AtomicBool>,
}

impl Actor {
    pub(crate) fn new(
        user_id: Option<i64>,
        name: String,
        role: Role,
        teams: Vec<String>,
        via: Via,
    ) -> Self {
        Self {
            user_id,
            name,
            role,
            teams,
            via,
            audited: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Root over the unix socket: an admin without an account.
    pub(crate) fn unix_root(uid: u32) -> Self {
        Self::new(
            None,
            "root".into(),
            Role::Admin,
            Vec::new(),
            Via::Unix { uid },
        )
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// 403 unless the actor is an admin.
    pub fn require_admin(&self) -> Result<(), AuthError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "{} is {} and this needs admin",
                self.name, self.role
            )))
        }
    }

    /// 403 unless the actor may read `team`: an admin, or any member.
    pub fn can_see_team(&self, team: &str) -> Result<(), AuthError> {
        if self.team_scope().contains(team) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "{} is not a member of team {team:?}",
                self.name
            )))
        }
    }

    /// 403 unless the actor may change things of `team`: an admin, or an operator member.
    pub fn can_act_on_team(&self, team: &str) -> Result<(), AuthError> {
        self.can_see_team(team)?;
        match self.role {
            Role::Admin | Role::Operator => Ok(()),
            Role::Viewer => Err(AuthError::Forbidden(format!(
                "{} is a viewer of team {team:?} and cannot change it",
                self.name
            ))),
        }
    }

    /// The teams this actor may see: filter lists with it.
    pub fn team_scope(&self) -> TeamScope<'_> {
        if self.is_admin() {
            TeamScope::All
        } else {
            TeamScope::Only(&self.teams)
        }
    }

    fn mark_audited(&self) {
        self.audited.store(true, Ordering::Relaxed);
    }

    fn was_audited(&self) -> bool {
        self.audited.load(Ordering::Relaxed)
    }
}

/// Shared state of the auth layer, held by `AppState`.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    config: AuthConfig,
    /// SHA-256 of the one-time setup token while setup is open.
    setup: Mutex<Option<setup::Pending>>,
    throttle: throttle::Throttle,
    hashing: tokio::sync::Semaphore,
    dummy_hash: tokio::sync::OnceCell<String>,
    /// How long the last password verification took, in µs (0: none yet).
    verify_micros: std::sync::atomic::AtomicU64,
}

/// How many argon2 computations (~19 MiB each) may run at once.
const HASHING_SLOTS: usize = 2;

impl Auth {
    pub fn new(config: AuthConfig) -> Self {
        Self {
            inner: Arc::new(AuthInner {
                config,
                setup: Mutex::new(None),
                throttle: throttle::Throttle::new(),
                hashing: tokio::sync::Semaphore::new(HASHING_SLOTS),
                dummy_hash: tokio::sync::OnceCell::new(),
                verify_micros: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    pub(crate) fn session_idle(&self) -> Duration {
        Duration::from_secs(self.inner.config.session_idle_secs)
    }

    pub(crate) fn session_max(&self) -> Duration {
        Duration::from_secs(self.inner.config.session_max_secs)
    }

    /// Hashes a password with argon2id on a blocking thread.
    pub(crate) async fn hash_password(&self, password: String) -> Result<String, AuthError> {
        let _permit = self.hashing_permit().await?;
        tokio::task::spawn_blocking(move || password::hash(&password))
            .await
            .map_err(|e| AuthError::Internal(format!("password hashing task failed: {e}")))?
    }

    /// Verifies `password` against `hash`, or against a dummy hash when the user does not exist,
    /// so unknown users cost the same time.
    pub(crate) async fn verify_password(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, AuthError> {
        let hash = match hash {
            Some(h) => h,
            None => self.dummy_hash().await?,
        };
        let _permit = self.hashing_permit().await?;
        let started = std::time::Instant::now();
        let ok = tokio::task::spawn_blocking(move || password::verify(&password, &hash))
            .await
            .map_err(|e| AuthError::Internal(format!("password verification task failed: {e}")))?;
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.inner.verify_micros.store(took, Ordering::Relaxed);
        Ok(ok)
    }

    /// How long a password verification takes here (the last one measured; 50 ms before the
    /// first): the time a refused-without-work login waits so it looks like a checked one.
    pub(crate) fn typical_verify(&self) -> Duration {
        match self.inner.verify_micros.load(Ordering::Relaxed) {
            0 => Duration::from_millis(50),
            us => Duration::from_micros(us),
        }
    }

    pub(crate) async fn dummy_hash(&self) -> Result<String, AuthError> {
        self.inner
            .dummy_hash
            .get_or_try_init(|| async {
                let mut random = [0u8; 32];
                secret::fill(&mut random)?;
                self.hash_password(secret::hex(&random)).await
            })
            .await
            .cloned()
    }

    async fn hashing_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, AuthError> {
        self.inner
            .hashing
            .acquire()
            .await
            .map_err(|_| AuthError::Internal("password hashing closed".into()))
    }

    pub(crate) fn throttle(&self) -> &throttle::Throttle {
        &self.inner.throttle
    }
}

/// Validates a user name: 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub(crate) fn validate_user_name(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok {
        return Err(AuthError::invalid(
            "name",
            format!(
                "invalid user name {name:?}: use 1-64 of a-z 0-9 . _ -, starting with a letter or digit"
            ),
        ));
    }
    if name == "root" {
        // The audit log names root over the unix socket "root": no account may look like it.
        return Err(AuthError::Conflict(
            "the user name \"root\" is reserved".into(),
        ));
    }
    Ok(())
}

/// Validates a team name: 1-63 of `a-z 0-9 -`, starting with a letter or digit.
pub(crate) fn validate_team_name(field: &str, name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(AuthError::invalid(
            field,
            format!(
                "invalid team name {name:?}: use 1-63 of a-z 0-9 -, starting with a letter or digit"
            ),
        ))
    }
}

/// Shortest and longest password in characters (any Unicode). Longer ones are refused, never
/// truncated; every character is hashed.
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 1024;

pub(crate) fn validate_password(password: &str) -> Result<(), AuthError> {
    let n = password.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) {
        return Err(AuthError::invalid(
            "password",
            format!("a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters"),
        ));
    }
    Ok(())
}

/// Current time in unix seconds.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role, teams: &[&str]) -> Actor {
        Actor::new(
            Some(1),
            "u".into(),
            role,
            teams.iter().map(|t| t.to_string()).collect(),
            Via::Token { id: 1 },
        )
    }

    #[test]
    fn team_rules() {
        let admin = actor(Role::Admin, &[]);
        assert!(admin.can_act_on_team("b").is_ok());
        let op = actor(Role::Operator, &["a"]);
        assert!(op.can_act_on_team("a").is_ok());
        assert!(op.can_see_team("b").is_err());
        assert!(op.can_act_on_team("b").is_err());
        assert!(op.require_admin().is_err());
        let viewer = actor(Role::Viewer, &["a"]);
        assert!(viewer.can_see_team("a").is_ok());
        assert!(viewer.can_act_on_team("a").is_err());
    }

    #[test]
    fn names() {
        for ok in ["admin", "a", "alice.b_c-d", "9lives"] {
            assert!(validate_user_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "root",
            "Alice",
            "-x",
            "a/b",
            "a b",
            &"x".repeat(65),
            "é",
        ] {
            assert!(validate_user_name(bad).is_err(), "{bad}");
        }
        assert!(validate_team_name("t", "team-a").is_ok());
        assert!(validate_team_name("t", "team_a").is_err());
        assert!(validate_team_name("t", "../x").is_err());
    }
}
