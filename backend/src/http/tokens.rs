//! API tokens for the CLI and scripts (`CORRAL_TOKEN`): shown once, stored as SHA-256, revocable.

use axum::{Json, extract::State, http::StatusCode};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use crate::auth::{Actor, ApiJson, ApiPath, AuthError, audit, db, now_secs, secret};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(tokens_list, tokens_create))
        .routes(routes!(tokens_revoke))
}

/// Your tokens (admins: everyone's).
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses(
        (status = 200, description = "Tokens, without their secrets", body = Vec<wire::TokenInfo>),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn tokens_list(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Json<Vec<wire::TokenInfo>>, AuthError> {
    let filter = if actor.is_admin() {
        None
    } else {
        actor.user_id
    };
    if filter.is_none() && !actor.is_admin() {
        return Ok(Json(Vec::new()));
    }
    Ok(Json(
        db::run(state.store(), move |c| db::list_tokens(c, filter)).await?,
    ))
}

/// Create a token; its secret is in the answer and nowhere else.
#[utoipa::path(post, path = "/tokens", tag = "tokens",
    request_body = wire::TokenCreate,
    responses(
        (status = 201, description = "Created", body = wire::TokenCreated),
        (status = 400, description = "Invalid field", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "A token for someone else needs admin; foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such user", body = wire::ApiError),
    ))]
async fn tokens_create(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<wire::TokenCreate>,
) -> Result<(StatusCode, Json<wire::TokenCreated>), AuthError> {
    let label = req.name.clone();
    if label.is_empty() || label.chars().count() > 64 || label.chars().any(char::is_control) {
        return Err(AuthError::invalid(
            "name",
            "a token name has 1 to 64 characters and no control characters",
        ));
    }
    let expires_in = match req.expires_in_days {
        Some(d) if d == 0 || d > 3650 => {
            return Err(AuthError::invalid(
                "expires_in_days",
                "expires_in_days is 1 to 3650; leave it out for a token that does not expire",
            ));
        }
        Some(d) => Some(i64::from(d) * 86_400),
        None => None,
    };
    let owner = match (&req.user, actor.user_id) {
        (Some(u), _) if *u != actor.name => {
            actor.require_admin()?;
            u.clone()
        }
        (Some(u), _) => u.clone(),
        (None, Some(_)) => actor.name.clone(),
        (None, None) => {
            return Err(AuthError::invalid(
                "user",
                "root over the unix socket has no account: name the user the token is for",
            ));
        }
    };
    let token = secret::new_secret("crl_")?;
    let hash = secret::digest(&token);
    let info = db::run(state.store(), move |conn| {
        let tx = conn.transaction()?;
        let user = db::user_by_name(&tx, &owner)?
            .ok_or_else(|| AuthError::NotFound(format!("no such user {owner:?}")))?;
        let now = now_secs();
        let id = db::insert_token(
            &tx,
            user.id,
            &label,
            &hash,
            now,
            expires_in.map(|s| now + s),
        )?;
        let info = db::token_info_by_id(&tx, id)?
            .ok_or_else(|| AuthError::Internal("created token vanished".into()))?;
        audit::insert(
            &tx,
            &audit::Event::new(&actor, "token.create")
                .target(format!("token:{id}"))
                .after(json!(info)),
        )?;
        tx.commit()?;
        Ok(info)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(wire::TokenCreated { token, info }),
    ))
}

/// Revoke a token (your own; admins: any). Requests with it answer 401 from now on.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Malformed id", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such token (or not yours), or already revoked", body = wire::ApiError),
    ))]
async fn tokens_revoke(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AuthError> {
    db::run(state.store(), move |conn| {
        let tx = conn.transaction()?;
        let not_found = || AuthError::NotFound(format!("no such token {id}"));
        let (owner, revoked) = db::token_owner(&tx, id)?.ok_or_else(not_found)?;
        if revoked.is_some() || (!actor.is_admin() && actor.user_id != Some(owner)) {
            return Err(not_found());
        }
        let before = db::token_info_by_id(&tx, id)?;
        db::revoke_token(&tx, id, now_secs())?;
        audit::insert(
            &tx,
            &audit::Event::new(&actor, "token.revoke")
                .target(format!("token:{id}"))
                .before(json!(before)),
        )?;
        tx.commit()?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
