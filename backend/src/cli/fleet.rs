//! `corral fleet hosts|statement|history` against a hub (`corral serve --hub`):
//! `GET /api/v1/fleet/hosts`, `/fleet/statement`, `/fleet/history`.

use clap::{Args, Subcommand};
use hyper::Method;

use super::{containers::send, table, with_query};
use crate::client::Client;

#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub cmd: FleetCmd,
    /// Print the hub's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FleetCmd {
    /// Every host: heartbeat (stale after 60 s), backlog waiting to ship, recent usage.
    Hosts,
    /// Usage across hosts priced with the fleet's rate card: per host and team, per team,
    /// total (default: this month so far).
    Statement(RangeArgs),
    /// Hourly CPU and memory per host (or per team with --by team).
    History(HistoryArgs),
}

#[derive(Debug, Args)]
pub struct RangeArgs {
    /// Only this team.
    #[arg(long)]
    pub team: Option<String>,
    /// Only this host (its `--host-id`; `--host` names the daemon to ask).
    #[arg(long = "host-id", value_name = "ID")]
    pub host_id: Option<String>,
    /// Start: YYYY-MM-DD, YYYY-MM, YYYY-MM-DDTHH:MMZ or Unix seconds (default: this month).
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive (default: now).
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this team.
    #[arg(long)]
    pub team: Option<String>,
    /// One series per `host` (default) or per `team`.
    #[arg(long, value_parser = ["host", "team"])]
    pub by: Option<String>,
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Option<String>,
}

/// GETs `path`; with `--json` prints the hub's answer and returns `None`.
async fn get<T: serde::de::DeserializeOwned + serde::Serialize>(
    client: &Client,
    path: &str,
    json: bool,
) -> anyhow::Result<Option<T>> {
    let v: T = send(client, Method::GET, path, None).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(None);
    }
    Ok(Some(v))
}

/// A statement row: host, team, CPU core-hours, memory GiB-hours, cost (exact integers in).
fn statement_row(host: &str, team: &str, l: &wire::fleet::FleetLine) -> Vec<String> {
    vec![
        host.to_owned(),
        team.to_owned(),
        format!("{:.6}", l.cpu_usec as f64 / 3.6e9),
        format!("{:.6}", l.line.usage.mem_gib_hours),
        format!("{:.6}", l.cost_micros as f64 / 1e6),
    ]
}

pub async fn fleet(client: &Client, a: &FleetArgs) -> anyhow::Result<()> {
    match &a.cmd {
        FleetCmd::Hosts => {
            let Some(h) =
                get::<wire::fleet::FleetHosts>(client, "/api/v1/fleet/hosts", a.json).await?
            else {
                return Ok(());
            };
            let rows: Vec<Vec<String>> = h
                .hosts
                .iter()
                .map(|h| {
                    vec![
                        h.host_id.clone(),
                        if h.stale { "stale" } else { "up" }.to_owned(),
                        format!("{:.0}s ago", h.heartbeat_age_s),
                        h.containers.to_string(),
                        format!("{:.3}", h.cpu_core_hours_24h),
                        h.backlog_rows.to_string(),
                        h.last_ship_at.clone().unwrap_or_else(|| "-".into()),
                        h.api_url.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            let titles = [
                "HOST",
                "STATE",
                "HEARTBEAT",
                "CONTAINERS",
                "CPU-H 24H",
                "BACKLOG",
                "LAST SHIPPED",
                "API",
            ];
            print!("{}", table(&titles, &rows));
        }
        FleetCmd::Statement(r) => {
            let path = with_query(
                "/api/v1/fleet/statement",
                &[
                    ("team", &r.team),
                    ("host", &r.host_id),
                    ("from", &r.from),
                    ("to", &r.to),
                ],
            );
            let Some(s) = get::<wire::fleet::FleetStatement>(client, &path, a.json).await? else {
                return Ok(());
            };
            println!("Fleet statement {} – {} ({})", s.from, s.to, s.currency);
            let rows: Vec<Vec<String>> = s
                .host_teams
                .iter()
                .map(|l| statement_row(&l.host, &l.team, l))
                .chain(
                    s.teams
                        .iter()
                        .map(|l| statement_row("(all hosts)", &l.team, l)),
                )
                .chain([statement_row("TOTAL", "", &s.total)])
                .collect();
            print!(
                "{}",
                table(&["HOST", "TEAM", "CPU CORE-H", "MEM GIB-H", "COST"], &rows)
            );
            if !s.rates_set {
                println!("(no rate card set: every cost is 0; corral rates set …)");
            }
        }
        FleetCmd::History(h) => {
            let path = with_query(
                "/api/v1/fleet/history",
                &[
                    ("team", &h.team),
                    ("by", &h.by),
                    ("from", &h.from),
                    ("to", &h.to),
                ],
            );
            let Some(s) = get::<wire::fleet::FleetHistory>(client, &path, a.json).await? else {
                return Ok(());
            };
            let rows: Vec<Vec<String>> = s
                .series
                .iter()
                .flat_map(|se| {
                    se.points.iter().map(|p| {
                        vec![
                            p.t.clone(),
                            se.key.clone(),
                            format!("{:.6}", p.cpu_core_hours),
                            format!("{:.6}", p.mem_gib_hours),
                        ]
                    })
                })
                .collect();
            let by = s.by.to_uppercase();
            print!(
                "{}",
                table(&["HOUR", &by, "CPU CORE-H", "MEM GIB-H"], &rows)
            );
        }
    }
    Ok(())
}
