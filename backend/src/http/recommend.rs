//! `GET /api/v1/containers/{name}/recommendation` and `GET /api/v1/teams/{name}/recommendation`
//! (`?window=7d`): right-sized limits from the stored history ([`crate::recommend`] holds the
//! rules). Read-only: applying is the client's `PATCH …/limits` of the answer's `patch`, which
//! is audited, checked and undoable like any re-limit. A container's recommendation is visible
//! to whoever sees the container (404 otherwise, like every container route); a team's to its
//! members and admins (403 others, 404 no team).

use std::collections::HashMap;

use axum::{Json, extract::State};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppError, AppState, billing::blocking, history::parse_duration};
use crate::auth::{Actor, ApiPath, ApiQuery, db};
use crate::metering::{
    sampler::{container_subject, team_subject, wall_ms},
    store::{self, OomScope, Retention},
};
use crate::recommend::{self, Action, Current, MAX_POINTS, MIN_SAMPLES};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(containers_recommendation))
        .routes(routes!(teams_recommendation))
}

/// Query of a recommendation (documentation; the handler reads a map to name unknown keys).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct RecommendationQuery {
    /// How much history to read: 1h, 24h, 7d (default 7d; a longer window than 366d reads 366d).
    #[param(pattern = r"^[1-9][0-9]{0,4}[smhdw]?$")]
    window: Option<String>,
}

/// The `window` of the query, seconds; any other key is refused by name.
fn window_param(q: &HashMap<String, String>) -> Result<i64, AppError> {
    if let Some(k) = q.keys().find(|k| *k != "window") {
        return Err(AppError::Invalid {
            field: k.clone(),
            message: format!("unknown parameter {k:?}: allowed is window"),
        });
    }
    let Some(v) = q.get("window") else {
        return Ok(recommend::DEFAULT_WINDOW_SECS);
    };
    // Longer windows read the longest: the history starts no earlier than the container anyway.
    parse_duration(v)
        .map(|s| s.min(recommend::MAX_WINDOW_SECS))
        .ok_or_else(|| AppError::Invalid {
            field: "window".into(),
            message: format!("invalid window {v:?}: allowed is a duration such as 1h, 24h, 7d"),
        })
}

/// Limits recommended for a container from its history: each item one line with the figures,
/// and the limits patch that applies them.
#[utoipa::path(get, path = "/containers/{name}/recommendation", tag = "containers",
    params(("name" = String, Path, description = "Container name or id"), RecommendationQuery),
    responses(
        (status = 200, description = "The recommendation (no items, with a note, while the history is too short)", body = wire::Recommendation),
        (status = 400, description = "Invalid parameter", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
        (status = 404, description = "No such container, or one of another team", body = wire::ApiError),
    ))]
async fn containers_recommendation(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<wire::Recommendation>, AppError> {
    let window = window_param(&q)?;
    let c = super::containers::visible(&state, &actor, &name).await?;
    let current = Current {
        cpus: c.limits.cpus,
        memory_max: c.limits.memory_max,
        pids_max: c.limits.pids_max,
    };
    let since_ms = c.created_at.saturating_mul(1000);
    let subject = Subject {
        scope: wire::RecommendationScope::Container,
        name: c.name,
        key: c.id,
    };
    Ok(Json(
        answer(&state, subject, window, since_ms, current).await?,
    ))
}

/// Limits recommended for a team's pooled ceilings from the pool's history (members and
/// admins; applying them is `PATCH /teams/{name}/limits`, admins only).
#[utoipa::path(get, path = "/teams/{name}/recommendation", tag = "teams",
    params(("name" = String, Path, description = "Team name"), RecommendationQuery),
    responses(
        (status = 200, description = "The recommendation (no items, with a note, while the history is too short)", body = wire::Recommendation),
        (status = 400, description = "Invalid parameter", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not a member of the team; foreign Host", body = wire::ApiError),
        (status = 404, description = "No such team", body = wire::ApiError),
    ))]
async fn teams_recommendation(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<wire::Recommendation>, AppError> {
    let window = window_param(&q)?;
    super::users::visible_team(&state, &actor, &name).await?;
    let n = name.clone();
    let limits = db::run(state.store(), move |c| {
        crate::teams::Pools::stored(c, &n).map_err(super::users::pool_err)
    })
    .await?;
    let current = Current {
        cpus: limits.cpus,
        memory_max: limits.memory_max,
        pids_max: limits.pids_max,
    };
    let subject = Subject {
        scope: wire::RecommendationScope::Team,
        key: name.clone(),
        name,
    };
    Ok(Json(
        answer(&state, subject, window, i64::MIN, current).await?,
    ))
}

/// Whom a recommendation is for: `key` is the container's id or the team's name.
struct Subject {
    scope: wire::RecommendationScope,
    name: String,
    key: String,
}

/// Reads the history of `who` over the last `window` seconds (not before `since_ms`, nor
/// before its first sample) in at most [`MAX_POINTS`] points, and recommends.
async fn answer(
    state: &AppState,
    who: Subject,
    window: i64,
    since_ms: i64,
    current: Current,
) -> Result<wire::Recommendation, AppError> {
    let (keep, interval_ms) = state.metering().map_or((Retention::default(), 5000), |m| {
        let c = m.config();
        (c.retention, c.interval.as_millis().max(1000) as i64)
    });
    let now_ms = wall_ms();
    let window_from = (now_ms - window * 1000).max(since_ms);
    let team = who.scope == wire::RecommendationScope::Team;
    let key = who.key.clone();
    let (from_ms, summary) = blocking(state, move |c| {
        let subject = if team {
            team_subject(&key)
        } else {
            container_subject(&key)
        };
        let from_ms = store::first_sample_ms(c, &subject, window_from, now_ms)?
            .map_or(window_from, |first| first.max(window_from));
        let mut step = ((now_ms - from_ms) / MAX_POINTS).max(interval_ms);
        if step >= 60_000 {
            step = (step + 59_999) / 60_000 * 60_000;
        }
        let tier = store::pick_tier(now_ms, from_ms, step, &keep);
        let points = store::history(c, tier, &subject, from_ms, now_ms, step)?;
        let oom = if team {
            OomScope::Team(&key)
        } else {
            OomScope::Container(&key)
        };
        let kills = store::oom_kills(c, oom, from_ms)?;
        Ok((from_ms, recommend::summarize(&points, kills)))
    })
    .await?;
    let items = recommend::recommend(&summary, &current, state.governor().host_cpus());
    Ok(wire::Recommendation {
        scope: who.scope,
        name: who.name,
        window_secs: window as u64,
        from: from_ms.div_euclid(1000),
        samples: summary.samples as u64,
        min_samples: MIN_SAMPLES as u64,
        note: recommend::not_enough(&summary),
        patch: recommend::patch(&items),
        items: items
            .iter()
            .map(|i| wire::RecommendationItem {
                knob: i.knob.field().into(),
                action: match i.action {
                    Action::Increase => wire::RecommendationAction::Increase,
                    Action::Decrease => wire::RecommendationAction::Decrease,
                    Action::Keep => wire::RecommendationAction::Keep,
                },
                current: i.current,
                recommended: i.recommended,
                line: i.line(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::window_param;
    use std::collections::HashMap;

    #[test]
    fn windows() {
        let q = |k: &str, v: &str| HashMap::from([(k.to_owned(), v.to_owned())]);
        assert_eq!(window_param(&HashMap::new()).unwrap(), 7 * 86_400);
        assert_eq!(window_param(&q("window", "24h")).unwrap(), 86_400);
        assert_eq!(window_param(&q("window", "400d")).unwrap(), 366 * 86_400);
        assert!(window_param(&q("window", "soon")).is_err());
        assert!(window_param(&q("min_samples", "1")).is_err());
    }
}
