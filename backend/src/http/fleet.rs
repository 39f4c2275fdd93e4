//! The fleet, on a hub (`corral serve --hub`), read from the shared ledger:
//! - `GET /api/v1/fleet/hosts`: every host with its heartbeat (stale after `--stale-after`,
//!   60 s by default), backlog and
//!   recent usage;
//! - `GET /api/v1/fleet/statement?from=&to=&team=&host=`: usage across hosts priced with the
//!   fleet's rate card, per host, per host and team, per team and in total;
//! - `GET /api/v1/fleet/history?from=&to=&team=&by=host|team`: hourly CPU and memory series.
//!
//! Who sees what: as for `/billing`, admins every team, others only theirs (statement and
//! history are limited to them; the host list is for everyone signed in). A daemon that is
//! not a hub answers 404 `not_a_hub`.

use std::collections::{BTreeMap, HashMap};

use axum::{Json, extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppError, AppState,
    billing::{invalid, known_keys, line_to_wire, name_param, period_params, visible_teams},
};
use crate::{
    auth::{Actor, ApiQuery, AuthError},
    ledger::{Ledger, hub, sync::FleetTeam},
    metering::{
        billing::{Line, Report},
        calendar,
        sampler::wall_ms,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(fleet_hosts))
        .routes(routes!(fleet_statement))
        .routes(routes!(fleet_history))
}

/// The ledger unreachable: 503 `ledger_unavailable` (the detail goes to the log).
pub(super) fn unavailable(e: crate::ledger::pg::PgError) -> AuthError {
    tracing::warn!(error = %e.describe(), "shared ledger request failed");
    let message = match &e {
        crate::ledger::pg::PgError::HostIdTaken { .. }
        | crate::ledger::pg::PgError::NewerSchema(_) => e.to_string(),
        _ => "the shared ledger (PostgreSQL) is unreachable: fleet-wide settings and fleet \
              reports wait for it; this host keeps metering and enforcing locally"
            .to_owned(),
    };
    AuthError::LedgerUnavailable(message)
}

/// This host's shipping state for `GET /api/v1/host`.
pub(super) fn ledger_state(l: &Ledger) -> wire::fleet::LedgerState {
    let s = l.status();
    let now = wall_ms() / 1000;
    wire::fleet::LedgerState {
        target: l.config().display(),
        hub: l.config().hub,
        connected: s.connected,
        last_error: s.last_error.clone(),
        last_contact: s.last_contact_ms.map(|ms| calendar::format_time(ms / 1000)),
        backlog_rows: s.backlog.rows.max(0) as u64,
        backlog_oldest: s.backlog.oldest_period.map(calendar::format_time),
        alarm: s.alarm(now),
        shipped_rows: s.backlog.shipped_rows.max(0) as u64,
    }
}

pub(super) fn hub_of(state: &AppState) -> Result<&Ledger, AppError> {
    match state.ledger() {
        Some(l) if l.config().hub => Ok(l),
        _ => Err(AppError::Refused {
            status: StatusCode::NOT_FOUND,
            code: "not_a_hub",
            message: "this daemon is not a hub: start it with --hub --ledger postgres://… to \
                      serve the fleet"
                .into(),
        }),
    }
}

/// Every host of the fleet: heartbeat, staleness, backlog, recent usage.
#[utoipa::path(get, path = "/fleet/hosts", tag = "fleet",
    responses(
        (status = 200, description = "The hosts", body = wire::fleet::FleetHosts),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 404, description = "Not a hub (code not_a_hub)", body = wire::ApiError),
        (status = 503, description = "The ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
    ))]
async fn fleet_hosts(
    State(state): State<AppState>,
    _actor: Actor,
) -> Result<Json<wire::fleet::FleetHosts>, AppError> {
    let l = hub_of(&state)?;
    let client = l.client().await.map_err(unavailable)?;
    let hosts = hub::hosts(&client).await.map_err(unavailable)?;
    let with_token = super::forward::hosts_with_token(&state).await?;
    let fmt = |ms: i64| calendar::format_time(ms / 1000);
    let stale_after_s = l.config().stale_after_s;
    Ok(Json(wire::fleet::FleetHosts {
        stale_after_s,
        hosts: hosts
            .into_iter()
            .map(|h| wire::fleet::FleetHost {
                token_set: with_token.contains(&h.host_id),
                stale: h.age_ms > stale_after_s as i64 * 1000,
                heartbeat_age_s: h.age_ms.max(0) as f64 / 1000.0,
                registered_at: fmt(h.registered_ms),
                heartbeat_at: fmt(h.heartbeat_ms),
                last_ship_at: h.last_ship_ms.map(fmt),
                backlog_oldest: h.backlog_oldest.map(calendar::format_time),
                host_id: h.host_id,
                api_url: h.api_url,
                version: h.version,
                shipped_rows: h.shipped_rows.max(0) as u64,
                backlog_rows: h.backlog_rows.max(0) as u64,
                containers: h.containers.max(0) as u64,
                cpu_core_hours_24h: h.cpu_usec_24h as f64 / 3.6e9,
            })
            .collect(),
    }))
}

/// Query of the fleet routes (documentation; the handlers read a map to name unknown keys).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct FleetParams {
    /// Only this team (one of yours unless admin).
    #[param(value_type = Option<wire::formats::Name>)]
    team: Option<String>,
    /// Only this host (statement).
    #[param(value_type = Option<wire::formats::Name>)]
    host: Option<String>,
    /// Start (default: this month).
    #[param(value_type = Option<wire::formats::Time>)]
    from: Option<String>,
    /// End, exclusive (default: now, rounded up to the hour).
    #[param(value_type = Option<wire::formats::Time>)]
    to: Option<String>,
    /// History: one series per `host` (default) or per `team`.
    #[param(pattern = r"^(host|team)$")]
    by: Option<String>,
}

/// The checked common parameters.
struct Params {
    from: i64,
    to: i64,
    team: Option<String>,
    host: Option<String>,
    by_team: bool,
}

fn params(
    q: &HashMap<String, String>,
    allowed: &[&str],
    actor: &Actor,
) -> Result<Params, AppError> {
    known_keys(q, allowed)?;
    let (from, to) = period_params(q)?;
    for field in ["team", "host"] {
        if let Some(v) = q.get(field) {
            name_param(field, v)?;
        }
    }
    if let Some(team) = q.get("team") {
        actor.can_see_team(team)?;
    }
    let by_team = match q.get("by").map(String::as_str) {
        None | Some("host") => false,
        Some("team") => true,
        Some(v) => {
            return Err(invalid(
                "by",
                format!("invalid by {v:?}: allowed are host, team"),
            ));
        }
    };
    Ok(Params {
        from,
        to,
        team: q.get("team").cloned(),
        host: q.get("host").cloned(),
        by_team,
    })
}

fn fleet_line(host: &str, l: &Line) -> wire::fleet::FleetLine {
    wire::fleet::FleetLine {
        host: host.to_owned(),
        team: l.team.clone(),
        cpu_usec: l.usage.cpu_usec,
        cost_micros: l.cost.total,
        line: line_to_wire(l),
    }
}

/// Usage across hosts priced with the fleet's rate card: per host, per host and team, per
/// team, and in total (default: this month so far).
#[utoipa::path(get, path = "/fleet/statement", tag = "fleet",
    params(FleetParams),
    responses(
        (status = 200, description = "The fleet statement", body = wire::fleet::FleetStatement),
        (status = 400, description = "Invalid parameter", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "A team outside yours", body = wire::ApiError),
        (status = 404, description = "Not a hub (code not_a_hub)", body = wire::ApiError),
        (status = 503, description = "The ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
    ))]
async fn fleet_statement(
    State(state): State<AppState>,
    actor: Actor,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<wire::fleet::FleetStatement>, AppError> {
    let p = params(&q, &["team", "host", "from", "to"], &actor)?;
    let l = hub_of(&state)?;
    let cards = super::billing::blocking(&state, crate::metering::billing::rate_cards).await?;
    let client = l.client().await.map_err(unavailable)?;
    let visible = visible_teams(&actor);
    let scope = hub::Scope {
        team: p.team.as_deref(),
        host: p.host.as_deref(),
        except_host: None,
        teams: visible.as_deref(),
    };
    let by_host = hub::priced(&client, &cards, p.from, p.to, &scope)
        .await
        .map_err(unavailable)?;
    let base = Report::priced_by(&cards, p.from, p.to);
    let mut out = wire::fleet::FleetStatement {
        from: calendar::format_time(base.from),
        to: calendar::format_time(base.to),
        currency: base.currency,
        rates_set: base.rates_set,
        ..Default::default()
    };
    let mut teams: BTreeMap<&str, Line> = BTreeMap::new();
    let mut total = Line::default();
    for (host, r) in &by_host {
        for t in &r.teams {
            out.host_teams.push(fleet_line(host, t));
            teams
                .entry(&t.team)
                .or_insert_with(|| Line {
                    team: t.team.clone(),
                    ..Line::default()
                })
                .add(t);
        }
        total.add(&r.total);
        out.hosts.push(fleet_line(host, &r.total));
    }
    out.teams = teams.values().map(|t| fleet_line("", t)).collect();
    out.total = fleet_line("", &total);
    Ok(Json(out))
}

/// Hourly CPU and memory per host (or per team) across the fleet.
#[utoipa::path(get, path = "/fleet/history", tag = "fleet",
    params(FleetParams),
    responses(
        (status = 200, description = "Hourly series", body = wire::fleet::FleetHistory),
        (status = 400, description = "Invalid parameter", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "A team outside yours", body = wire::ApiError),
        (status = 404, description = "Not a hub (code not_a_hub)", body = wire::ApiError),
        (status = 503, description = "The ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
    ))]
async fn fleet_history(
    State(state): State<AppState>,
    actor: Actor,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<wire::fleet::FleetHistory>, AppError> {
    let p = params(&q, &["team", "from", "to", "by"], &actor)?;
    // Others than admins see their own teams only: per team, or for one of their teams.
    let visible = visible_teams(&actor);
    if visible.is_some() && p.team.is_none() && !p.by_team {
        return Err(invalid(
            "team",
            "name one of your teams (or by=team): per-host totals span every team".to_owned(),
        ));
    }
    let l = hub_of(&state)?;
    let client = l.client().await.map_err(unavailable)?;
    let (from, to) = (calendar::hour_start(p.from), calendar::hour_ceil(p.to));
    let rows = hub::history(&client, from, to, p.team.as_deref(), p.by_team)
        .await
        .map_err(unavailable)?;
    let mut series: BTreeMap<String, Vec<wire::fleet::FleetPoint>> = BTreeMap::new();
    for (period, key, cpu, mem) in rows {
        if p.by_team
            && let Some(v) = &visible
            && !v.contains(&key)
        {
            continue;
        }
        series
            .entry(key)
            .or_default()
            .push(wire::fleet::FleetPoint {
                t: calendar::format_time(period),
                cpu_core_hours: cpu as f64 / 3.6e9,
                mem_gib_hours: mem as f64 / (1u64 << 30) as f64 / 3600.0,
            });
    }
    Ok(Json(wire::fleet::FleetHistory {
        from: calendar::format_time(from),
        to: calendar::format_time(to),
        by: if p.by_team { "team" } else { "host" }.into(),
        series: series
            .into_iter()
            .map(|(key, points)| wire::fleet::FleetSeries { key, points })
            .collect(),
    }))
}

/// A change of a team's definition with a shared ledger: written to PostgreSQL before this
/// host applies it (every host pulls it from there), put back when this host then refuses it.
pub(super) struct TeamChange {
    client: std::sync::Arc<tokio_postgres::Client>,
    /// The fleet's definition before the change (`None`: PostgreSQL had none).
    pub before: Option<FleetTeam>,
}

impl TeamChange {
    /// The fleet's definition of `name`, or `None` without a shared ledger.
    pub(super) async fn begin(state: &AppState, name: &str) -> Result<Option<Self>, AuthError> {
        let Some(l) = state.ledger() else {
            return Ok(None);
        };
        let client = l.client().await.map_err(unavailable)?;
        let before = crate::ledger::sync::team(&client, name)
            .await
            .map_err(unavailable)?;
        Ok(Some(TeamChange { client, before }))
    }

    pub(super) async fn write(&self, t: &FleetTeam) -> Result<(), AuthError> {
        crate::ledger::sync::put_team(&self.client, t)
            .await
            .map_err(unavailable)
    }

    /// Puts the fleet's definition back as it was (removed when it had none), after this
    /// host refused the change.
    pub(super) async fn undo(&self, name: &str) {
        let r = match &self.before {
            Some(t) => crate::ledger::sync::put_team(&self.client, t).await,
            None => crate::ledger::sync::forget_team(&self.client, name).await,
        };
        if let Err(e) = r {
            tracing::error!(team = name, error = %e.describe(), "cannot put the fleet's team definition back after this host refused the change");
        }
    }
}
