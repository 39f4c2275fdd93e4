//! `GET /metrics`: the latest sample of every container (labels `name`, `team`) and team
//! (label `team`), for Prometheus. Hand-written: a dozen families do not need a metrics
//! library, and the values come straight from the sampler's live view.
//!
//! A team's series stay while the team exists, with or without containers (its pool is metered
//! for the team's whole life, so `rate()`/`increase()` see one cumulative counter). Beside
//! them: the team's ceilings (`corral_team_limit_*`, only the limits set, from the stored
//! `team_limits` — one query, no cgroup file read per scrape; they are what the pool applied)
//! and its budget use (`corral_team_budget_ratio`, from `team_budget_state` once that table
//! exists).
//!
//! Negotiated like the Prometheus client libraries do: OpenMetrics 1.0 text when the scraper's
//! `Accept` asks for `application/openmetrics-text` (Prometheus does), otherwise the classic
//! text format 0.0.4 (what `promtool check metrics` and `curl` read), where a counter's family
//! is named with its `_total` suffix.
//!
//! Beside the sampler's counters and gauges: PSI stall time (`corral_*_pressure_seconds_total`,
//! `resource` cpu|memory|io and `kind` some|full, the `total=` of the `*.pressure` files; cgroup2
//! only, absent where the kernel prints no such line), the memory peak since the group was
//! created (`memory.peak`, v1 `memory.max_usage_in_bytes`), IO operations (`io_ops_total`, `op`
//! read|write, from `io.stat` rios/wios or v1 `blkio.throttle.io_serviced_recursive`), and the
//! cost of this calendar month so far (UTC) per container and team, priced from the ledger like
//! `GET /api/v1/billing` (`corral_{container,team}_cost_month{currency}`, a gauge that restarts
//! at 0 on the 1st; a container's series goes with the container like its other series, while
//! its cost stays in its team's). The ledger is written every `--ledger-flush` (30 s), so the
//! cost lags the live counters by up to that.
//!
//! With `corral serve --host-id NAME` every sample also carries `host="NAME"` (first among its
//! labels), so one Prometheus scraping a fleet keeps the hosts apart; `corral prometheus config`
//! and `rules` print the scrape config and the recording rules that sum teams across hosts.
//!
//! Access: admins see everything. Operators and viewers may scrape too: they get only the series
//! of their teams and those teams' containers, and none of the host-wide ones (the metering
//! backlog). Over TCP, Prometheus scrapes with an API token, e.g. one created with
//! `corral token create --user NAME` (or `POST /api/v1/tokens`), set in `scrape_configs` as
//! `authorization: { type: Bearer, credentials_file: /etc/prometheus/corral.token }`; root on the
//! unix socket is admin. Without credentials the answer is 401 (a JSON body like every API
//! error).

use std::fmt::Write;

use axum::{
    extract::State,
    http::{HeaderMap, header},
    response::IntoResponse,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use rusqlite::Connection;

use super::AppState;
use crate::auth::{Actor, TeamScope};
use crate::metering::{
    LiveStat, SubjectKind,
    billing::{self, Filter},
    calendar,
    sampler::wall_ms,
};

/// Outside `/api/v1` (where Prometheus looks); documented all the same, at its own path.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics_get))
}

/// The OpenMetrics content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every container's and team's latest sample, in the Prometheus text format (OpenMetrics when
/// `Accept` asks for it). Admins see every team; operators and viewers their own teams'
/// series only, without the host-wide ones.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses(
        (status = 200, description = "Prometheus text 0.0.4, or OpenMetrics 1.0 when Accept asks for application/openmetrics-text",
            content((String = "text/plain"), (String = "application/openmetrics-text"))),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "A foreign Host", body = wire::ApiError),
    ))]
async fn metrics_get(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
) -> impl IntoResponse {
    let scope = actor.team_scope();
    let mut live = state.metering().map(|m| m.live()).unwrap_or_default();
    live.retain(|l| match &l.kind {
        SubjectKind::Container(o) => scope.contains(&o.team),
        SubjectKind::Team(t) => scope.contains(t),
    });
    // The metering backlog is the host's, not a team's.
    let backlog = match scope {
        TeamScope::All => state.metering().map(|m| m.backlog()),
        TeamScope::Only(_) => None,
    };
    let visible = super::billing::visible_teams(&actor);
    let store = state.store().clone();
    let mut teams = tokio::task::spawn_blocking(move || team_gauges(&store.lock(), visible))
        .await
        .unwrap_or_else(|_| Ok(TeamGauges::default()))
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the team gauges for /metrics");
            TeamGauges::default()
        });
    // A container's cost series goes with the container, like its other series (its cost
    // stays in its team's).
    if let Some(cost) = &mut teams.cost {
        cost.containers.retain(|((name, team), _)| {
            live.iter().any(|l| {
                matches!(&l.kind, SubjectKind::Container(o) if o.name == *name && o.team == *team)
            })
        });
    }
    let om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let mut text = render(&live, &teams, backlog, om);
    if let (TeamScope::All, Some(l)) = (scope, state.ledger()) {
        let extra = ledger_metrics(&l.status(), om);
        match text.rfind("# EOF") {
            Some(i) if om => text.insert_str(i, &extra),
            _ => text.push_str(&extra),
        }
    }
    (
        [(header::CONTENT_TYPE, if om { OPENMETRICS } else { TEXT })],
        match &state.config().host_id {
            Some(host) => with_host(&text, host),
            None => text,
        },
    )
}

/// The shared ledger's shipping (host-wide: admins only).
fn ledger_metrics(s: &crate::ledger::shipper::Status, om: bool) -> String {
    let now = crate::metering::sampler::wall_ms() / 1000;
    let shipped = if om {
        "# TYPE corral_ledger_shipped_rows counter\n"
    } else {
        "# TYPE corral_ledger_shipped_rows_total counter\n"
    };
    format!(
        "# HELP corral_ledger_connected Whether the shared ledger (PostgreSQL) took the last shipment.\n\
         # TYPE corral_ledger_connected gauge\n\
         corral_ledger_connected {}\n\
         # HELP corral_ledger_backlog_rows Hourly ledger rows waiting to be shipped.\n\
         # TYPE corral_ledger_backlog_rows gauge\n\
         corral_ledger_backlog_rows {}\n\
         # HELP corral_ledger_backlog_age_seconds Age of the oldest hour waiting to be shipped (0: none).\n\
         # TYPE corral_ledger_backlog_age_seconds gauge\n\
         corral_ledger_backlog_age_seconds {}\n\
         # HELP corral_ledger_backlog_alarm 1 when that hour is more than 6 hours old.\n\
         # TYPE corral_ledger_backlog_alarm gauge\n\
         corral_ledger_backlog_alarm {}\n\
         # HELP corral_ledger_shipped_rows Rows the shared ledger acknowledged since shipping began.\n\
         {shipped}corral_ledger_shipped_rows_total {}\n",
        u8::from(s.up()),
        s.backlog.rows.max(0),
        s.backlog_age_s(now),
        u8::from(s.alarm(now)),
        s.backlog.shipped_rows.max(0),
    )
}

/// Every sample of `text` with `host="HOST"` first among its labels: the series of N hosts
/// scraped by one Prometheus stay apart, and fleet sums are `sum by (team)` over them.
/// (`host` is a valid host id: nothing in it needs escaping.)
pub fn with_host(text: &str, host: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
        } else {
            // A metric name holds neither `{` nor a space: the first of them ends it.
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let (name, rest) = line.split_at(end);
            out.push_str(name);
            match rest.strip_prefix('{') {
                Some(labels) if labels.starts_with('}') => {
                    let _ = write!(out, "{{host=\"{host}\"{labels}");
                }
                Some(labels) => {
                    let _ = write!(out, "{{host=\"{host}\",{labels}");
                }
                None => {
                    let _ = write!(out, "{{host=\"{host}\"}}{rest}");
                }
            }
        }
        out.push('\n');
    }
    out
}

/// Per-team values that come from the store, not from the sampler.
#[derive(Debug, Default)]
pub struct TeamGauges {
    /// Each team's stored ceilings (what its pool applied), by team name.
    pub limits: Vec<(String, wire::Limits)>,
    /// Each team's budget use, used/budget (1.0 = the whole budget).
    pub budget: Vec<(String, f64)>,
    /// What this month cost so far (absent when the ledger could not be priced).
    pub cost: Option<MonthCost>,
}

/// The cost of the calendar month so far, from the priced ledger.
#[derive(Debug, Default)]
pub struct MonthCost {
    pub currency: String,
    /// Per (container name, team): the lines of every container of that name summed (a name
    /// reused this month is one series, as it is one series in the sampler's families).
    pub containers: Vec<((String, String), f64)>,
    /// Per team.
    pub teams: Vec<(String, f64)>,
}

/// The store's gauges for the teams in `visible` (`None`: all).
fn team_gauges(conn: &Connection, visible: Option<Vec<String>>) -> rusqlite::Result<TeamGauges> {
    let seen = |team: &str| visible.as_ref().is_none_or(|v| v.iter().any(|t| t == team));
    let mut limits = team_limits(conn)?;
    limits.retain(|(t, _)| seen(t));
    let mut budget = budget_ratios(conn)?;
    budget.retain(|(t, _)| seen(t));
    let cost = match month_cost(conn, visible.clone(), wall_ms() / 1000) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "cannot price this month's ledger for /metrics");
            None
        }
    };
    Ok(TeamGauges {
        limits,
        budget,
        cost,
    })
}

/// This month's cost so far (UTC month of `now`), for the teams in `visible` (`None`: all).
pub fn month_cost(
    conn: &Connection,
    visible: Option<Vec<String>>,
    now: i64,
) -> Result<MonthCost, crate::metering::MeteringError> {
    let filter = Filter {
        teams: visible,
        ..Filter::default()
    };
    let r = billing::report(
        conn,
        calendar::month_start(now),
        calendar::hour_ceil(now),
        &filter,
    )?;
    let mut containers: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for l in &r.containers {
        *containers
            .entry((l.name.clone(), l.team.clone()))
            .or_default() += l.cost.total;
    }
    let money = |micros: i64| micros as f64 / 1e6;
    Ok(MonthCost {
        currency: r.currency,
        containers: containers.into_iter().map(|(k, v)| (k, money(v))).collect(),
        teams: r
            .teams
            .iter()
            .map(|t| (t.team.clone(), money(t.cost.total)))
            .collect(),
    })
}

/// The stored ceilings of every existing team. A row that does not parse is skipped (the
/// pool logs it at start); it must not take the whole exposition down.
fn team_limits(conn: &Connection) -> rusqlite::Result<Vec<(String, wire::Limits)>> {
    let mut stmt = conn.prepare(
        "SELECT l.team, l.limits FROM team_limits l JOIN teams t ON t.name = l.team
         ORDER BY l.team",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(team, json)| Some((team, serde_json::from_str(&json).ok()?)))
        .collect())
}

/// Each team's budget use as a ratio (`percent` / 100 of the governor's last evaluation,
/// `team_budget_state`, `migrations/0012`).
pub fn budget_ratios(conn: &Connection) -> rusqlite::Result<Vec<(String, f64)>> {
    let mut stmt = conn.prepare("SELECT team, percent FROM team_budget_state ORDER BY team")?;
    stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)? / 100.0))
    })?
    .collect()
}

/// A series of a family: the labels it adds after `name`/`team` ("" for none) and its value
/// per subject (`None`: not reported for this subject).
type Series = (&'static str, fn(&LiveStat) -> Option<f64>);

/// A family: name (without `_total`), type, unit (or ""), help, and its series.
struct Family {
    name: &'static str,
    kind: &'static str,
    unit: &'static str,
    help: &'static str,
    series: &'static [Series],
}

/// PSI `total=` (µs) of resource `r` (0 cpu, 1 memory, 2 io) and kind `k` (0 some, 1 full), s.
fn psi(l: &LiveStat, r: usize, k: usize) -> Option<f64> {
    l.pressure_total_usec[r][k].map(|us| us as f64 / 1e6)
}

const FAMILIES: &[Family] = &[
    Family {
        name: "cpu_seconds",
        kind: "counter",
        unit: "seconds",
        help: "CPU time used since the cgroup was created.",
        series: &[("", |l| Some(l.reading.counters.cpu_usec as f64 / 1e6))],
    },
    Family {
        name: "cpu_throttled_seconds",
        kind: "counter",
        unit: "seconds",
        help: "Time throttled by the CPU quota since the cgroup was created.",
        series: &[("", |l| Some(l.reading.counters.throttled_usec as f64 / 1e6))],
    },
    Family {
        name: "cpu_usage_cores",
        kind: "gauge",
        unit: "",
        help: "CPU cores in use over the last sample interval.",
        series: &[("", |l| Some(l.rates.cpu_cores))],
    },
    Family {
        name: "cpu_reserved_cores",
        kind: "gauge",
        unit: "",
        help: "CPU cores reserved (quota/period or cpuset size; 0 when unlimited).",
        series: &[("", |l| Some(l.cpus_reserved))],
    },
    Family {
        name: "memory_bytes",
        kind: "gauge",
        unit: "bytes",
        help: "Memory in use.",
        series: &[("", |l| Some(l.reading.counters.memory_current as f64))],
    },
    Family {
        name: "memory_peak_bytes",
        kind: "gauge",
        unit: "bytes",
        help: "Highest memory use since the cgroup was created (memory.peak; absent where the kernel does not report it).",
        series: &[("", |l| {
            let p = l.reading.counters.memory_peak;
            (p > 0).then_some(p as f64)
        })],
    },
    Family {
        name: "memory_limit_bytes",
        kind: "gauge",
        unit: "bytes",
        help: "Hard memory limit (absent when unlimited).",
        series: &[("", |l| l.memory_max.map(|m| m as f64))],
    },
    Family {
        name: "io_read_bytes",
        kind: "counter",
        unit: "bytes",
        help: "Bytes read from block devices since the cgroup was created.",
        series: &[("", |l| Some(l.reading.counters.io_rbytes as f64))],
    },
    Family {
        name: "io_write_bytes",
        kind: "counter",
        unit: "bytes",
        help: "Bytes written to block devices since the cgroup was created.",
        series: &[("", |l| Some(l.reading.counters.io_wbytes as f64))],
    },
    Family {
        name: "io_ops",
        kind: "counter",
        unit: "",
        help: "Block device read and write operations since the cgroup was created.",
        series: &[
            ("op=\"read\"", |l| Some(l.reading.counters.io_rios as f64)),
            ("op=\"write\"", |l| Some(l.reading.counters.io_wios as f64)),
        ],
    },
    Family {
        name: "pids",
        kind: "gauge",
        unit: "",
        help: "Tasks in the cgroup.",
        series: &[("", |l| Some(l.reading.counters.pids_current as f64))],
    },
    Family {
        name: "oom_kills",
        kind: "counter",
        unit: "",
        help: "Processes killed by the OOM killer since the cgroup was created.",
        series: &[("", |l| Some(l.reading.counters.oom_kills as f64))],
    },
    Family {
        name: "pressure_seconds",
        kind: "counter",
        unit: "seconds",
        help: "Pressure stall time (PSI total) since the cgroup was created: some = at least one task stalled on the resource, full = all non-idle tasks did (cgroup v2 only).",
        series: &[
            ("resource=\"cpu\",kind=\"some\"", |l| psi(l, 0, 0)),
            ("resource=\"cpu\",kind=\"full\"", |l| psi(l, 0, 1)),
            ("resource=\"memory\",kind=\"some\"", |l| psi(l, 1, 0)),
            ("resource=\"memory\",kind=\"full\"", |l| psi(l, 1, 1)),
            ("resource=\"io\",kind=\"some\"", |l| psi(l, 2, 0)),
            ("resource=\"io\",kind=\"full\"", |l| psi(l, 2, 1)),
        ],
    },
];

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Writes a family's metadata: OpenMetrics names the family without `_total` and has UNIT;
/// the classic format names it like its samples.
fn header(out: &mut String, om: bool, name: &str, kind: &str, unit: &str, help: &str) -> String {
    let sample = if kind == "counter" {
        format!("{name}_total")
    } else {
        name.to_owned()
    };
    let family = if om { name } else { sample.as_str() };
    let _ = writeln!(out, "# HELP {family} {help}");
    let _ = writeln!(out, "# TYPE {family} {kind}");
    if om && !unit.is_empty() {
        let _ = writeln!(out, "# UNIT {family} {unit}");
    }
    sample
}

/// A team gauge from the stored limits: name, unit, help and the limit (absent: not set).
type LimitGauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&wire::Limits) -> Option<f64>,
);

const TEAM_LIMITS: &[LimitGauge] = &[
    (
        "corral_team_limit_cpus",
        "",
        "CPU cores the team's pool may use together (absent when unlimited).",
        |l| l.cpus,
    ),
    (
        "corral_team_limit_memory_max_bytes",
        "bytes",
        "Hard memory limit of the team's pool (absent when unlimited).",
        |l| l.memory_max.map(|v| v as f64),
    ),
    (
        "corral_team_limit_memory_high_bytes",
        "bytes",
        "Memory throttling threshold of the team's pool (absent when unset).",
        |l| l.memory_high.map(|v| v as f64),
    ),
    (
        "corral_team_limit_pids_max",
        "",
        "Most tasks in the team's pool at once (absent when unlimited).",
        |l| l.pids_max.map(|v| v as f64),
    ),
];

/// The teams' ceiling and budget gauges.
fn render_team_gauges(out: &mut String, teams: &TeamGauges, om: bool) {
    for (name, unit, help, value) in TEAM_LIMITS {
        let sample = header(out, om, name, "gauge", unit, help);
        for (team, limits) in &teams.limits {
            if let Some(v) = value(limits) {
                let _ = writeln!(out, "{sample}{{team=\"{}\"}} {}", escape(team), number(v));
            }
        }
    }
    let sample = header(
        out,
        om,
        "corral_team_budget_ratio",
        "gauge",
        "ratio",
        "Budget used in the current period, used/budget (1 = all of it; the highest of the set budgets).",
    );
    for (team, ratio) in &teams.budget {
        let _ = writeln!(
            out,
            "{sample}{{team=\"{}\"}} {}",
            escape(team),
            number(*ratio)
        );
    }
    let Some(cost) = &teams.cost else {
        return;
    };
    let cur = escape(&cost.currency);
    let sample = header(
        out,
        om,
        "corral_container_cost_month",
        "gauge",
        "",
        "Cost of the container this calendar month so far (UTC), in the rate card's currency; back to 0 on the 1st.",
    );
    for ((name, team), v) in &cost.containers {
        let _ = writeln!(
            out,
            "{sample}{{name=\"{}\",team=\"{}\",currency=\"{cur}\"}} {}",
            escape(name),
            escape(team),
            number(*v)
        );
    }
    let sample = header(
        out,
        om,
        "corral_team_cost_month",
        "gauge",
        "",
        "Cost of the team's containers this calendar month so far (UTC), in the rate card's currency; back to 0 on the 1st.",
    );
    for (team, v) in &cost.teams {
        let _ = writeln!(
            out,
            "{sample}{{team=\"{}\",currency=\"{cur}\"}} {}",
            escape(team),
            number(*v)
        );
    }
}

/// Renders the exposition, OpenMetrics when `om`.
pub fn render(
    live: &[LiveStat],
    teams: &TeamGauges,
    backlog: Option<(u64, usize)>,
    om: bool,
) -> String {
    let mut out = String::new();
    for (scope, want_team) in [("container", false), ("team", true)] {
        for f in FAMILIES {
            let full = format!("corral_{scope}_{}", f.name);
            let sample = header(&mut out, om, &full, f.kind, f.unit, f.help);
            for l in live {
                let labels = match (&l.kind, want_team) {
                    (SubjectKind::Container(o), false) => {
                        format!("name=\"{}\",team=\"{}\"", escape(&o.name), escape(&o.team))
                    }
                    (SubjectKind::Team(t), true) => format!("team=\"{}\"", escape(t)),
                    _ => continue,
                };
                for (extra, value) in f.series {
                    if let Some(v) = value(l) {
                        let sep = if extra.is_empty() { "" } else { "," };
                        let _ = writeln!(out, "{sample}{{{labels}{sep}{extra}}} {}", number(v));
                    }
                }
            }
        }
    }
    render_team_gauges(&mut out, teams, om);
    if let Some((failures, buffered)) = backlog {
        let s = header(
            &mut out,
            om,
            "corral_metering_failed_commits",
            "counter",
            "",
            "Sampler ticks whose database write failed (their data is kept in memory).",
        );
        let _ = writeln!(out, "{s} {failures}");
        let s = header(
            &mut out,
            om,
            "corral_metering_buffered_samples",
            "gauge",
            "",
            "Raw samples waiting in memory for the database.",
        );
        let _ = writeln!(out, "{s} {buffered}");
    }
    if om {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::{Reading, account::Rates, store::LedgerOwner};

    #[test]
    fn every_sample_gets_the_host_label_first() {
        let text = "# HELP a x\n# TYPE a counter\na_total{team=\"t{x} y\"} 1\nb 2\nc{} 3\n# EOF\n";
        assert_eq!(
            with_host(text, "node-1"),
            "# HELP a x\n# TYPE a counter\na_total{host=\"node-1\",team=\"t{x} y\"} 1\n\
             b{host=\"node-1\"} 2\nc{host=\"node-1\"} 3\n# EOF\n"
        );
    }

    #[test]
    fn renders_families_with_escaped_labels() {
        let reading = Reading {
            boot_id: "b".into(),
            mono_ns: 1,
            wall_ms: 1,
            generation: 1,
            counters: crate::metering::Counters {
                cpu_usec: 1_500_000,
                memory_current: 4096,
                memory_peak: 8192,
                io_rios: 3,
                io_wios: 4,
                ..Default::default()
            },
            reserved: Default::default(),
        };
        let live = vec![
            LiveStat {
                subject: "c:1".into(),
                kind: SubjectKind::Container(LedgerOwner {
                    container_id: "1".into(),
                    name: "we\"b".into(),
                    team: "a".into(),
                    labels: "{}".into(),
                }),
                reading: reading.clone(),
                rates: Rates::default(),
                memory_max: None,
                cpus_reserved: 0.5,
                pressure: [None; 3],
                pressure_total_usec: [[Some(2_500_000), None], [Some(0), Some(0)], [None; 2]],
            },
            LiveStat {
                subject: "t:a".into(),
                kind: SubjectKind::Team("a".into()),
                reading,
                rates: Rates::default(),
                memory_max: Some(1 << 20),
                cpus_reserved: 0.0,
                pressure: [None; 3],
                pressure_total_usec: [[None; 2]; 3],
            },
        ];
        let teams = TeamGauges {
            limits: vec![(
                "a".into(),
                wire::Limits {
                    cpus: Some(1.5),
                    memory_max: Some(1 << 30),
                    ..Default::default()
                },
            )],
            budget: vec![("a".into(), 0.25)],
            cost: Some(MonthCost {
                currency: "EUR".into(),
                containers: vec![(("we\"b".into(), "a".into()), 0.125)],
                teams: vec![("a".into(), 0.125)],
            }),
        };
        let text = render(&live, &teams, Some((0, 0)), true);
        assert!(text.contains("# UNIT corral_team_limit_memory_max_bytes bytes\n"));
        assert!(text.contains("corral_team_limit_cpus{team=\"a\"} 1.5\n"));
        assert!(text.contains("corral_team_limit_memory_max_bytes{team=\"a\"} 1073741824.0\n"));
        // Only the limits that are set.
        assert!(!text.contains("corral_team_limit_pids_max{"));
        assert!(text.contains("corral_team_budget_ratio{team=\"a\"} 0.25\n"));
        assert!(text.contains("# TYPE corral_container_cpu_seconds counter\n"));
        assert!(text.contains("# UNIT corral_container_cpu_seconds seconds\n"));
        let classic = render(&live, &TeamGauges::default(), None, false);
        assert!(classic.contains("# TYPE corral_container_cpu_seconds_total counter\n"));
        assert!(!classic.contains("# UNIT") && !classic.contains("# EOF"));
        assert!(
            text.contains("corral_container_cpu_seconds_total{name=\"we\\\"b\",team=\"a\"} 1.5\n")
        );
        assert!(text.contains("corral_team_memory_limit_bytes{team=\"a\"} 1048576.0\n"));
        assert!(!text.contains("corral_container_memory_limit_bytes{"));
        assert!(text.ends_with("# EOF\n"));
        // PSI (only the lines the kernel printed), peak, IO operations and cost.
        assert!(text.contains("# TYPE corral_container_pressure_seconds counter\n"));
        assert!(text.contains(
            "corral_container_pressure_seconds_total{name=\"we\\\"b\",team=\"a\",resource=\"cpu\",kind=\"some\"} 2.5\n"
        ));
        assert!(!text.contains("resource=\"cpu\",kind=\"full\""));
        assert!(text.contains("resource=\"memory\",kind=\"full\"} 0.0\n"));
        assert!(!text.contains("corral_team_pressure_seconds_total{"));
        assert!(
            text.contains(
                "corral_container_memory_peak_bytes{name=\"we\\\"b\",team=\"a\"} 8192.0\n"
            )
        );
        assert!(text.contains(
            "corral_container_io_ops_total{name=\"we\\\"b\",team=\"a\",op=\"write\"} 4.0\n"
        ));
        assert!(text.contains(
            "corral_container_cost_month{name=\"we\\\"b\",team=\"a\",currency=\"EUR\"} 0.125\n"
        ));
        assert!(text.contains("corral_team_cost_month{team=\"a\",currency=\"EUR\"} 0.125\n"));
    }

    #[test]
    fn budget_ratios_read_the_budget_state() {
        let dir = std::env::temp_dir().join(format!("corral-metrics-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::store::Store::open(&dir.join("corral.db")).unwrap();
        let conn = store.lock();
        assert!(budget_ratios(&conn).unwrap().is_empty(), "no budget yet");
        conn.execute_batch(
            "INSERT INTO teams (name, description, created_at) VALUES ('a', '', 0);
             INSERT INTO team_budget_state (team, period_start, step, percent, evaluated_at)
             VALUES ('a', 0, 1, 112.5, 0);",
        )
        .unwrap();
        assert_eq!(budget_ratios(&conn).unwrap(), vec![("a".to_owned(), 1.125)]);
        drop(conn);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
