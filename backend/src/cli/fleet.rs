//! `corral fleet hosts|statement|history` against a hub (`corral serve --hub`):
//! `GET /api/v1/fleet/hosts`, `/fleet/statement`, `/fleet/history`.

use clap::{Args, Subcommand};
use hyper::Method;

use super::containers::{enc, send};
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

fn query(pairs: &[(&str, &Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Columns padded to their widest cell; the last unpadded.
fn table(titles: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = titles.iter().map(|t| t.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&titles.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

pub async fn fleet(client: &Client, a: &FleetArgs) -> anyhow::Result<()> {
    match &a.cmd {
        FleetCmd::Hosts => {
            let h: wire::fleet::FleetHosts =
                send(client, Method::GET, "/api/v1/fleet/hosts", None).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&h)?);
                return Ok(());
            }
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
            print!(
                "{}",
                table(
                    &[
                        "HOST",
                        "STATE",
                        "HEARTBEAT",
                        "CONTAINERS",
                        "CPU-H 24H",
                        "BACKLOG",
                        "LAST SHIPPED",
                        "API"
                    ],
                    &rows
                )
            );
        }
        FleetCmd::Statement(r) => {
            let path = format!(
                "/api/v1/fleet/statement{}",
                query(&[
                    ("team", &r.team),
                    ("host", &r.host_id),
                    ("from", &r.from),
                    ("to", &r.to)
                ])
            );
            let s: wire::fleet::FleetStatement = send(client, Method::GET, &path, None).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            println!("Fleet statement {} – {} ({})", s.from, s.to, s.currency);
            let money = |m: i64| format!("{:.6}", m as f64 / 1e6);
            let mut rows: Vec<Vec<String>> = s
                .host_teams
                .iter()
                .map(|l| {
                    vec![
                        l.host.clone(),
                        l.team.clone(),
                        format!("{:.6}", l.cpu_usec as f64 / 3.6e9),
                        format!("{:.6}", l.line.usage.mem_gib_hours),
                        money(l.cost_micros),
                    ]
                })
                .collect();
            for t in &s.teams {
                rows.push(vec![
                    "(all hosts)".into(),
                    t.team.clone(),
                    format!("{:.6}", t.cpu_usec as f64 / 3.6e9),
                    format!("{:.6}", t.line.usage.mem_gib_hours),
                    money(t.cost_micros),
                ]);
            }
            rows.push(vec![
                "TOTAL".into(),
                String::new(),
                format!("{:.6}", s.total.cpu_usec as f64 / 3.6e9),
                format!("{:.6}", s.total.line.usage.mem_gib_hours),
                money(s.total.cost_micros),
            ]);
            print!(
                "{}",
                table(&["HOST", "TEAM", "CPU CORE-H", "MEM GIB-H", "COST"], &rows)
            );
            if !s.rates_set {
                println!("(no rate card set: every cost is 0; corral rates set …)");
            }
        }
        FleetCmd::History(h) => {
            let path = format!(
                "/api/v1/fleet/history{}",
                query(&[
                    ("team", &h.team),
                    ("by", &h.by),
                    ("from", &h.from),
                    ("to", &h.to)
                ])
            );
            let s: wire::fleet::FleetHistory = send(client, Method::GET, &path, None).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
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
            print!(
                "{}",
                table(
                    &["HOUR", &s.by.to_uppercase(), "CPU CORE-H", "MEM GIB-H"],
                    &rows
                )
            );
        }
    }
    Ok(())
}
