//! Reading the shared ledger: hosts and their heartbeats, and usage priced with the fleet's
//! rate card per host — the hub's statements and the fleet part of every host's budgets.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::pg::{GRAINS, NOW_MS, PgError};
use crate::metering::{
    billing::{Pricer, Quantities, RateCard, Report, card_spans},
    calendar,
};

/// A host as the hub lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub host_id: String,
    pub api_url: Option<String>,
    pub version: String,
    pub registered_ms: i64,
    pub heartbeat_ms: i64,
    /// ms since the heartbeat, by PostgreSQL's clock.
    pub age_ms: i64,
    pub shipped_rows: i64,
    pub backlog_rows: i64,
    pub backlog_oldest: Option<i64>,
    pub last_ship_ms: Option<i64>,
    /// Containers with usage in the last hour shipped.
    pub containers: i64,
    /// CPU µs of the last 24 hours shipped.
    pub cpu_usec_24h: i64,
}

/// Every host that ever shipped, by id.
pub async fn hosts(client: &Client) -> Result<Vec<Host>, PgError> {
    let hour = calendar::hour_start(crate::auth::now_secs());
    let rows = client
        .query(
            &format!(
                "SELECT h.host_id, h.api_url, h.version, h.registered_ms, h.heartbeat_ms,
                   {NOW_MS} - h.heartbeat_ms, h.shipped_rows, h.backlog_rows, h.backlog_oldest,
                   h.last_ship_ms,
                   (SELECT count(DISTINCT container_id) FROM corral_usage_hour u
                     WHERE u.host_id = h.host_id AND u.period >= $1),
                   (SELECT coalesce(sum(cpu_usec), 0)::bigint FROM corral_usage_hour u
                     WHERE u.host_id = h.host_id AND u.period >= $2)
                 FROM corral_hosts h ORDER BY h.host_id"
            ),
            &[&(hour - 3600), &(hour - 23 * 3600)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Host {
            host_id: r.get(0),
            api_url: r.get(1),
            version: r.get(2),
            registered_ms: r.get(3),
            heartbeat_ms: r.get(4),
            age_ms: r.get(5),
            shipped_rows: r.get(6),
            backlog_rows: r.get(7),
            backlog_oldest: r.get(8),
            last_ship_ms: r.get(9),
            containers: r.get(10),
            cpu_usec_24h: r.get(11),
        })
        .collect())
}

/// The API a host advertises: `None` when no such host ever shipped, `Some(None)` when it
/// advertises none (`--advertise-url`).
pub async fn host_url(client: &Client, host_id: &str) -> Result<Option<Option<String>>, PgError> {
    let row = client
        .query_opt(
            "SELECT api_url FROM corral_hosts WHERE host_id = $1",
            &[&host_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Which rows [`priced`] covers.
#[derive(Debug, Clone, Default)]
pub struct Scope<'a> {
    pub team: Option<&'a str>,
    pub host: Option<&'a str>,
    /// Every host but this one (a host adding the fleet to its own usage).
    pub except_host: Option<&'a str>,
    /// Only these teams (the caller's, unless an admin); `None`: every team.
    pub teams: Option<&'a [String]>,
}

/// The usage of `[from, to)` (whole hours) per host, priced with `cards` exactly as each
/// host's own bill prices it (one rounding per container line), so per team the fleet total
/// equals the sum of the hosts' totals to the microsecond.
pub async fn priced(
    client: &Client,
    cards: &[RateCard],
    from: i64,
    to: i64,
    scope: &Scope<'_>,
) -> Result<BTreeMap<String, Report>, PgError> {
    let base = Report::priced_by(cards, from, to);
    let mut pricers: BTreeMap<String, Pricer> = BTreeMap::new();
    // Each rate card's span read as whole months, then days, then hours at its ends.
    let pieces = card_spans(cards, base.from, base.to).flat_map(|(card, lo, hi)| {
        calendar::decompose_in(&GRAINS.map(|(g, ..)| g), lo, hi)
            .into_iter()
            .map(move |(grain, lo, hi)| (card, grain, lo, hi))
    });
    for (card, grain, lo, hi) in pieces {
        let table = GRAINS
            .iter()
            .find(|(g, ..)| *g == grain)
            .map_or("corral_usage_hour", |(_, t, _)| t);
        let rows = client
            .query(
                &format!(
                    "SELECT host_id, container_id, team, labels, max(name),
                   sum(cpu_usec)::bigint, sum(throttled_usec)::bigint,
                   sum(cpu_reserved_core_usec)::bigint, sum(mem_byte_s)::bigint,
                   sum(mem_reserved_byte_s)::bigint, sum(io_rbytes)::bigint,
                   sum(io_wbytes)::bigint, sum(io_rios)::bigint, sum(io_wios)::bigint,
                   sum(oom_kills)::bigint, max(mem_peak), max(pids_peak)
                 FROM {table}
                 WHERE period >= $1 AND period < $2
                   AND ($3::text IS NULL OR team = $3)
                   AND ($4::text IS NULL OR host_id = $4)
                   AND ($5::text IS NULL OR host_id <> $5)
                   AND ($6::text[] IS NULL OR team = ANY($6))
                 GROUP BY host_id, container_id, team, labels"
                ),
                &[
                    &lo,
                    &hi,
                    &scope.team,
                    &scope.host,
                    &scope.except_host,
                    &scope.teams,
                ],
            )
            .await?;
        for r in &rows {
            let q = Quantities {
                cpu_usec: r.get(5),
                throttled_usec: r.get(6),
                cpu_reserved_core_usec: r.get(7),
                mem_byte_s: r.get(8),
                mem_reserved_byte_s: r.get(9),
                io_rbytes: r.get(10),
                io_wbytes: r.get(11),
                io_rios: r.get(12),
                io_wios: r.get(13),
                oom_kills: r.get(14),
                mem_peak: r.get(15),
                pids_peak: r.get(16),
            };
            let host: &str = r.get(0);
            let p = match pricers.get_mut(host) {
                Some(p) => p,
                None => pricers.entry(host.to_owned()).or_default(),
            };
            p.add(r.get(1), r.get(2), r.get(3), r.get(4), &q, card);
        }
    }
    Ok(pricers
        .into_iter()
        .map(|(host, p)| (host, p.finish(base.clone(), None)))
        .collect())
}

/// Hourly CPU and memory per host (or per team with `by_team`) over `[from, to)`.
pub async fn history(
    client: &Client,
    from: i64,
    to: i64,
    team: Option<&str>,
    by_team: bool,
) -> Result<Vec<(i64, String, i64, i64)>, PgError> {
    let key = if by_team { "team" } else { "host_id" };
    let rows = client
        .query(
            &format!(
                "SELECT period, {key}, sum(cpu_usec)::bigint, sum(mem_byte_s)::bigint
                 FROM corral_usage_hour
                 WHERE period >= $1 AND period < $2 AND ($3::text IS NULL OR team = $3)
                 GROUP BY period, {key} ORDER BY period, {key}"
            ),
            &[&from, &to, &team],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}
