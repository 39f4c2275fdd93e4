//! The fleet (issue 19): `/api/v1/fleet/*` of a hub (`corral serve --hub`), read from the
//! shared ledger on PostgreSQL, and the ledger's state on every host.

use serde::{Deserialize, Serialize};

use crate::billing::BillingLine;

/// A host of the fleet as its heartbeats report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FleetHost {
    pub host_id: String,
    /// The host's API, as it advertises it (`--advertise-url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    pub version: String,
    pub registered_at: String,
    pub heartbeat_at: String,
    /// Seconds since the last heartbeat, by PostgreSQL's clock.
    pub heartbeat_age_s: f64,
    /// No heartbeat for longer than `stale_after_s`: the host is down or cut off; its usage up
    /// to its last shipped hour still counts.
    pub stale: bool,
    pub shipped_rows: u64,
    /// Ledger rows waiting on the host to be shipped, and the oldest hour among them.
    pub backlog_rows: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_oldest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ship_at: Option<String>,
    /// Containers with usage shipped for the last hour.
    pub containers: u64,
    pub cpu_core_hours_24h: f64,
}

/// `GET /api/v1/fleet/hosts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FleetHosts {
    pub stale_after_s: u64,
    pub hosts: Vec<FleetHost>,
}

/// One host's (or one host's team's) priced usage, with the exact integers it adds up from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FleetLine {
    pub host: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub team: String,
    /// CPU time, µs, and cost, millionths of the currency: exact, for reconciliation.
    pub cpu_usec: i64,
    pub cost_micros: i64,
    pub line: BillingLine,
}

/// `GET /api/v1/fleet/statement?from=&to=&team=&host=`: usage across hosts priced with the
/// fleet's rate card, each host's lines rounded as its own bill rounds them, so a team's
/// fleet total is the sum of its hosts' totals to the microsecond.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FleetStatement {
    pub from: String,
    pub to: String,
    pub currency: String,
    pub rates_set: bool,
    /// Per host.
    pub hosts: Vec<FleetLine>,
    /// Per host and team.
    pub host_teams: Vec<FleetLine>,
    /// Per team across hosts (`host` empty).
    pub teams: Vec<FleetLine>,
    pub total: FleetLine,
}

/// One hour of [`FleetHistory`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FleetPoint {
    pub t: String,
    pub cpu_core_hours: f64,
    pub mem_gib_hours: f64,
}

/// A host's or a team's hourly series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FleetSeries {
    pub key: String,
    pub points: Vec<FleetPoint>,
}

/// `GET /api/v1/fleet/history?from=&to=&team=&by=host|team`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FleetHistory {
    pub from: String,
    pub to: String,
    pub by: String,
    pub series: Vec<FleetSeries>,
}

/// This host's shipping to the shared ledger (`GET /api/v1/host`, `corral info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LedgerState {
    /// `user@host:port/db`.
    pub target: String,
    pub hub: bool,
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<String>,
    pub backlog_rows: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_oldest: Option<String>,
    /// The backlog's oldest hour is more than 6 hours old.
    pub alarm: bool,
    pub shipped_rows: u64,
}
