//! `GET /metrics`: the latest sample of every container (labels `name`, `team`) and team
//! (label `team`), for Prometheus. Hand-written: a dozen families do not need a metrics
//! library, and the values come straight from the sampler's live view.
//!
//! Negotiated like the Prometheus client libraries do: OpenMetrics 1.0 text when the scraper's
//! `Accept` asks for `application/openmetrics-text` (Prometheus does), otherwise the classic
//! text format 0.0.4 (what `promtool check metrics` and `curl` read), where a counter's family
//! is named with its `_total` suffix.
//!
//! Access: admins only (the series name every team's containers). Over TCP, Prometheus scrapes
//! with an API token of an admin, e.g. a token created with `corral token create --user ADMIN`
//! (or `POST /api/v1/tokens`), set in `scrape_configs` as
//! `authorization: { type: Bearer, credentials_file: /etc/prometheus/corral.token }`; root on the
//! unix socket is admin too. Without credentials the answer is 401, with a non-admin's 403
//! (JSON bodies like every API error).

use std::fmt::Write;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, header},
    response::IntoResponse,
    routing::get,
};

use super::AppState;
use crate::auth::{Actor, AuthError};
use crate::metering::{LiveStat, SubjectKind};

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics_get))
}

/// The OpenMetrics content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics_get(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
) -> Result<impl IntoResponse, AuthError> {
    actor.require_admin()?;
    let live = state.metering().map(|m| m.live()).unwrap_or_default();
    let backlog = state.metering().map(|m| m.backlog());
    let om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    Ok((
        [(header::CONTENT_TYPE, if om { OPENMETRICS } else { TEXT })],
        render(&live, backlog, om),
    ))
}

/// A family: name (without `_total`), type, unit (or ""), help, and its value per subject.
struct Family {
    name: &'static str,
    kind: &'static str,
    unit: &'static str,
    help: &'static str,
    value: fn(&LiveStat) -> Option<f64>,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "cpu_seconds",
        kind: "counter",
        unit: "seconds",
        help: "CPU time used since the cgroup was created.",
        value: |l| Some(l.reading.counters.cpu_usec as f64 / 1e6),
    },
    Family {
        name: "cpu_throttled_seconds",
        kind: "counter",
        unit: "seconds",
        help: "Time throttled by the CPU quota since the cgroup was created.",
        value: |l| Some(l.reading.counters.throttled_usec as f64 / 1e6),
    },
    Family {
        name: "cpu_usage_cores",
        kind: "gauge",
        unit: "",
        help: "CPU cores in use over the last sample interval.",
        value: |l| Some(l.rates.cpu_cores),
    },
    Family {
        name: "cpu_reserved_cores",
        kind: "gauge",
        unit: "",
        help: "CPU cores reserved (quota/period or cpuset size; 0 when unlimited).",
        value: |l| Some(l.cpus_reserved),
    },
    Family {
        name: "memory_bytes",
        kind: "gauge",
        unit: "bytes",
        help: "Memory in use.",
        value: |l| Some(l.reading.counters.memory_current as f64),
    },
    Family {
        name: "memory_limit_bytes",
        kind: "gauge",
        unit: "bytes",
        help: "Hard memory limit (absent when unlimited).",
        value: |l| l.memory_max.map(|m| m as f64),
    },
    Family {
        name: "io_read_bytes",
        kind: "counter",
        unit: "bytes",
        help: "Bytes read from block devices since the cgroup was created.",
        value: |l| Some(l.reading.counters.io_rbytes as f64),
    },
    Family {
        name: "io_write_bytes",
        kind: "counter",
        unit: "bytes",
        help: "Bytes written to block devices since the cgroup was created.",
        value: |l| Some(l.reading.counters.io_wbytes as f64),
    },
    Family {
        name: "pids",
        kind: "gauge",
        unit: "",
        help: "Tasks in the cgroup.",
        value: |l| Some(l.reading.counters.pids_current as f64),
    },
    Family {
        name: "oom_kills",
        kind: "counter",
        unit: "",
        help: "Processes killed by the OOM killer since the cgroup was created.",
        value: |l| Some(l.reading.counters.oom_kills as f64),
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

/// Renders the exposition, OpenMetrics when `om`.
pub fn render(live: &[LiveStat], backlog: Option<(u64, usize)>, om: bool) -> String {
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
                if let Some(v) = (f.value)(l) {
                    let _ = writeln!(out, "{sample}{{{labels}}} {}", number(v));
                }
            }
        }
    }
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
    fn renders_families_with_escaped_labels() {
        let reading = Reading {
            boot_id: "b".into(),
            mono_ns: 1,
            wall_ms: 1,
            generation: 1,
            counters: crate::metering::Counters {
                cpu_usec: 1_500_000,
                memory_current: 4096,
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
            },
            LiveStat {
                subject: "t:a".into(),
                kind: SubjectKind::Team("a".into()),
                reading,
                rates: Rates::default(),
                memory_max: Some(1 << 20),
                cpus_reserved: 0.0,
                pressure: [None; 3],
            },
        ];
        let text = render(&live, Some((0, 0)), true);
        assert!(text.contains("# TYPE corral_container_cpu_seconds counter\n"));
        assert!(text.contains("# UNIT corral_container_cpu_seconds seconds\n"));
        let classic = render(&live, None, false);
        assert!(classic.contains("# TYPE corral_container_cpu_seconds_total counter\n"));
        assert!(!classic.contains("# UNIT") && !classic.contains("# EOF"));
        assert!(
            text.contains("corral_container_cpu_seconds_total{name=\"we\\\"b\",team=\"a\"} 1.5\n")
        );
        assert!(text.contains("corral_team_memory_limit_bytes{team=\"a\"} 1048576.0\n"));
        assert!(!text.contains("corral_container_memory_limit_bytes{"));
        assert!(text.ends_with("# EOF\n"));
    }
}
