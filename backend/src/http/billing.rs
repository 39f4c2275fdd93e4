//! Billing and the live view:
//! - `GET /api/v1/billing?team=&container=&label=k=v&from=&to=`: priced totals per container,
//!   team and label (default: this month so far);
//! - `GET /api/v1/billing/statements/{team}/{month}[?format=csv]`: a team's monthly statement,
//!   reconciled with the host's CPU time;
//! - `GET|PUT /api/v1/billing/rates`: the versioned rate card;
//! - `GET /api/v1/stats`: the latest sample of every container and team.

use std::collections::HashMap;

use axum::{
    Json,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppError, AppState};
use crate::auth::{Actor, ApiJson, ApiPath, ApiQuery, TeamScope, audit};
use crate::metering::{
    MeteringError, SubjectKind,
    billing::{self, Filter, Line, RateCard, Report, Statement},
    calendar,
    sampler::wall_ms,
};

/// Billing, statements, rates and the live view (all in the OpenAPI document).
///
/// Who sees what: admins every team; operators and viewers only their teams (a `team` outside
/// them is 403, no `team` means all of theirs). The rate card is readable by everyone signed
/// in and changed by admins only (audited with before/after).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(billing_get))
        .routes(routes!(billing_rates_get, billing_rates_put))
        .routes(routes!(billing_statement_get))
        .routes(routes!(stats_get))
}

/// Query of `GET /billing` (documentation; the handler reads a map to name unknown keys).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct BillingParams {
    /// Only this team (one of yours unless admin).
    #[param(value_type = Option<wire::formats::Name>)]
    team: Option<String>,
    /// Only this container (id or name).
    #[param(min_length = 1)]
    container: Option<String>,
    /// Only containers with this label, `key=value`.
    #[param(pattern = r"^[^=]+=.*$")]
    label: Option<String>,
    /// Start: YYYY-MM-DD, YYYY-MM, YYYY-MM-DDTHH:MM[:SS]Z or Unix seconds (default: this month).
    #[param(value_type = Option<wire::formats::Time>)]
    from: Option<String>,
    /// End (exclusive), same formats, after `from` (default: now, rounded up to the hour).
    #[param(value_type = Option<wire::formats::Time>)]
    to: Option<String>,
}

/// Path of a statement (documentation).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct StatementPath {
    /// The team (one of yours unless admin).
    #[param(value_type = wire::formats::Name)]
    team: String,
    /// The month, YYYY-MM.
    #[param(pattern = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$")]
    month: String,
}

/// Query of a statement (documentation).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct StatementQuery {
    /// `json` (default) or `csv`.
    #[param(pattern = r"^(json|csv)$")]
    format: Option<String>,
}

/// The teams a report is limited to: `None` for all (admins), else the caller's teams.
pub(super) fn visible_teams(actor: &Actor) -> Option<Vec<String>> {
    match actor.team_scope() {
        TeamScope::All => None,
        TeamScope::Only(teams) => Some(teams.to_vec()),
    }
}

impl From<MeteringError> for AppError {
    fn from(e: MeteringError) -> Self {
        match e {
            MeteringError::Invalid { field, .. } => AppError::Invalid {
                field: field.to_owned(),
                message: e.to_string(),
            },
            MeteringError::NotFound(_) => AppError::NotFound(e.to_string()),
            other => AppError::internal("metering", other),
        }
    }
}

/// Runs a store closure on a blocking thread.
pub(super) async fn blocking<T, F>(state: &AppState, f: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Connection) -> Result<T, MeteringError> + Send + 'static,
{
    let store = state.store().clone();
    tokio::task::spawn_blocking(move || f(&store.lock()))
        .await
        .map_err(|e| AppError::internal("metering task", e))?
        .map_err(AppError::from)
}

pub(super) fn invalid(field: &str, message: String) -> AppError {
    AppError::Invalid {
        field: field.to_owned(),
        message,
    }
}

/// Refuses query keys outside `allowed`, naming the allowed ones.
pub(super) fn known_keys(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), AppError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(invalid(
            k,
            format!(
                "unknown parameter {k:?}: allowed {} {}",
                if allowed.len() == 1 { "is" } else { "are" },
                allowed.join(", ")
            ),
        )),
    }
}

/// `from` (default: this month's start) and `to` (default: now, rounded up to the hour) of a
/// report query, `to` after `from`.
pub(super) fn period_params(q: &HashMap<String, String>) -> Result<(i64, i64), AppError> {
    let now = wall_ms() / 1000;
    let from = match q.get("from") {
        Some(v) => parse_time_param("from", v)?,
        None => calendar::month_start(now),
    };
    let to = match q.get("to") {
        Some(v) => parse_time_param("to", v)?,
        None => calendar::hour_ceil(now),
    };
    if to <= from {
        return Err(invalid(
            "to",
            format!(
                "invalid to {}: must be after from",
                calendar::format_time(to)
            ),
        ));
    }
    Ok((from, to))
}

/// A team or host name given as `field`: 1-64 of [A-Za-z0-9_.-], starting alphanumeric.
pub(super) fn name_param(field: &str, v: &str) -> Result<(), AppError> {
    if crate::runtime::manager::valid_name(v) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "invalid {field} {v:?}: allowed is 1-64 of [A-Za-z0-9_.-], starting alphanumeric"
            ),
        ))
    }
}

/// Parses a `from`/`to` query value.
pub(super) fn parse_time_param(field: &str, v: &str) -> Result<i64, AppError> {
    calendar::parse_time(v).ok_or_else(|| {
        invalid(
            field,
            format!("invalid {field} {v:?}: allowed is YYYY-MM-DD, YYYY-MM, YYYY-MM-DDTHH:MM[:SS]Z or Unix seconds"),
        )
    })
}

/// Priced totals per container, team and label over a period (default: this month so far).
#[utoipa::path(get, path = "/billing", tag = "billing",
    params(BillingParams),
    responses(
        (status = 200, description = "The report (rounded out to whole hours)", body = wire::billing::BillingReport),
        (status = 400, description = "Invalid parameter", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "A team outside yours; foreign Host", body = wire::ApiError),
    ))]
async fn billing_get(
    State(state): State<AppState>,
    actor: Actor,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<wire::billing::BillingReport>, AppError> {
    known_keys(&q, &["team", "container", "label", "from", "to"])?;
    let (from, to) = period_params(&q)?;
    let label = match q.get("label") {
        Some(kv) => Some(
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    invalid(
                        "label",
                        format!("invalid label {kv:?}: allowed is key=value"),
                    )
                })?,
        ),
        None => None,
    };
    if let Some(team) = q.get("team") {
        name_param("team", team)?;
        actor.can_see_team(team)?;
    }
    if q.get("container").is_some_and(String::is_empty) {
        return Err(invalid(
            "container",
            "invalid container \"\": give a container id or name, or leave the parameter out"
                .to_owned(),
        ));
    }
    let filter = Filter {
        team: q.get("team").cloned(),
        teams: visible_teams(&actor),
        container: q.get("container").cloned(),
        label,
    };
    let report = blocking(&state, move |c| billing::report(c, from, to, &filter)).await?;
    Ok(Json(report_to_wire(&report)))
}

/// A team's monthly statement (JSON, or CSV with `format=csv`), reconciled with the host's CPU.
#[utoipa::path(get, path = "/billing/statements/{team}/{month}", tag = "billing",
    params(StatementPath, StatementQuery),
    responses(
        (status = 200, description = "The statement", content(
            (wire::billing::Statement = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "Invalid parameter", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "A team outside yours; foreign Host", body = wire::ApiError),
    ))]
async fn billing_statement_get(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath((team, month)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Response, AppError> {
    name_param("team", &team)?;
    actor.can_see_team(&team)?;
    known_keys(&q, &["format"])?;
    let t = calendar::parse_time(&month)
        .filter(|_| month.len() == 7)
        .ok_or_else(|| {
            invalid(
                "month",
                format!("invalid month {month:?}: allowed is YYYY-MM"),
            )
        })?;
    let csv = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(invalid(
                "format",
                format!("invalid format {other:?}: allowed is json or csv"),
            ));
        }
    };
    let s = blocking(&state, move |c| billing::statement(c, &team, t)).await?;
    if csv {
        let filename = format!("attachment; filename=\"corral-{}-{}.csv\"", s.team, s.month);
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, filename),
            ],
            billing::statement_csv(&s),
        )
            .into_response())
    } else {
        Ok(Json(statement_to_wire(&s)).into_response())
    }
}

/// The rate card in force now and every version (readable by everyone signed in).
#[utoipa::path(get, path = "/billing/rates", tag = "billing",
    responses(
        (status = 200, description = "Current rates and all versions", body = wire::billing::RateCards),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn billing_rates_get(
    State(state): State<AppState>,
    _actor: Actor,
) -> Result<Json<wire::billing::RateCards>, AppError> {
    Ok(Json(current_cards(&state).await?))
}

async fn current_cards(state: &AppState) -> Result<wire::billing::RateCards, AppError> {
    let now = wall_ms() / 1000;
    let cards = blocking(state, billing::rate_cards).await?;
    let current = cards
        .iter()
        .rev()
        .find(|c| c.effective_from <= now)
        .cloned()
        .unwrap_or_else(RateCard::zero);
    Ok(wire::billing::RateCards {
        current: card_to_wire(&current),
        versions: cards.iter().map(card_to_wire).collect(),
    })
}

/// A new rate version from `effective_from` (default now; past bills keep their rates). Admin.
#[utoipa::path(put, path = "/billing/rates", tag = "billing",
    request_body = wire::billing::RateCard,
    responses(
        (status = 200, description = "The saved version", body = wire::billing::RateCard),
        (status = 400, description = "Invalid field", body = wire::ApiError),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Not an admin; foreign Host/Origin, missing CSRF header", body = wire::ApiError),
        (status = 503, description = "The shared ledger is unreachable (code ledger_unavailable)", body = wire::ApiError),
    ))]
async fn billing_rates_put(
    State(state): State<AppState>,
    actor: Actor,
    ApiJson(body): ApiJson<wire::billing::RateCard>,
) -> Result<Json<wire::billing::RateCard>, AppError> {
    actor.require_admin()?;
    let now = wall_ms() / 1000;
    let effective_from = match &body.effective_from {
        Some(v) => parse_time_param("effective_from", v)?,
        None => now,
    };
    let price = |field: &str, v: f64| -> Result<i64, AppError> {
        if !v.is_finite() || !(0.0..=1e6).contains(&v) {
            return Err(invalid(
                field,
                format!("invalid {field} {v}: allowed is 0 to 1000000"),
            ));
        }
        Ok((v * 1e6).round() as i64)
    };
    let card = RateCard {
        effective_from,
        currency: body.currency.clone(),
        cpu_core_hour_used: price("cpu_core_hour_used", body.cpu_core_hour_used)?,
        cpu_core_hour_reserved: price("cpu_core_hour_reserved", body.cpu_core_hour_reserved)?,
        mem_gib_hour_used: price("mem_gib_hour_used", body.mem_gib_hour_used)?,
        mem_gib_hour_reserved: price("mem_gib_hour_reserved", body.mem_gib_hour_reserved)?,
        io_gib: price("io_gib", body.io_gib)?,
    };
    let before = current_cards(&state).await?.current;
    // With a shared ledger the fleet's copy is written first (then this host's, which the
    // others pull): a PostgreSQL that cannot take it refuses the change everywhere.
    let saved = match state.ledger() {
        Some(ledger) => {
            let checked =
                blocking(&state, move |c| billing::check_rate_card(c, &card, now)).await?;
            let client = ledger.client().await.map_err(super::fleet::unavailable)?;
            crate::ledger::sync::put_rate_card(&client, &checked)
                .await
                .map_err(super::fleet::unavailable)?;
            let c2 = checked.clone();
            blocking(&state, move |c| {
                billing::insert_rate_card(c, &c2, now * 1000)
            })
            .await?;
            checked
        }
        None => blocking(&state, move |c| billing::put_rate_card(c, &card, now)).await?,
    };
    let saved = card_to_wire(&saved);
    audit::record(
        state.store(),
        audit::Event::new(&actor, "billing.rates.put")
            .target(saved.effective_from.clone().unwrap_or_default())
            .before(json!(before))
            .after(json!(saved)),
    )
    .await;
    Ok(Json(saved))
}

/// The latest sample of every container and team you may see.
#[utoipa::path(get, path = "/stats", tag = "billing",
    responses(
        (status = 200, description = "Live usage", body = wire::billing::LiveStats),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn stats_get(State(state): State<AppState>, actor: Actor) -> Json<wire::billing::LiveStats> {
    let Some(m) = state.metering() else {
        return Json(wire::billing::LiveStats::default());
    };
    let scope = actor.team_scope();
    let stats = m
        .live()
        .into_iter()
        .filter(|l| match &l.kind {
            SubjectKind::Container(o) => scope.contains(&o.team),
            SubjectKind::Team(t) => scope.contains(t),
        })
        .map(|l| crate::events::wire_stat(&l))
        .collect();
    Json(wire::billing::LiveStats {
        interval_secs: m.config().interval.as_secs_f64(),
        stats,
    })
}

fn money(micros: i64) -> f64 {
    micros as f64 / 1e6
}

fn card_to_wire(c: &RateCard) -> wire::billing::RateCard {
    wire::billing::RateCard {
        effective_from: (c.effective_from != i64::MIN)
            .then(|| calendar::format_time(c.effective_from)),
        currency: c.currency.clone(),
        cpu_core_hour_used: money(c.cpu_core_hour_used),
        cpu_core_hour_reserved: money(c.cpu_core_hour_reserved),
        mem_gib_hour_used: money(c.mem_gib_hour_used),
        mem_gib_hour_reserved: money(c.mem_gib_hour_reserved),
        io_gib: money(c.io_gib),
    }
}

pub(super) fn line_to_wire(l: &Line) -> wire::billing::BillingLine {
    let q = &l.usage;
    let gib_h = (1u64 << 30) as f64 * 3600.0;
    wire::billing::BillingLine {
        container_id: l.container_id.clone(),
        name: l.name.clone(),
        team: l.team.clone(),
        labels: l.labels.clone(),
        usage: wire::billing::Usage {
            cpu_seconds: q.cpu_usec as f64 / 1e6,
            cpu_core_hours: q.cpu_usec as f64 / 3.6e9,
            throttled_seconds: q.throttled_usec as f64 / 1e6,
            cpu_reserved_core_hours: q.cpu_reserved_core_usec as f64 / 3.6e9,
            mem_gib_hours: q.mem_byte_s as f64 / gib_h,
            mem_reserved_gib_hours: q.mem_reserved_byte_s as f64 / gib_h,
            io_read_bytes: q.io_rbytes.max(0) as u64,
            io_write_bytes: q.io_wbytes.max(0) as u64,
            io_read_ops: q.io_rios.max(0) as u64,
            io_write_ops: q.io_wios.max(0) as u64,
            oom_kills: q.oom_kills.max(0) as u64,
            mem_peak_bytes: q.mem_peak.max(0) as u64,
            pids_peak: q.pids_peak.max(0) as u64,
        },
        cost: wire::billing::Cost {
            cpu_used: money(l.cost.cpu_used),
            cpu_reserved: money(l.cost.cpu_reserved),
            mem_used: money(l.cost.mem_used),
            mem_reserved: money(l.cost.mem_reserved),
            io: money(l.cost.io),
            total: money(l.cost.total),
        },
    }
}

fn report_to_wire(r: &Report) -> wire::billing::BillingReport {
    wire::billing::BillingReport {
        from: calendar::format_time(r.from),
        to: calendar::format_time(r.to),
        currency: r.currency.clone(),
        rates_set: r.rates_set,
        containers: r.containers.iter().map(line_to_wire).collect(),
        teams: r.teams.iter().map(line_to_wire).collect(),
        labels: r.labels.iter().map(line_to_wire).collect(),
        total: line_to_wire(&r.total),
    }
}

fn statement_to_wire(s: &Statement) -> wire::billing::Statement {
    wire::billing::Statement {
        team: s.team.clone(),
        month: s.month.clone(),
        report: report_to_wire(&s.report),
        host: wire::billing::Reconciliation {
            host_cpu_seconds: s.host.host_cpu_usec as f64 / 1e6,
            containers_cpu_seconds: s.host.containers_cpu_usec as f64 / 1e6,
            idle_cpu_seconds: s.host.idle_cpu_usec as f64 / 1e6,
            reconciled: s.host.reconciled,
        },
    }
}
