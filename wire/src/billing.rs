//! Metering, history and billing: `/api/v1/billing*`, `/api/v1/containers/{name}/history`,
//! `/api/v1/stats`.
//!
//! Times are RFC 3339 UTC strings (`2026-11-01T00:00:00Z`) in bodies and `from`/`to` query
//! parameters (which also accept `YYYY-MM-DD` and `YYYY-MM`); money is in units of the rate
//! card's currency, computed exactly in millionths and rounded there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One version of the rate card: prices per unit, in `currency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RateCard {
    /// When this version starts pricing ledger hours (an hour boundary, UTC). In a PUT it may be
    /// omitted (the next hour) and must not be in the past.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::formats::Time>))]
    pub effective_from: Option<String>,
    /// ISO 4217 code, e.g. `USD`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
    /// Per CPU-core-hour used.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000))]
    pub cpu_core_hour_used: f64,
    /// Per CPU-core-hour reserved (cpu.max quota/period, or cpuset size).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000))]
    pub cpu_core_hour_reserved: f64,
    /// Per GiB-hour of memory used (∫ memory.current dt).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000))]
    pub mem_gib_hour_used: f64,
    /// Per GiB-hour of memory reserved (memory.max × time).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000))]
    pub mem_gib_hour_reserved: f64,
    /// Per GiB read or written.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000))]
    pub io_gib: f64,
}

/// `GET /api/v1/billing/rates`: every version, oldest first; `current` is in force now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RateCards {
    pub current: RateCard,
    pub versions: Vec<RateCard>,
}

/// Metered quantities over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub cpu_core_hours: f64,
    pub throttled_seconds: f64,
    pub cpu_reserved_core_hours: f64,
    pub mem_gib_hours: f64,
    pub mem_reserved_gib_hours: f64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub io_read_ops: u64,
    pub io_write_ops: u64,
    pub oom_kills: u64,
    pub mem_peak_bytes: u64,
    pub pids_peak: u64,
}

/// Cost per priced quantity, in the report's currency.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Cost {
    pub cpu_used: f64,
    pub cpu_reserved: f64,
    pub mem_used: f64,
    pub mem_reserved: f64,
    pub io: f64,
    pub total: f64,
}

/// A line of a report: a container (with the team and labels it had), a team, a label
/// (`name` is `key=value`) or the total.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BillingLine {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub team: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub usage: Usage,
    pub cost: Cost,
}

/// `GET /api/v1/billing?team=&container=&label=k=v&from=&to=`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BillingReport {
    pub from: String,
    pub to: String,
    pub currency: String,
    /// Whether a saved rate card was in force during some of the period. `false`: no admin has
    /// set prices for it, so every cost is 0 (`PUT /api/v1/billing/rates` sets them, from the
    /// next hour on).
    #[serde(default)]
    pub rates_set: bool,
    pub containers: Vec<BillingLine>,
    pub teams: Vec<BillingLine>,
    pub labels: Vec<BillingLine>,
    pub total: BillingLine,
}

/// The host's CPU time against the containers' over a statement's month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Reconciliation {
    /// Busy CPU time of the whole host (`/proc/stat`).
    pub host_cpu_seconds: f64,
    /// CPU time of every container, all teams.
    pub containers_cpu_seconds: f64,
    /// The rest: host − containers (the kernel, system daemons, Corral itself).
    pub idle_cpu_seconds: f64,
    /// Containers + idle = host, and the containers never exceed the host by more than 1 %.
    pub reconciled: bool,
}

/// `GET /api/v1/billing/statements/{team}/{month}` (`?format=csv` for CSV).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Statement {
    pub team: String,
    /// `YYYY-MM`.
    pub month: String,
    pub report: BillingReport,
    pub host: Reconciliation,
}

/// One point of a container's history: usage within `[ts, ts + step)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HistoryPoint {
    /// Bucket start, Unix ms.
    pub ts: i64,
    /// Average cores used over the sampled part of the bucket.
    pub cpu_cores: f64,
    pub cpu_seconds: f64,
    pub throttled_seconds: f64,
    pub mem_avg_bytes: u64,
    pub mem_peak_bytes: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub pids_peak: u64,
    /// Pressure stall information, `some avg10` in percent, averaged over the bucket's samples
    /// for CPU, memory and IO; absent where the kernel reported no pressure (cgroup v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pressure: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_pressure: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_pressure: Option<f64>,
    /// The highest `some avg10` seen in the bucket, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pressure_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_pressure_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_pressure_max: Option<f64>,
}

/// `GET /api/v1/containers/{name}/history?range=1h&step=1m`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct History {
    pub name: String,
    /// `raw`, `1m` or `1h`: the tier the points were read from.
    pub tier: String,
    pub step_secs: u64,
    pub points: Vec<HistoryPoint>,
}

/// One line of `corral stats` / `GET /api/v1/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LiveStat {
    /// `container` or `team`.
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    pub team: String,
    /// Cores in use (1.0 = one full core).
    pub cpu_cores: f64,
    /// Cores reserved (0 = no quota).
    pub cpus_reserved: f64,
    pub cpu_seconds_total: f64,
    pub mem_bytes: u64,
    /// memory.max, when limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit_bytes: Option<u64>,
    pub io_read_bytes_per_sec: f64,
    pub io_write_bytes_per_sec: f64,
    pub io_read_bytes_total: u64,
    pub io_write_bytes_total: u64,
    pub pids: u64,
    pub oom_kills: u64,
    /// Pressure stall information, `some avg10` (percent of the last 10 s in which some task
    /// waited) for CPU, memory and IO; absent where the kernel does not report it (cgroup2
    /// `*.pressure`, also on hybrid hosts). Also recorded in the history ([`HistoryPoint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pressure: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_pressure: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_pressure: Option<f64>,
    /// When the sample was taken, Unix ms.
    pub ts: i64,
}

/// `GET /api/v1/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LiveStats {
    /// Seconds between samples.
    pub interval_secs: f64,
    pub stats: Vec<LiveStat>,
}
