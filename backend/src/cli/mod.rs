//! The command line: `corral serve` runs the daemon; every other subcommand is a client of a
//! running daemon, chosen by `--host` or `CORRAL_HOST` like `DOCKER_HOST`.
//!
//! Each area keeps its subcommands in its own file here (`containers.rs`, `users.rs`, ...); this
//! file holds the `Command` enum and the dispatch. The CLI is the one place besides `main.rs`
//! where `anyhow` is used: it only prints errors.

mod billing;
mod checkpoint;
mod containers;
mod events;
mod fleet;
mod history;
mod network;
mod prometheus;
mod ps;
mod rates;
mod recommend;
mod registry;
mod teams;
mod term;
mod timeline;
mod top;
mod users;

use std::{net::SocketAddr, path::PathBuf};

mod info;
mod limits;

use clap::{Args, Parser, Subcommand};

use crate::{
    client::{Client, ClientError, Host},
    config::{self, Config},
};

#[derive(Debug, Parser)]
#[command(name = "corral", version = crate::VERSION, about = "Run, limit and meter containers on this host")]
pub struct Cli {
    /// The daemon to talk to: unix:///path/to.sock, http://127.0.0.1:7700 or https://HOST:PORT.
    #[arg(long, global = true, env = "CORRAL_HOST", default_value = concat!("unix://", "/run/corral/corral.sock"))]
    pub host: String,
    /// API token, needed over TCP.
    #[arg(long, global = true, env = "CORRAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// For an https:// host: the daemon's certificate, or the CA that signed it (PEM).
    #[arg(long, global = true, env = "CORRAL_TLS_CA", value_name = "FILE.pem")]
    pub tls_ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (as root).
    Serve(Box<ServeArgs>),
    /// Show the client's and the daemon's versions.
    Version,
    /// Usage and cost per container, team and label over a period.
    Bill(billing::BillArgs),
    /// Live CPU, memory, IO and pids of every container (like `docker stats`).
    Stats(billing::StatsArgs),
    /// A container's (or a team pool's) usage over time: CPU, memory, IO, pids, pressure.
    History(history::HistoryArgs),
    /// Follow container lifecycle and budget events as they happen, until Ctrl-C.
    Events(events::EventsArgs),
    /// A container's recorded changes, oldest first: who, when, what, limits old → new (the
    /// ids `update --undo --to` takes).
    Timeline(timeline::TimelineArgs),
    /// The processes of a running container with their host PIDs (`ps -ef`'s columns, like
    /// `docker top`).
    Top(top::TopArgs),
    /// The container networks: the bridge, its subnet and NAT, addresses and published ports.
    Network(network::NetworkArgs),
    /// The rate card billing prices usage with: in force now, with its effective date, and
    /// every version; `rates set` adds one (admins).
    Rates(rates::RatesArgs),
    /// The fleet, from a hub (`corral serve --hub`): hosts, statements and history across
    /// hosts, and a host's containers acted on through the hub.
    Fleet(fleet::FleetArgs),
    /// Show the host's cgroup mode and what Corral can limit on it (--cgroups: the tree).
    Info(info::InfoArgs),
    /// Show who the daemon takes you for: name, role, teams, and how (unix, token, session).
    Whoami,
    /// Manage user accounts.
    #[command(subcommand)]
    User(users::UserCmd),
    /// Manage teams.
    #[command(subcommand)]
    Team(users::TeamCmd),
    /// Change your own password (asks for the current one); `passwd NAME`: set a user's (admins).
    Passwd(users::PasswdArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(users::TokenCmd),
    /// Show the audit log, newest first.
    Audit(users::AuditArgs),
    /// Recommend limits from the stored history (throttling, pressure, peaks, OOM kills).
    Recommend(recommend::RecommendArgs),
    /// Pull an image from a registry into the image store (admins), like `docker pull`.
    Pull(registry::PullArgs),
    /// Give the daemon credentials for a registry (checked with it, kept root-only).
    Login(registry::LoginArgs),
    /// Make the daemon forget a registry's credentials.
    Logout(registry::LogoutArgs),
    /// Checkpoint a running container with CRIU; it stops unless --leave-running. Where criu
    /// cannot work on this kernel the daemon says why and changes nothing.
    Checkpoint(checkpoint::CheckpointArgs),
    /// Restore a checkpointed container (also after it was removed), or one exported to a
    /// file (--import), optionally under another name.
    Restore(checkpoint::RestoreArgs),
    /// The stored checkpoints (`ls`, the default) and their removal (`rm NAME`).
    Checkpoints(checkpoint::CheckpointsArgs),
    /// A Prometheus scrape config for a fleet of Corral hosts (`config --target ID=ADDR …`)
    /// and recording rules summing teams across them (`rules`). Printed here, no daemon asked.
    Prometheus(prometheus::PrometheusArgs),
    #[command(flatten)]
    Containers(containers::ContainerCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TCP address for the API and dashboard. Keep it on loopback and use `ssh -L`.
    #[arg(long, default_value = config::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Unix socket for the CLI (created 0600 in a 0700 directory).
    #[arg(long, default_value = config::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Also serve the Docker Engine API on this unix socket (0600, root only, like
    /// docker.sock), e.g. /run/corral/docker.sock; off unless given.
    #[arg(long, value_name = "PATH")]
    pub docker_socket: Option<PathBuf>,
    /// Directory for the database and container state.
    #[arg(long, default_value = config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Name of Corral's cgroup subtree.
    #[arg(long, default_value = config::DEFAULT_CGROUP_ROOT)]
    pub cgroup_root: String,
    #[command(flatten)]
    pub auth: crate::auth::AuthConfig,
    /// Seconds between metering samples of every container and team (1 to 3600).
    #[arg(long, default_value = config::DEFAULT_SAMPLE_INTERVAL, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sample_interval: u64,
    /// Seconds between writes of the usage ledger, after each of which budgets are evaluated
    /// (tests: 1).
    #[arg(long, hide = true, default_value = "30", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ledger_flush: u64,
    /// Days raw metering samples are kept.
    #[arg(long, default_value = "7", value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub keep_raw_days: u64,
    /// Days 1-minute rollups are kept.
    #[arg(long, default_value = "90", value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub keep_1m_days: u64,
    /// Days 1-hour rollups are kept (the usage ledger is kept forever).
    #[arg(long, default_value = "731", value_parser = clap::value_parser!(u64).range(1..=36500))]
    pub keep_1h_days: u64,
    #[command(flatten)]
    pub network: crate::network::NetworkArgs,
    #[command(flatten)]
    pub tls: config::TlsArgs,
    /// Memory limit of every container created without one, e.g. `512M` or `2G` (off by
    /// default: such a container is limited by the host only). Shown by `corral info`.
    #[arg(long, value_name = "SIZE", value_parser = config::parse_default_memory)]
    pub default_memory: Option<u64>,
    #[command(flatten)]
    pub images: config::ImageArgs,
    /// This host's name in a fleet: then every `/metrics` series carries `host="NAME"` (and
    /// `GET /api/v1/host` and `corral info` show it), so one Prometheus can scrape many hosts.
    /// 1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit. Off by default.
    #[arg(long, value_name = "NAME", value_parser = config::parse_host_id)]
    pub host_id: Option<String>,
    #[command(flatten)]
    pub ledger: crate::ledger::LedgerArgs,
}

impl ServeArgs {
    pub fn into_config(self) -> Config {
        Config {
            listen: self.listen,
            socket: Some(self.socket),
            docker_socket: self.docker_socket,
            state_dir: self.state_dir,
            cgroup_root: self.cgroup_root,
            auth: self.auth,
            sample_interval: std::time::Duration::from_secs(self.sample_interval),
            ledger_flush: std::time::Duration::from_secs(self.ledger_flush),
            retention: crate::metering::store::Retention::days(
                self.keep_raw_days,
                self.keep_1m_days,
                self.keep_1h_days,
            ),
            network: self.network,
            tls: self.tls,
            default_memory: self.default_memory,
            images: self.images,
            host_id: self.host_id,
            ledger: self.ledger,
        }
    }
}

impl Cli {
    /// The client for this invocation's `--host` and `--token`.
    pub fn client(&self) -> Result<Client, ClientError> {
        Ok(Client::new(Host::parse(&self.host)?, self.token.clone())
            .with_tls_ca(self.tls_ca.clone()))
    }
}

/// Runs one invocation. `serve` runs the daemon; everything else talks to it.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Built before `command` is taken apart; `serve` does not use it.
    let client = cli.client();
    match cli.command {
        Command::Serve(args) => crate::daemon::serve(args.into_config()).await?,
        Command::Version => version(&client?).await?,
        Command::Bill(ref args) => billing::bill(&client?, args).await?,
        Command::Stats(ref args) => billing::stats(&client?, args).await?,
        Command::History(ref args) => history::history(&client?, args).await?,
        Command::Events(ref args) => events::events(&client?, args).await?,
        Command::Timeline(ref args) => timeline::timeline(&client?, args).await?,
        Command::Top(ref args) => top::top(&client?, args).await?,
        Command::Network(ref args) => network::network(&client?, args).await?,
        Command::Rates(ref args) => rates::rates(&client?, args).await?,
        Command::Fleet(ref args) => fleet::fleet(&client?, args).await?,
        Command::Passwd(ref args) => users::passwd(&client?, args).await?,
        Command::Info(ref args) => info::info(&client?, args).await?,
        Command::Whoami => info::whoami(&client?).await?,
        Command::User(ref cmd) => users::user(&client?, cmd).await?,
        Command::Team(ref cmd) => users::team(&client?, cmd).await?,
        Command::Token(ref cmd) => users::token(&client?, cmd).await?,
        Command::Audit(ref args) => users::audit(&client?, args).await?,
        Command::Recommend(ref args) => recommend::recommend(&client?, args).await?,
        Command::Pull(ref args) => registry::pull(&client?, args).await?,
        Command::Login(ref args) => registry::login(&client?, args).await?,
        Command::Logout(ref args) => registry::logout(&client?, args).await?,
        Command::Checkpoint(ref args) => checkpoint::checkpoint(&client?, args).await?,
        Command::Restore(ref args) => checkpoint::restore(&client?, args).await?,
        Command::Checkpoints(ref args) => checkpoint::checkpoints(&client?, args).await?,
        Command::Prometheus(ref args) => prometheus::run(args)?,
        Command::Containers(cmd) => containers::run(&client?, cmd).await?,
    }
    Ok(())
}

/// A daemon refusal of field `field` (or `field.x`, `field[i]`) worded with the flag that
/// fills it, `(field, flag)` in `flags` (`--label: …`); any other error as it is.
fn name_field(e: anyhow::Error, flags: &[(&str, &str)]) -> anyhow::Error {
    let named = match e.downcast_ref::<ClientError>() {
        Some(ClientError::Api {
            field: Some(f),
            message,
            ..
        }) => {
            let head = f.split(['.', '[']).next().unwrap_or(f);
            flags
                .iter()
                .find(|(field, _)| *field == head)
                .map(|(_, flag)| format!("{flag}: {message}"))
        }
        _ => None,
    };
    match named {
        Some(m) => anyhow::anyhow!(m),
        None => e,
    }
}

/// `corral version`.
async fn version(client: &Client) -> Result<(), ClientError> {
    println!("Client: {}", crate::VERSION);
    let health: wire::Health = client.get("/api/v1/health").await?;
    println!("Daemon: {}", health.version);
    if let Some(mode) = health.cgroup_mode {
        println!("Cgroups: {mode}");
    }
    Ok(())
}

/// A text table: `titles`, then `rows`, each column as wide as its widest cell, two spaces
/// apart; the last column unpadded (`corral top`, `corral fleet`).
pub(crate) fn table(titles: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = titles.iter().map(|t| t.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        let mut cells = cells.zip(&widths).peekable();
        while let Some((cell, w)) = cells.next() {
            if cells.peek().is_none() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&mut titles.iter().copied());
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

/// `path` with the given query parameters that are set, percent-encoded.
pub(crate) fn with_query(path: &str, pairs: &[(&str, &Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", containers::enc(v))))
        .collect();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}
