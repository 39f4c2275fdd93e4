//! The guard every request passes (see the module docs of `auth` for the rules).

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{
    Actor, AuthError, CLIENT_HEADER, CSRF_HEADER, UnixPeer, Via,
    audit::{self, Outcome},
    db, now_secs, secret,
};
use crate::http::AppState;

/// Hosts always accepted (any port): the names a browser uses for loopback.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// The middleware: host allowlist, credentials, 401, CSRF, fallback audit.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let actor = match admit(&state, &mut req).await {
        Ok(actor) => actor,
        Err(e @ AuthError::DuplicateCookie(_)) => {
            tracing::info!(%method, %path, error = %e, "request refused");
            let event = audit::Event::anonymous("-", "session.cookie")
                .target(format!("http {method} {path}"))
                .result(Outcome::Denied)
                .detail(e.to_string());
            audit::record(state.store(), event).await;
            return harden(e.into_response(), &path);
        }
        Err(e) => {
            if !matches!(e, AuthError::Unauthenticated) {
                tracing::info!(%method, %path, error = %e, "request refused");
            }
            return harden(e.into_response(), &path);
        }
    };
    let name = actor.as_ref().map(|a| a.name.clone());
    let resp = harden(crate::events::with_actor(name, next.run(req)).await, &path);
    if let Some(actor) = actor
        && !is_safe(&method)
        && !actor.was_audited()
    {
        let status = resp.status();
        let result = if status.is_success() || status.is_redirection() {
            Outcome::Ok
        } else if status.as_u16() == 401 || status.as_u16() == 403 {
            Outcome::Denied
        } else if status.is_server_error() {
            Outcome::Error
        } else {
            Outcome::Failed
        };
        let event = audit::Event::new(&actor, &format!("http {method} {path}"))
            .result(result)
            .detail(status.as_u16().to_string());
        audit::record(state.store(), event).await;
    }
    resp
}

/// Headers every response gets: no framing (clickjacking of the console), no MIME sniffing, and
/// API answers (tokens, CSRF tokens, user data) never cached.
fn harden(mut resp: Response, path: &str) -> Response {
    let h = resp.headers_mut();
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    if path.starts_with("/api/") {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Runs every check; on success the actor (if any) is in the request extensions.
async fn admit(state: &AppState, req: &mut Request) -> Result<Option<Actor>, AuthError> {
    let host = request_host(req)?;
    if !host_allowed(&host, &state.auth().config().allowed_hosts) {
        return Err(AuthError::BadHost(host));
    }
    let public = is_public(req.method(), req.uri().path());
    let unix = req
        .extensions()
        .get::<ConnectInfo<UnixPeer>>()
        .map(|ConnectInfo(p)| *p);
    let actor = resolve(state, req.headers(), unix).await?;
    if actor.is_none() && !public {
        return Err(AuthError::Unauthenticated);
    }
    if !is_safe(req.method()) {
        check_csrf(req.headers(), &host, actor.as_ref(), public)?;
        if !needs_no_audit_room(req.uri().path()) {
            audit::ensure_room(&state.config().state_dir)?;
        }
    } else if req.uri().path() == crate::http::EVENTS_PATH {
        // A cross-origin page cannot read the stream (no CORS), but refuse it outright.
        check_origin(req.headers(), &host)?;
    } else if is_websocket(req.headers()) {
        // No CORS protects a WebSocket: any page may open one to us, with the browser's
        // cookies (cross-site WebSocket hijacking). Same origin only, and a browser session
        // must prove it is our page with its CSRF token (as a subprotocol: a page cannot set
        // headers on a WebSocket).
        check_origin(req.headers(), &host)?;
        if let Some(Actor {
            via: Via::Session { csrf, .. },
            ..
        }) = &actor
        {
            check_ws_csrf(req.headers(), csrf)?;
        }
    }
    if let Some(a) = &actor {
        req.extensions_mut().insert(a.clone());
    }
    Ok(actor)
}

/// GET, HEAD and OPTIONS never change state.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// State changes allowed below the audit reserve: they only take away (a session, a running
/// container) and their rows go into the reserve.
fn needs_no_audit_room(path: &str) -> bool {
    if path == "/api/v1/logout" {
        return true;
    }
    path.strip_prefix("/api/v1/containers/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(name, action)| !name.is_empty() && matches!(action, "stop" | "kill"))
}

/// Routes reachable without credentials.
pub fn is_public(method: &Method, path: &str) -> bool {
    if !path.starts_with("/api/") && path != "/api" {
        // The dashboard shell and its assets: the UI must load to show the login page.
        return true;
    }
    let read = matches!(*method, Method::GET | Method::HEAD);
    match path {
        "/api/v1/health" => read,
        "/api/v1/login" => *method == Method::POST,
        "/api/v1/setup" => read || *method == Method::POST,
        _ => false,
    }
}

/// The one `Host` of the request (duplicates refused), matching the URI authority if any.
fn request_host(req: &Request) -> Result<String, AuthError> {
    let mut values = req.headers().get_all(header::HOST).iter();
    let host = match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .map_err(|_| AuthError::BadHost("<not ascii>".into()))?
            .to_owned(),
        (None, _) => match req.uri().authority() {
            Some(a) => a.as_str().to_owned(),
            None => return Err(AuthError::BadHost(String::new())),
        },
        (Some(_), Some(_)) => return Err(AuthError::BadHost("<several host headers>".into())),
    };
    if let Some(a) = req.uri().authority()
        && !a.as_str().eq_ignore_ascii_case(&host)
    {
        return Err(AuthError::BadHost(a.as_str().to_owned()));
    }
    Ok(host)
}

/// Splits `name[:port]` (`[v6]:port` too); `None` when malformed.
fn split_host(host: &str) -> Option<(&str, Option<&str>)> {
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        let rest = &host[end + 1..];
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':')?),
        };
        (&host[..=end], port)
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if name.is_empty() {
        return None;
    }
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some((name, port))
}

/// Whether `host` (a Host header value) is allowed: loopback names with any port, or a
/// configured `NAME` (any port) / `NAME:PORT` (that port).
pub fn host_allowed(host: &str, extra: &[String]) -> bool {
    let Some((name, _)) = split_host(host) else {
        return false;
    };
    LOOPBACK_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(name))
        || extra.iter().any(|e| {
            e.eq_ignore_ascii_case(host)
                || (!e.contains(':') && e.eq_ignore_ascii_case(name))
                || (e.starts_with('[') && !e.contains("]:") && e.eq_ignore_ascii_case(name))
        })
}

/// Finds the caller. Root over the unix socket is admin; other unix peers are refused. Over TCP
/// an invalid or expired credential is the same as none.
async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    unix: Option<UnixPeer>,
) -> Result<Option<Actor>, AuthError> {
    if let Some(peer) = unix {
        return match peer.uid {
            Some(0) => Ok(Some(Actor::unix_root(0))),
            uid => Err(AuthError::Forbidden(format!(
                "the unix socket is for root only (peer uid {})",
                uid.map_or_else(|| "unknown".to_owned(), |u| u.to_string())
            ))),
        };
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned());
        return match token {
            Some(t) if !t.is_empty() && t.len() <= 256 => token_actor(state, t).await,
            _ => Ok(None),
        };
    }
    let name = state.auth().config().session_cookie_name();
    if let Some(sid) = session_cookie(headers, name)? {
        return session_actor(state, sid).await;
    }
    Ok(None)
}

/// The value of the session cookie `name`, if the request carries one. Two of them (however
/// spread over `Cookie` headers) are refused: a browser sends a cookie planted by a sibling
/// host or another port for a longer path first, which would swap the victim's session for
/// the attacker's.
pub fn session_cookie(headers: &HeaderMap, name: &str) -> Result<Option<String>, AuthError> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_owned());
    let first = found.next();
    let more = found.count();
    if more > 0 {
        return Err(AuthError::DuplicateCookie(more + 1));
    }
    Ok(first.filter(|v| !v.is_empty() && v.len() <= 256))
}

async fn token_actor(state: &AppState, token: String) -> Result<Option<Actor>, AuthError> {
    let hash = secret::digest(&token);
    db::run(state.store(), move |conn| {
        let now = now_secs();
        let Some(t) = db::token_by_hash(conn, &hash)?.filter(|t| t.is_live(now)) else {
            return Ok(None);
        };
        let Some(user) = db::user_by_id(conn, t.user_id)? else {
            return Ok(None);
        };
        db::token_used(conn, t.id, now)?;
        Ok(Some(Actor::new(
            Some(user.id),
            user.name,
            user.role,
            user.teams,
            Via::Token { id: t.id },
        )))
    })
    .await
}

async fn session_actor(state: &AppState, sid: String) -> Result<Option<Actor>, AuthError> {
    let id_hash = secret::digest(&sid);
    let idle = i64::try_from(state.auth().session_idle().as_secs()).unwrap_or(i64::MAX);
    let max = i64::try_from(state.auth().session_max().as_secs()).unwrap_or(i64::MAX);
    db::run(state.store(), move |conn| {
        let now = now_secs();
        let Some(s) = db::session(conn, &id_hash)? else {
            return Ok(None);
        };
        if !s.is_live(now, idle, max) {
            db::delete_session(conn, &id_hash)?;
            return Ok(None);
        }
        let Some(user) = db::user_by_id(conn, s.user_id)? else {
            return Ok(None);
        };
        if s.last_seen != now {
            db::touch_session(conn, &id_hash, now)?;
        }
        Ok(Some(Actor::new(
            Some(user.id),
            user.name,
            user.role,
            user.teams,
            Via::Session {
                id_hash,
                csrf: s.csrf_token,
            },
        )))
    })
    .await
}

/// Re-checks the credentials of a long-lived request (the event stream) without renewing
/// them: `None` once the session ended (logout, idle or absolute timeout) or the token was
/// revoked or expired or its user removed; otherwise the actor with its role and teams as
/// they are now.
pub(crate) async fn recheck(state: &AppState, actor: &Actor) -> Result<Option<Actor>, AuthError> {
    let idle = i64::try_from(state.auth().session_idle().as_secs()).unwrap_or(i64::MAX);
    let max = i64::try_from(state.auth().session_max().as_secs()).unwrap_or(i64::MAX);
    let via = actor.via.clone();
    if let Via::Unix { .. } = via {
        return Ok(Some(actor.clone()));
    }
    db::run(state.store(), move |conn| {
        let now = now_secs();
        let user_id = match &via {
            Via::Session { id_hash, .. } => db::session(conn, id_hash)?
                .filter(|s| s.is_live(now, idle, max))
                .map(|s| s.user_id),
            Via::Token { id } => db::token_by_id(conn, *id)?
                .filter(|t| t.is_live(now))
                .map(|t| t.user_id),
            // Returned before this job.
            Via::Unix { .. } => None,
        };
        let Some(user_id) = user_id else {
            return Ok(None);
        };
        Ok(db::user_by_id(conn, user_id)?
            .map(|u| Actor::new(Some(u.id), u.name, u.role, u.teams, via)))
    })
    .await
}

/// CSRF defence of a state-changing request: same-origin `Origin`/`Sec-Fetch-Site` when present,
/// and a custom header a cross-site page cannot send without a CORS preflight we never grant.
fn check_csrf(
    headers: &HeaderMap,
    host: &str,
    actor: Option<&Actor>,
    public: bool,
) -> Result<(), AuthError> {
    check_origin(headers, host)?;
    let via = if public { None } else { actor.map(|a| &a.via) };
    match via {
        Some(Via::Token { .. }) => Ok(()),
        Some(Via::Session { csrf, .. }) => {
            let sent = headers
                .get(CSRF_HEADER)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if secret::constant_time_eq(sent, csrf.as_bytes()) {
                Ok(())
            } else {
                Err(AuthError::Csrf(
                    "missing or wrong x-corral-csrf header: send the csrf_token of your session"
                        .into(),
                ))
            }
        }
        Some(Via::Unix { .. }) | None => {
            if headers.contains_key(CSRF_HEADER) || headers.contains_key(CLIENT_HEADER) {
                Ok(())
            } else {
                Err(AuthError::Csrf(
                    "missing x-corral-csrf or x-corral-client header on a state-changing request"
                        .into(),
                ))
            }
        }
    }
}

/// A WebSocket upgrade request (`Upgrade: websocket`).
fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}

/// The session's CSRF token among the offered subprotocols, as `corral-csrf.TOKEN`.
fn check_ws_csrf(headers: &HeaderMap, csrf: &str) -> Result<(), AuthError> {
    let ok = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix(wire::term::CSRF_SUBPROTOCOL_PREFIX))
        .any(|t| secret::constant_time_eq(t.as_bytes(), csrf.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(AuthError::Csrf(format!(
            "a browser WebSocket must offer the subprotocol {}<csrf_token of your session>",
            wire::term::CSRF_SUBPROTOCOL_PREFIX
        )))
    }
}

/// Same-origin check: an `Origin` naming this server (or none) and a same-origin or
/// user-initiated `Sec-Fetch-Site` (or none).
fn check_origin(headers: &HeaderMap, host: &str) -> Result<(), AuthError> {
    for origin in headers.get_all(header::ORIGIN) {
        let o = origin.to_str().unwrap_or("<not ascii>");
        let same = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host));
        if !same {
            return Err(AuthError::Csrf(format!(
                "cross-origin request refused: origin {o:?} is not this server ({host})"
            )));
        }
    }
    for site in headers.get_all("sec-fetch-site") {
        let s = site.to_str().unwrap_or("<not ascii>");
        if !(s.eq_ignore_ascii_case("same-origin") || s.eq_ignore_ascii_case("none")) {
            return Err(AuthError::Csrf(format!(
                "cross-site request refused (sec-fetch-site: {s})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let extra = vec!["corral.example".to_owned(), "box:8443".to_owned()];
        for ok in [
            "localhost",
            "localhost:7700",
            "LOCALHOST:1",
            "127.0.0.1:7700",
            "[::1]",
            "[::1]:9000",
            "corral.example",
            "corral.example:7700",
            "box:8443",
        ] {
            assert!(host_allowed(ok, &extra), "{ok}");
        }
        for bad in [
            "",
            "evil.com",
            "evil.com:7700",
            "localhost.evil.com",
            "127.0.0.1.nip.io:7700",
            "localhost:",
            "localhost:abc",
            "localhost:7700:1",
            "[::1]x",
            "box:8444",
            "box",
            "127.0.0.2",
            "[::2]:7700",
            ":7700",
        ] {
            assert!(!host_allowed(bad, &extra), "{bad}");
        }
    }

    #[test]
    fn public_routes() {
        assert!(is_public(&Method::GET, "/"));
        assert!(is_public(&Method::GET, "/assets/corral-0123.js"));
        assert!(is_public(&Method::GET, "/api/v1/health"));
        assert!(!is_public(&Method::POST, "/api/v1/health"));
        assert!(is_public(&Method::POST, "/api/v1/login"));
        assert!(!is_public(&Method::GET, "/api/v1/users"));
        assert!(!is_public(&Method::GET, "/api/v1/health/"));
        assert!(!is_public(&Method::GET, "/api/v1/openapi.json"));
    }

    #[test]
    fn csrf_rules() {
        let mut h = HeaderMap::new();
        h.insert(CLIENT_HEADER, "cli".parse().unwrap());
        assert!(check_csrf(&h, "localhost:7700", None, true).is_ok());
        h.insert(header::ORIGIN, "http://localhost:7700".parse().unwrap());
        assert!(check_csrf(&h, "localhost:7700", None, true).is_ok());
        h.insert(header::ORIGIN, "http://evil.com".parse().unwrap());
        assert!(check_csrf(&h, "localhost:7700", None, true).is_err());
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(check_csrf(&h, "localhost:7700", None, true).is_err());
        let empty = HeaderMap::new();
        assert!(check_csrf(&empty, "localhost:7700", None, true).is_err());
        let mut cross = HeaderMap::new();
        cross.insert(CLIENT_HEADER, "x".parse().unwrap());
        cross.insert("sec-fetch-site", "same-site".parse().unwrap());
        assert!(check_csrf(&cross, "localhost:7700", None, true).is_err());
    }
}
