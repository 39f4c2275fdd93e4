//! Team budgets (`crate::budget`): `GET/PUT/DELETE /api/v1/teams/{name}/budget` and the
//! budget's timeline `GET /api/v1/teams/{name}/budget/steps`. Reading: admins and the team's
//! members; changing: admins only (denied attempts are audited).

use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState,
    users::{require_admin_to, visible_team},
};
use crate::{
    auth::{Actor, ApiJson, ApiPath, ApiQuery, AuthError, db},
    budget::{BudgetError, Governor},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(budget_get, budget_put, budget_delete))
        .routes(routes!(budget_steps))
}

/// Budget errors as the answer the client sees.
pub(crate) fn budget_err(e: BudgetError) -> AuthError {
    match e {
        BudgetError::Invalid { field, message } => AuthError::Invalid { field, message },
        BudgetError::NoBudget(team) => AuthError::NoBudget(format!("team {team:?} has no budget")),
        BudgetError::Sql(e) => AuthError::Sql(e),
        BudgetError::Pool(crate::teams::PoolError::Refused(m)) => AuthError::Conflict(m),
        other => {
            let mut m = other.to_string();
            let mut src = std::error::Error::source(&other);
            while let Some(s) = src {
                m.push_str(&format!(": {s}"));
                src = s.source();
            }
            AuthError::Internal(m)
        }
    }
}

/// Writes a team's budget (`None`: removed) to the shared ledger; 503 `ledger_unavailable`
/// when it cannot.
async fn fleet_write(
    l: &crate::ledger::Ledger,
    team: &str,
    json: Option<&str>,
) -> Result<(), AuthError> {
    let client = l.client().await.map_err(super::fleet::unavailable)?;
    crate::ledger::sync::put_budget(&client, team, json)
        .await
        .map_err(super::fleet::unavailable)
}

/// The team's budget and where it stands: used so far in the period, percent, step in force,
/// what it enforces, next reset (admins and the team's members).
#[utoipa::path(get, path = "/teams/{name}/budget", tag = "teams",
    params(("name" = String, Path, description = "Team name")),
    responses(
        (status = 200, description = "The budget and its state", body = wire::TeamBudget),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not a member", body = wire::ApiError),
        (status = 404, description = "No such team, or no budget (code no_budget)", body = wire::ApiError),
    ))]
async fn budget_get(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<wire::TeamBudget>, AuthError> {
    visible_team(&state, &actor, &name).await?;
    let g = state.governor().clone();
    let b = db::run(state.store(), move |c| {
        g.get(c, &name)
            .map_err(budget_err)?
            .ok_or_else(|| budget_err(BudgetError::NoBudget(name)))
    })
    .await?;
    Ok(Json(b))
}

/// Set the team's budget (admin): period, amounts, ladder, webhook. Evaluated at once: steps
/// the usage already reached land (or are lifted) before the answer.
#[utoipa::path(put, path = "/teams/{name}/budget", tag = "teams",
    params(("name" = String, Path, description = "Team name")),
    request_body = wire::Budget,
    responses(
        (status = 200, description = "The budget and its state", body = wire::TeamBudget),
        (status = 400, description = "Invalid field (named); nothing changed", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such team", body = wire::ApiError),
        (status = 409, description = "The kernel refused a step's limit", body = wire::ApiError),
        (status = 503, description = "The shared ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
    ))]
async fn budget_put(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiJson(budget): ApiJson<wire::Budget>,
) -> Result<Json<wire::TeamBudget>, AuthError> {
    require_admin_to(&state, &actor, "team.budget", &name).await?;
    visible_team(&state, &actor, &name).await?;
    let g = state.governor().clone();
    // With a shared ledger the fleet's copy first (checked here, so a refused budget never
    // reaches it); every host pulls it from there.
    if let Some(l) = state.ledger() {
        crate::budget::validate(&budget, g.host_cpus()).map_err(budget_err)?;
        let json =
            serde_json::to_string(&budget).map_err(|e| AuthError::Internal(e.to_string()))?;
        fleet_write(l, &name, Some(&json)).await?;
    }
    let b = db::run(state.store(), move |c| {
        g.put(c, &name, &budget, &actor).map_err(budget_err)
    })
    .await?;
    Ok(Json(b))
}

/// Remove the team's budget (admin); every step in force is lifted.
#[utoipa::path(delete, path = "/teams/{name}/budget", tag = "teams",
    params(("name" = String, Path, description = "Team name")),
    responses(
        (status = 204, description = "Removed; steps lifted"),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin, foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 404, description = "No such team, or no budget (code no_budget)", body = wire::ApiError),
        (status = 503, description = "The shared ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
    ))]
async fn budget_delete(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, AuthError> {
    require_admin_to(&state, &actor, "team.budget", &name).await?;
    visible_team(&state, &actor, &name).await?;
    let g = state.governor().clone();
    if let Some(l) = state.ledger() {
        let (g2, team) = (g.clone(), name.clone());
        db::run(state.store(), move |c| match g2.get(c, &team) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(budget_err(BudgetError::NoBudget(team))),
            Err(e) => Err(budget_err(e)),
        })
        .await?;
        fleet_write(l, &name, None).await?;
    }
    db::run(state.store(), move |c| {
        g.clear(c, &name, &actor).map_err(budget_err)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StepsQuery {
    /// The newest N step changes (1-1000, default 100), returned oldest first.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The team's budget timeline: every step change (warn, escalated, lifted) with why, oldest
/// first (admins and the team's members).
#[utoipa::path(get, path = "/teams/{name}/budget/steps", tag = "teams",
    params(("name" = String, Path, description = "Team name"), StepsQuery),
    responses(
        (status = 200, description = "Step changes, oldest first", body = Vec<wire::BudgetEvent>),
        (status = 400, description = "Invalid limit", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not a member", body = wire::ApiError),
        (status = 404, description = "No such team", body = wire::ApiError),
    ))]
async fn budget_steps(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<StepsQuery>,
) -> Result<Json<Vec<wire::BudgetEvent>>, AuthError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AuthError::invalid("limit", "limit must be 1 to 1000"));
    }
    visible_team(&state, &actor, &name).await?;
    let steps = db::run(state.store(), move |c| {
        Governor::steps(c, &name, limit as usize).map_err(budget_err)
    })
    .await?;
    Ok(Json(steps))
}
