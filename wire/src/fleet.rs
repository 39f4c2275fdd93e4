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
    /// The hub holds an API token of this host: its containers can be listed and acted on
    /// through the hub (`/fleet/hosts/{host}/containers`).
    #[serde(default)]
    pub token_set: bool,
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

/// `PUT /api/v1/fleet/hosts/{host}/token`: an API token of an admin of that host (made there
/// with `corral token create`), which the hub uses to forward container actions. The hub
/// checks it against the host before keeping it and never shows it again.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HostToken {
    /// 1-512 printable ASCII characters without spaces.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[!-~]{1,512}$"))]
    pub token: String,
}

impl std::fmt::Debug for HostToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostToken { token: \"…\" }")
    }
}

/// The hub's token for a host, as the host answered for it when it was set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HostTokenState {
    pub host_id: String,
    /// The host's API the token was checked against; the hub forwards only there (a host
    /// advertising another URL later needs the token set again).
    pub api_url: String,
    /// The host's account the token belongs to (an admin there).
    pub user: String,
    /// Who set it on the hub, and when.
    pub set_by: String,
    pub set_at: String,
}

/// `POST /api/v1/fleet/hosts/{host}/containers/{name}/{action}`: optional; `timeout` for
/// stop and restart, `signal` for kill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FleetAction {
    /// Seconds between SIGTERM and SIGKILL (stop, restart); through a hub 0-15 (its answer
    /// must come in time); the container's own when absent.
    #[serde(
        default,
        deserialize_with = "crate::containers::whole::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 15))]
    pub timeout: Option<u64>,
    /// A signal name (`TERM`, `SIGKILL`) or number (kill); default `KILL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9+-]{1,16}$"))]
    pub signal: Option<String>,
}
