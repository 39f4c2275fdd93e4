//! `POST /api/v1/login`, `POST /api/v1/logout`, `GET /api/v1/me`, `GET|POST /api/v1/setup`.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use crate::auth::throttle::Verdict;
use crate::auth::{
    Actor, ApiJson, AuthError, PASSWORD_MAX, Role, Via,
    audit::{self, Outcome},
    db, middleware, now_secs, validate_password, validate_user_name,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth_login))
        .routes(routes!(auth_logout))
        .routes(routes!(auth_me))
        .routes(routes!(auth_password))
        .routes(routes!(setup_status, setup_complete))
}

/// Starts a session for `user_id`: returns the Set-Cookie value and the CSRF token.
async fn new_session(
    state: &AppState,
    user_id: i64,
    old: Option<String>,
) -> Result<(HeaderValue, String), AuthError> {
    let sid = crate::auth::secret::new_secret("")?;
    let csrf = crate::auth::secret::new_secret("")?;
    let id_hash = crate::auth::secret::digest(&sid);
    let old_hash = old.map(|o| crate::auth::secret::digest(&o));
    let auth = state.auth().clone();
    let idle = i64::try_from(auth.session_idle().as_secs()).unwrap_or(i64::MAX);
    let max = i64::try_from(auth.session_max().as_secs()).unwrap_or(i64::MAX);
    let csrf2 = csrf.clone();
    db::run(state.store(), move |conn| {
        let now = now_secs();
        db::purge_sessions(conn, now, idle, max)?;
        // A session id the browser already had never survives a login (session fixation).
        if let Some(h) = old_hash {
            db::delete_session(conn, &h)?;
        }
        db::insert_session(conn, &id_hash, user_id, &csrf2, now)
    })
    .await?;
    // Under TLS `__Host-corral_session`: Secure, Path=/ and no Domain, as the prefix demands.
    let secure = if auth.config().tls { "; Secure" } else { "" };
    let cookie = format!(
        "{}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        auth.config().session_cookie_name(),
        auth.config().session_max_secs
    );
    let value = HeaderValue::from_str(&cookie)
        .map_err(|e| AuthError::Internal(format!("session cookie: {e}")))?;
    Ok((value, csrf))
}

fn clear_cookie(state: &AppState) -> HeaderValue {
    let config = state.auth().config();
    let secure = if config.tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}",
        config.session_cookie_name()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("corral_session=; Path=/; Max-Age=0"))
}

/// The session cookie the request already carries (the guard refused duplicates).
fn old_session(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let name = state.auth().config().session_cookie_name();
    middleware::session_cookie(headers, name).ok().flatten()
}

/// Log in with a name and password; sets the session cookie.
#[utoipa::path(post, path = "/login", tag = "auth", security(()),
    request_body = wire::LoginRequest,
    responses(
        (status = 200, description = "Logged in; the session is in the corral_session cookie (__Host-corral_session under TLS)", body = wire::LoginResponse),
        (status = 400, description = "Malformed request", body = wire::ApiError),
        (status = 401, description = "Wrong name or password (same answer for unknown users)", body = wire::ApiError),
        (status = 403, description = "Foreign Host or Origin, or missing CSRF header", body = wire::ApiError),
        (status = 429, description = "Too many attempts; see Retry-After", body = wire::ApiError),
    ))]
async fn auth_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<wire::LoginRequest>,
) -> Result<Response, AuthError> {
    let auth = state.auth().clone();
    // Throttle key: the name as typed, bounded (names longer than 64 cannot exist).
    let key = if req.name.len() <= 64 {
        req.name.clone()
    } else {
        "<too long>".to_owned()
    };
    let shown: String = req.name.chars().take(64).collect();
    let name = req.name.clone();
    let user = db::run(state.store(), move |c| db::user_by_name(c, &name)).await?;
    // Reserved before the password is checked, so parallel guesses cannot all pass; a known
    // account is out of the reach of the global bucket that meters made-up names.
    let verdict = match auth.throttle().reserve(&key, user.is_some()) {
        Ok(v) => v,
        Err(retry_after) => {
            audit::record(
                state.store(),
                audit::Event::anonymous(&shown, "login").result(Outcome::Throttled),
            )
            .await;
            return Err(AuthError::Throttled { retry_after });
        }
    };
    let password_ok = req.password.chars().count() <= PASSWORD_MAX;
    let password = if password_ok {
        req.password
    } else {
        String::new()
    };
    let matches = match verdict {
        Verdict::Verify => {
            auth.verify_password(password, user.as_ref().map(|u| u.password_hash.clone()))
                .await?
        }
        Verdict::Fake => {
            // An unknown name over the global bucket: the answer of a wrong password, in the
            // time a verification takes, without the work.
            tokio::time::sleep(auth.typical_verify()).await;
            false
        }
    };
    let user = match user {
        Some(u) if matches && password_ok => u,
        _ => {
            audit::record(
                state.store(),
                audit::Event::anonymous(&shown, "login").result(Outcome::Failed),
            )
            .await;
            return Err(AuthError::BadCredentials);
        }
    };
    auth.throttle().success(&key);
    let (cookie, csrf_token) = new_session(&state, user.id, old_session(&state, &headers)).await?;
    audit::record(
        state.store(),
        audit::Event::anonymous(&user.name, "login").detail("session"),
    )
    .await;
    let body = wire::LoginResponse {
        user: user.to_wire(),
        csrf_token,
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// End the current session (server-side) and clear its cookie.
#[utoipa::path(post, path = "/logout", tag = "auth",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host or Origin, or missing CSRF header", body = wire::ApiError),
    ))]
async fn auth_logout(State(state): State<AppState>, actor: Actor) -> Result<Response, AuthError> {
    if let Via::Session { id_hash, .. } = &actor.via {
        let h = *id_hash;
        db::run(state.store(), move |c| db::delete_session(c, &h)).await?;
    }
    audit::record(state.store(), audit::Event::new(&actor, "logout")).await;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_cookie(&state))],
    )
        .into_response())
}

/// Who the daemon thinks you are (and your session's CSRF token).
#[utoipa::path(get, path = "/me", tag = "auth",
    responses(
        (status = 200, description = "The caller", body = wire::Me),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn auth_me(actor: Actor) -> Json<wire::Me> {
    let csrf_token = match &actor.via {
        Via::Session { csrf, .. } => Some(csrf.clone()),
        _ => None,
    };
    Json(wire::Me {
        via: actor.via.as_str().to_owned(),
        name: actor.name,
        role: actor.role,
        teams: actor.teams,
        csrf_token,
    })
}

/// Change your own password (checked against the current one, throttled like login). Ends your
/// other sessions; the current one stays.
#[utoipa::path(put, path = "/me/password", tag = "auth",
    request_body = wire::PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "Invalid new password, or root over the unix socket (no account)", body = wire::ApiError),
        (status = 401, description = "No credentials, or the current password is wrong", body = wire::ApiError),
        (status = 403, description = "Foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 429, description = "Too many wrong current passwords; see Retry-After", body = wire::ApiError),
    ))]
async fn auth_password(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<wire::PasswordChange>,
) -> Result<StatusCode, AuthError> {
    let Some(user_id) = actor.user_id else {
        return Err(AuthError::invalid(
            "current_password",
            "root over the unix socket has no password here",
        ));
    };
    validate_password(&req.new_password)?;
    let auth = state.auth().clone();
    if let Err(retry_after) = auth.throttle().reserve(&actor.name, true) {
        audit::record(
            state.store(),
            audit::Event::new(&actor, "password.change").result(Outcome::Throttled),
        )
        .await;
        return Err(AuthError::Throttled { retry_after });
    }
    let current = db::run(state.store(), move |c| db::user_by_id(c, user_id))
        .await?
        .ok_or(AuthError::Unauthenticated)?;
    let ok = req.current_password.chars().count() <= PASSWORD_MAX
        && auth
            .verify_password(req.current_password, Some(current.password_hash))
            .await?;
    if !ok {
        audit::record(
            state.store(),
            audit::Event::new(&actor, "password.change").result(Outcome::Failed),
        )
        .await;
        return Err(AuthError::BadCredentials);
    }
    auth.throttle().success(&actor.name);
    let hash = auth.hash_password(req.new_password).await?;
    let keep = match &actor.via {
        Via::Session { id_hash, .. } => Some(*id_hash),
        _ => None,
    };
    db::run(state.store(), move |conn| {
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            rusqlite::params![user_id, hash],
        )?;
        tx.execute(
            "DELETE FROM sessions WHERE user_id = ?1 AND id_hash IS NOT ?2",
            rusqlite::params![user_id, keep.as_ref().map(|h| &h[..])],
        )?;
        audit::insert(
            &tx,
            &audit::Event::new(&actor, "password.change")
                .target(format!("user:{}", actor.name))
                .detail("other sessions ended"),
        )?;
        tx.commit()?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the one-time admin setup is still open.
#[utoipa::path(get, path = "/setup", tag = "auth", security(()),
    responses(
        (status = 200, description = "Setup state", body = wire::SetupStatus),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn setup_status(State(state): State<AppState>) -> Result<Json<wire::SetupStatus>, AuthError> {
    let admins = db::run(state.store(), |c| db::count_admins(c)).await?;
    Ok(Json(wire::SetupStatus {
        needed: admins == 0 && state.auth().setup_pending(),
    }))
}

/// Create the first admin with the token of the printed setup link; logs the admin in.
#[utoipa::path(post, path = "/setup", tag = "auth", security(()),
    request_body = wire::SetupRequest,
    responses(
        (status = 201, description = "Admin created and logged in", body = wire::LoginResponse),
        (status = 400, description = "Invalid name or password", body = wire::ApiError),
        (status = 403, description = "Wrong or used setup token, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 409, description = "An admin exists already, or the name is reserved", body = wire::ApiError),
    ))]
async fn setup_complete(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<wire::SetupRequest>,
) -> Result<Response, AuthError> {
    let auth = state.auth().clone();
    if !auth.setup_token_matches(&req.token) {
        audit::record(
            state.store(),
            audit::Event::anonymous("-", "setup").result(Outcome::Denied),
        )
        .await;
        return Err(AuthError::Forbidden(
            "invalid or used setup token: use the link the daemon printed at start".into(),
        ));
    }
    validate_user_name(&req.name)?;
    validate_password(&req.password)?;
    let hash = auth.hash_password(req.password).await?;
    let name = req.name.clone();
    let user = db::run(state.store(), move |conn| {
        let tx = conn.transaction()?;
        if db::count_admins(&tx)? > 0 {
            return Err(AuthError::Conflict("an admin exists already".into()));
        }
        let id = db::insert_user(&tx, &name, Role::Admin, &hash, &[], now_secs())?;
        let user = db::user_by_id(&tx, id)?
            .ok_or_else(|| AuthError::Internal("created admin vanished".into()))?;
        audit::insert(
            &tx,
            &audit::Event::anonymous(&name, "setup")
                .target(format!("user:{name}"))
                .after(json!(user.to_wire())),
        )?;
        tx.commit()?;
        Ok(user)
    })
    .await?;
    auth.close_setup();
    let (cookie, csrf_token) = new_session(&state, user.id, old_session(&state, &headers)).await?;
    let body = wire::LoginResponse {
        user: user.to_wire(),
        csrf_token,
    };
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        Json(body),
    )
        .into_response())
}
