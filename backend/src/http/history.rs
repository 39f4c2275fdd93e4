//! `GET /api/v1/containers/{name}/history?range=1h&step=1m` (also `from`/`to` instead of
//! `range`): a container's usage over time, read from the finest history tier that still holds
//! the range (raw 7 days, 1-minute rollups 90 days, 1-hour rollups 2 years by default).
//! `GET /api/v1/teams/{name}/history` answers the same query and shape for a team's pool, which
//! is metered for the team's whole life (with or without containers).

use std::collections::HashMap;

use axum::{Json, extract::State};
use rusqlite::OptionalExtension;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppError, AppState,
    billing::{blocking, parse_time_param},
};
use crate::auth::{Actor, ApiPath, ApiQuery};
use crate::metering::{
    sampler::{container_subject, team_subject, wall_ms},
    store::{self, Retention},
};

/// In the OpenAPI document; readable by whoever may see the container's team.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(history_get))
        .routes(routes!(team_history_get))
}

/// Path of a history request (documentation).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct HistoryPath {
    /// Container name or id (also of a removed container).
    #[param(value_type = wire::formats::Name)]
    name: String,
}

/// Path of a team history request (documentation).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct TeamHistoryPath {
    /// Team name.
    #[param(value_type = wire::formats::Name)]
    name: String,
}

/// Query of a history request (documentation; the handler reads a map to name unknown keys).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct HistoryQuery {
    /// How far back from `to`: 30s, 5m, 2h, 7d (default 1h).
    #[param(pattern = r"^[1-9][0-9]{0,4}[smhdw]?$")]
    range: Option<String>,
    /// Point spacing (default: about 120 points; at most 10000 points).
    #[param(pattern = r"^[1-9][0-9]{0,4}[smhdw]?$")]
    step: Option<String>,
    /// Start instead of `range`: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS]Z or Unix seconds.
    #[param(value_type = Option<wire::formats::Time>)]
    from: Option<String>,
    /// End (default now).
    #[param(value_type = Option<wire::formats::Time>)]
    to: Option<String>,
}

/// Parses `90`, `30s`, `5m`, `2h`, `7d` into seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 's') => (&s[..i], 1),
        (i, 'm') => (&s[..i], 60),
        (i, 'h') => (&s[..i], 3600),
        (i, 'd') => (&s[..i], 86_400),
        (i, 'w') => (&s[..i], 7 * 86_400),
        _ => (s, 1),
    };
    let n: i64 = num.parse().ok()?;
    (n > 0).then(|| n.checked_mul(mult)).flatten()
}

fn invalid(field: &str, message: String) -> AppError {
    AppError::Invalid {
        field: field.to_owned(),
        message,
    }
}

/// The time window and point spacing a history query asks for.
#[derive(Debug, Clone, Copy)]
struct Window {
    now_ms: i64,
    from_ms: i64,
    to_ms: i64,
    step_s: i64,
}

/// Reads `range`/`step`/`from`/`to` (unknown keys refused, naming the key): one parser for
/// the container and team routes, so both answer the same query the same way.
fn window(state: &AppState, q: &HashMap<String, String>) -> Result<Window, AppError> {
    for k in q.keys() {
        if !["range", "step", "from", "to"].contains(&k.as_str()) {
            return Err(invalid(
                k,
                format!("unknown parameter {k:?}: allowed are range, step, from, to"),
            ));
        }
    }
    let now_ms = wall_ms();
    let dur = |field: &str| -> Result<Option<i64>, AppError> {
        q.get(field)
            .map(|v| {
                parse_duration(v).ok_or_else(|| {
                    invalid(
                        field,
                        format!(
                            "invalid {field} {v:?}: allowed is a duration such as 30s, 5m, 2h, 7d"
                        ),
                    )
                })
            })
            .transpose()
    };
    let to_ms = match q.get("to") {
        Some(v) => parse_time_param("to", v)? * 1000,
        None => now_ms,
    };
    let from_ms = match (q.get("from"), dur("range")?) {
        (Some(v), _) => parse_time_param("from", v)? * 1000,
        (None, Some(r)) => to_ms - r * 1000,
        (None, None) => to_ms - 3_600_000,
    };
    if from_ms >= to_ms {
        return Err(invalid(
            "from",
            "invalid range: from must be before to".into(),
        ));
    }
    let interval = state
        .metering()
        .map_or(5, |m| m.config().interval.as_secs().max(1) as i64);
    let step_s = match dur("step")? {
        Some(s) => s,
        // About 120 points, never finer than the sampling.
        None => ((to_ms - from_ms) / 1000 / 120).max(interval),
    };
    if (to_ms - from_ms) / 1000 / step_s > 10_000 {
        return Err(invalid(
            "step",
            format!("invalid step {step_s}s: at most 10000 points per query"),
        ));
    }
    Ok(Window {
        now_ms,
        from_ms,
        to_ms,
        step_s,
    })
}

/// A container's usage over time, from the finest history tier that still holds the range.
#[utoipa::path(get, path = "/containers/{name}/history", tag = "billing",
    params(HistoryPath, HistoryQuery),
    responses(
        (status = 200, description = "History points", body = wire::billing::History),
        (status = 400, description = "Invalid parameter", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "The container's team is not yours; foreign Host", body = wire::ApiError),
        (status = 404, description = "No metered container with this name or id", body = wire::ApiError),
    ))]
async fn history_get(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<wire::billing::History>, AppError> {
    let w = window(&state, &q)?;
    let registered = state.metering().and_then(|m| m.container_owner(&name));
    let lookup = name.clone();
    let (id, team) = blocking(&state, move |c| {
        let owner = match registered {
            Some(o) => Some(o),
            None => c
                .query_row(
                    "SELECT container_id, team FROM usage_ledger_month
                     WHERE name = ?1 OR container_id = ?1 ORDER BY period DESC LIMIT 1",
                    [&lookup],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?,
        };
        owner.ok_or(crate::metering::MeteringError::NotFound(lookup))
    })
    .await?;
    actor.can_see_team(&team)?;
    Ok(Json(answer(&state, container_subject(&id), name, w).await?))
}

/// A team pool's usage over time (same query, tiers and shape as a container's), for admins
/// and the team's members; 403 for others, 404 for a team that does not exist.
#[utoipa::path(get, path = "/teams/{name}/history", tag = "teams",
    params(TeamHistoryPath, HistoryQuery),
    responses(
        (status = 200, description = "History points of the team's pool", body = wire::billing::History),
        (status = 400, description = "Invalid parameter", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not a member of the team; foreign Host", body = wire::ApiError),
        (status = 404, description = "No such team", body = wire::ApiError),
    ))]
async fn team_history_get(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<wire::billing::History>, AppError> {
    let w = window(&state, &q)?;
    // Same rule as `GET /api/v1/teams/{name}`: membership first, so a non-member learns
    // nothing about which teams exist.
    super::users::visible_team(&state, &actor, &name).await?;
    Ok(Json(answer(&state, team_subject(&name), name, w).await?))
}

/// The history points of `subject` over `w`, from the finest tier that still holds it.
async fn answer(
    state: &AppState,
    subject: String,
    name: String,
    w: Window,
) -> Result<wire::billing::History, AppError> {
    let keep = state
        .metering()
        .map_or_else(Retention::default, |m| m.config().retention);
    let Window {
        now_ms,
        from_ms,
        to_ms,
        step_s,
    } = w;
    let (points, table) = blocking(state, move |c| {
        let table = store::pick_tier(now_ms, from_ms, step_s * 1000, &keep);
        let pts = store::history(c, table, &subject, from_ms, to_ms, step_s * 1000)?;
        Ok((pts, table))
    })
    .await?;
    // Pressure is stored in hundredths of a percent.
    let pct = |v: Option<f64>| v.map(|h| h.round() / 100.0);
    let points = points
        .iter()
        .map(|p| wire::billing::HistoryPoint {
            ts: p.ts_ms,
            cpu_cores: if p.covered_ms > 0 {
                p.cpu_usec as f64 / 1000.0 / p.covered_ms as f64
            } else {
                0.0
            },
            cpu_seconds: p.cpu_usec as f64 / 1e6,
            throttled_seconds: p.throttled_usec as f64 / 1e6,
            mem_avg_bytes: p.mem_avg.max(0) as u64,
            mem_peak_bytes: p.mem_peak.max(0) as u64,
            io_read_bytes: p.io_rbytes.max(0) as u64,
            io_write_bytes: p.io_wbytes.max(0) as u64,
            pids_peak: p.pids_peak.max(0) as u64,
            cpu_pressure: pct(p.pressure_avg[0]),
            memory_pressure: pct(p.pressure_avg[1]),
            io_pressure: pct(p.pressure_avg[2]),
            cpu_pressure_max: pct(p.pressure_max[0].map(|v| v as f64)),
            memory_pressure_max: pct(p.pressure_max[1].map(|v| v as f64)),
            io_pressure_max: pct(p.pressure_max[2].map(|v| v as f64)),
        })
        .collect();
    Ok(wire::billing::History {
        name,
        tier: match table {
            store::RAW => "raw",
            "meter_rollup_1m" => "1m",
            _ => "1h",
        }
        .into(),
        step_secs: step_s as u64,
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("-1h"), None);
        assert_eq!(parse_duration("h"), None);
    }
}
