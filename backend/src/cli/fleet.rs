//! `corral fleet hosts|statement|history` against a hub (`corral serve --hub`):
//! `GET /api/v1/fleet/hosts`, `/fleet/statement`, `/fleet/history`; and a host's containers
//! through the hub: `corral fleet token set|rm HOST`, `corral fleet ps HOST`,
//! `corral fleet start|stop|restart|kill|freeze|thaw|pause|unpause|rm HOST NAME`
//! (`/fleet/hosts/{host}/…`).

use clap::{Args, Subcommand};
use hyper::Method;

use anyhow::Context;

use super::{
    containers::{enc, send},
    table, with_query,
};
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
    /// Every host: heartbeat (stale after 60 s), containers metered in the last hour, backlog
    /// waiting to ship, recent usage, its API and whether the hub holds a token for it.
    Hosts,
    /// Usage across hosts priced with the fleet's rate card: per host and team, per team,
    /// total (default: this month so far).
    Statement(RangeArgs),
    /// Hourly CPU and memory per host (or per team with --by team).
    History(HistoryArgs),
    /// The hub's API token for a host (an admin's token made there with `corral token
    /// create`), which it uses to act on the host's containers.
    #[command(subcommand)]
    Token(TokenCmd),
    /// A host's containers (of your teams), read through the hub; the flags are `corral ps`'s.
    Ps {
        /// The host's id.
        #[arg(id = "host_id", value_name = "HOST")]
        host: String,
        #[command(flatten)]
        ps: super::ps::PsArgs,
    },
    /// Start a host's container through the hub.
    Start(OnHost),
    /// Stop one: SIGTERM, then SIGKILL after the timeout (through a hub at most 15 s).
    Stop(OnHostTimeout),
    /// Restart one (stop, then start).
    Restart(OnHostTimeout),
    /// Send a signal to one's init (default KILL).
    Kill(OnHostSignal),
    /// Freeze every process of one (`pause` is an alias).
    #[command(alias = "pause")]
    Freeze(OnHost),
    /// Thaw a frozen one (`unpause` is an alias).
    #[command(alias = "unpause")]
    Thaw(OnHost),
    /// Remove one (`--force` kills it first if running).
    Rm(OnHostForce),
    /// The last lines of one's stdout and stderr (not followed: `corral logs -f` on the host).
    Logs(OnHostLogs),
}

#[derive(Debug, Args)]
pub struct OnHostLogs {
    #[command(flatten)]
    pub on: OnHost,
    /// The last N lines: 1-10000 through a hub.
    #[arg(short = 'n', long, default_value_t = 200)]
    pub tail: u32,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Give the hub a token of an admin of HOST: read from --token-file, else from stdin
    /// (prompted without echo on a terminal). The hub checks it with the host first.
    Set {
        #[arg(id = "host_id", value_name = "HOST")]
        host: String,
        /// A file holding the token (`-`: stdin).
        #[arg(long, value_name = "FILE")]
        token_file: Option<std::path::PathBuf>,
    },
    /// Forget the hub's token for HOST.
    #[command(alias = "remove")]
    Rm {
        #[arg(id = "host_id", value_name = "HOST")]
        host: String,
    },
}

#[derive(Debug, Args)]
pub struct OnHost {
    /// The host's id (not the global `--host`, which names the hub to ask).
    #[arg(id = "host_id", value_name = "HOST")]
    pub host: String,
    /// The container's name or id on that host.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct OnHostTimeout {
    #[command(flatten)]
    pub on: OnHost,
    /// Seconds between SIGTERM and SIGKILL (default: the container's own).
    #[arg(short = 't', long)]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct OnHostSignal {
    #[command(flatten)]
    pub on: OnHost,
    /// A signal name (TERM, SIGHUP) or number.
    #[arg(short = 's', long)]
    pub signal: Option<String>,
}

#[derive(Debug, Args)]
pub struct OnHostForce {
    #[command(flatten)]
    pub on: OnHost,
    /// Kill it first if it runs.
    #[arg(short, long)]
    pub force: bool,
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

/// The token for `corral fleet token set`: the file's first line, or stdin's.
fn read_token(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let token = match file {
        Some(f) if f != std::path::Path::new("-") => std::fs::read_to_string(f)
            .with_context(|| format!("read the token from {}", f.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        _ if std::io::stdin().is_terminal() => super::users::prompt_hidden("Host token: ")?,
        _ => super::users::read_line()?,
    };
    Ok(token.trim().to_owned())
}

/// `POST /fleet/hosts/{host}/containers/{name}/{action}`; prints the container's new state.
async fn act(
    client: &Client,
    on: &OnHost,
    action: &str,
    body: Option<serde_json::Value>,
    json: bool,
) -> anyhow::Result<()> {
    let path = format!(
        "/api/v1/fleet/hosts/{}/containers/{}/{action}",
        enc(&on.host),
        enc(&on.name)
    );
    let c: wire::Container = send(client, Method::POST, &path, body).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        println!("{}/{}: {}", on.host, c.name, c.status);
    }
    Ok(())
}

pub async fn fleet(client: &Client, a: &FleetArgs) -> anyhow::Result<()> {
    match &a.cmd {
        FleetCmd::Token(TokenCmd::Set { host, token_file }) => {
            let token = read_token(token_file.as_deref())?;
            let path = format!("/api/v1/fleet/hosts/{}/token", enc(host));
            let body = serde_json::json!({ "token": token });
            let s: wire::fleet::HostTokenState =
                send(client, Method::PUT, &path, Some(body)).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "the hub acts on {} at {} as {} (set by {} at {})",
                    s.host_id, s.api_url, s.user, s.set_by, s.set_at
                );
            }
        }
        FleetCmd::Token(TokenCmd::Rm { host }) => {
            let path = format!("/api/v1/fleet/hosts/{}/token", enc(host));
            send::<serde_json::Value>(client, Method::DELETE, &path, None).await?;
            println!("the hub forgot its token for {host}");
        }
        FleetCmd::Ps { host, ps } => {
            let view = super::ps::View::new(ps)?;
            let mut path = format!("/api/v1/fleet/hosts/{}/containers", enc(host));
            if view.all() {
                path.push_str("?all=true");
            }
            let list: Vec<wire::Container> = send(client, Method::GET, &path, None).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", view.render(&list, crate::auth::now_secs())?);
            }
        }
        FleetCmd::Logs(l) => {
            let path = format!(
                "/api/v1/fleet/hosts/{}/containers/{}/logs?tail={}",
                enc(&l.on.host),
                enc(&l.on.name),
                l.tail
            );
            super::containers::print_stream(client, &path).await?;
        }
        FleetCmd::Start(on) => act(client, on, "start", None, a.json).await?,
        FleetCmd::Freeze(on) => act(client, on, "freeze", None, a.json).await?,
        FleetCmd::Thaw(on) => act(client, on, "thaw", None, a.json).await?,
        FleetCmd::Stop(t) | FleetCmd::Restart(t) => {
            let action = if matches!(a.cmd, FleetCmd::Stop(_)) {
                "stop"
            } else {
                "restart"
            };
            let body = t.timeout.map(|t| serde_json::json!({ "timeout": t }));
            act(client, &t.on, action, body, a.json).await?
        }
        FleetCmd::Kill(k) => {
            let body = k
                .signal
                .as_ref()
                .map(|s| serde_json::json!({ "signal": s }));
            act(client, &k.on, "kill", body, a.json).await?
        }
        FleetCmd::Rm(r) => {
            let force = if r.force { "?force=true" } else { "" };
            let path = format!(
                "/api/v1/fleet/hosts/{}/containers/{}{force}",
                enc(&r.on.host),
                enc(&r.on.name)
            );
            send::<serde_json::Value>(client, Method::DELETE, &path, None).await?;
            println!("{}/{}: removed", r.on.host, r.on.name);
        }
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
                        if h.token_set { "set" } else { "-" }.to_owned(),
                    ]
                })
                .collect();
            let titles = [
                "HOST",
                "STATE",
                "HEARTBEAT",
                "METERED 1H",
                "CPU-H 24H",
                "BACKLOG",
                "LAST SHIPPED",
                "API",
                "TOKEN",
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
