//! Wire types of APIs that are not in the `wire` crate on this branch yet (containers from the
//! runtime branch, billing/history/stats from the metering branch). Field for field the same
//! JSON; decoding tolerates extra fields so a newer daemon does not break the page.
//! Once `wire::containers` and `wire::billing` are on main, these become `pub use` lines.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Resource limits; absent means unlimited (create) or unchanged (update).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_high: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
}

/// `POST /api/v1/containers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateContainer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(default)]
    pub start: bool,
}

/// A container as the API shows it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub team: String,
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    /// `created`, `running`, `paused`, `exited`.
    pub status: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub pid: Option<i32>,
    pub created_at: i64,
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default)]
    pub limits: Limits,
}

/// `POST /api/v1/containers/{name}/exec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExecRequest {
    pub command: Vec<String>,
}

/// The answer of an exec.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Image {
    pub id: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub size: u64,
}

/// One version of the rate card.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateCard {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_from: Option<String>,
    pub currency: String,
    pub cpu_core_hour_used: f64,
    pub cpu_core_hour_reserved: f64,
    pub mem_gib_hour_used: f64,
    pub mem_gib_hour_reserved: f64,
    pub io_gib: f64,
}

/// `GET /api/v1/billing/rates`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RateCards {
    pub current: RateCard,
    #[serde(default)]
    pub versions: Vec<RateCard>,
}

/// Metered quantities over a period.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub cpu_core_hours: f64,
    pub throttled_seconds: f64,
    pub cpu_reserved_core_hours: f64,
    pub mem_gib_hours: f64,
    pub mem_reserved_gib_hours: f64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub oom_kills: u64,
    pub mem_peak_bytes: u64,
    pub pids_peak: u64,
}

/// Cost per priced quantity.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Cost {
    pub cpu_used: f64,
    pub cpu_reserved: f64,
    pub mem_used: f64,
    pub mem_reserved: f64,
    pub io: f64,
    pub total: f64,
}

/// A line of a report.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BillingLine {
    pub container_id: String,
    pub name: String,
    pub team: String,
    pub labels: BTreeMap<String, String>,
    pub usage: Usage,
    pub cost: Cost,
}

/// `GET /api/v1/billing?team=&from=&to=`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BillingReport {
    pub from: String,
    pub to: String,
    pub currency: String,
    pub containers: Vec<BillingLine>,
    pub teams: Vec<BillingLine>,
    pub total: BillingLine,
}

/// One point of a container's history.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct HistoryPoint {
    pub ts: i64,
    pub cpu_cores: f64,
    pub cpu_seconds: f64,
    pub throttled_seconds: f64,
    pub mem_avg_bytes: u64,
    pub mem_peak_bytes: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub pids_peak: u64,
}

/// `GET /api/v1/containers/{name}/history?range=1h`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct History {
    pub name: String,
    pub tier: String,
    pub step_secs: u64,
    pub points: Vec<HistoryPoint>,
}

/// One line of `GET /api/v1/stats`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LiveStat {
    /// `container` or `team`.
    pub kind: String,
    pub name: String,
    pub container_id: String,
    pub team: String,
    pub cpu_cores: f64,
    pub cpus_reserved: f64,
    pub cpu_seconds_total: f64,
    pub mem_bytes: u64,
    pub mem_limit_bytes: Option<u64>,
    pub io_read_bytes_per_sec: f64,
    pub io_write_bytes_per_sec: f64,
    pub pids: u64,
    pub ts: i64,
}

/// `GET /api/v1/stats`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LiveStats {
    pub interval_secs: f64,
    pub stats: Vec<LiveStat>,
}
