//! The API types the pages use. Containers come from `wire`; billing, history and stats are
//! mirrored here from the metering branch's `wire::billing` until it is merged (field for field
//! the same JSON; decoding tolerates extra fields), then they become `pub use` lines too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use wire::{Container, CreateContainer, ExecRequest, ExecResult, Image, Limits};

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
