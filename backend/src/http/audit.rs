//! `GET /api/v1/audit`: the audit log, newest first (admin).

use axum::{Json, extract::State};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use crate::auth::{Actor, ApiQuery, AuthError, audit, db};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(audit_list))
}

/// Filters of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Rows to return, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only rows older than this id (paging).
    before_id: Option<i64>,
    /// Only rows of this actor.
    actor: Option<String>,
    /// Only rows of this action, e.g. `login`.
    action: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/audit", tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "Audit rows", body = Vec<wire::AuditEntry>),
        (status = 400, description = "Malformed query", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, or foreign Host", body = wire::ApiError),
    ))]
async fn audit_list(
    State(state): State<AppState>,
    actor: Actor,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<Vec<wire::AuditEntry>>, AuthError> {
    actor.require_admin()?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AuthError::invalid("limit", "limit is 1 to 1000"));
    }
    let q = audit::Query {
        limit,
        before_id: p.before_id,
        actor: p.actor,
        action: p.action,
    };
    Ok(Json(
        db::run(state.store(), move |c| audit::list(c, &q)).await?,
    ))
}
