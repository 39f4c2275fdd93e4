//! The fleet's shared ledger on PostgreSQL (issue 19).
//!
//! Data flow: the sampler writes the hourly ledger into this host's SQLite (the local,
//! crash-safe source of truth); triggers note each changed row in the outbox in the same
//! transaction ([`outbox`]); the shipper task ([`Ledger::start`]) upserts those rows'
//! absolute totals into PostgreSQL keyed on (host, container, hour, team, labels) and only
//! then forgets them; a hub (`corral serve --hub`, [`hub`]) prices PostgreSQL's rows with the
//! fleet's rate card for statements across hosts. Rate cards and team budgets live in
//! PostgreSQL once a ledger is configured ([`sync`]): writes go there first, every host pulls
//! them, and each host adds the other hosts' usage of a budgeted team to its own before it
//! evaluates the budget.
//!
//! Invariants:
//! - Shipping is at-least-once and idempotent: a row is sent as its absolute totals, and the
//!   upsert keeps the greater of stored and sent for every column (all are sums or peaks, so
//!   they only grow), so a replay, a retry or an old copy never counts twice or goes back.
//! - PostgreSQL is never needed to run, meter or enforce: without it the outbox grows (one key
//!   per changed hour row at most), budgets stay at their last known fleet usage, and writes
//!   of fleet-wide settings are refused rather than left to diverge.

pub mod hub;
pub mod outbox;
pub mod pg;
pub mod shipper;
pub mod sync;

use std::path::PathBuf;

pub use shipper::Ledger;

/// The `corral serve` flags of the shared ledger.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LedgerArgs {
    /// Ship this host's usage ledger to PostgreSQL and share rate cards and team budgets with
    /// the fleet there, e.g. `postgres://corral@db.example:5432/corral?sslmode=verify-full`.
    /// `sslmode`: `verify-full` (the default: TLS, the server's name checked against
    /// `--ledger-ca`), `require` (TLS, same checks) or `disable` (only for a server on
    /// loopback). The password never goes here: `--ledger-password-file` or
    /// `CORRAL_LEDGER_PASSWORD`. Needs `--host-id` (or a hostname that is a valid one).
    #[arg(long, value_name = "URL")]
    pub ledger: Option<String>,
    /// File holding the ledger user's password (its first line; keep it 0600).
    #[arg(long, value_name = "PATH")]
    pub ledger_password_file: Option<PathBuf>,
    /// PEM bundle of the CAs that may sign PostgreSQL's certificate; default the system's.
    #[arg(long, value_name = "PATH")]
    pub ledger_ca: Option<PathBuf>,
    /// Serve the fleet: `/api/v1/fleet/*` (hosts, fleet statements and history) read the
    /// shared ledger, and act on hosts' containers through their APIs. Needs `--ledger`.
    #[arg(long)]
    pub hub: bool,
    /// The URL of this host's API that the hub shows, links and forwards container actions
    /// to, e.g. `https://node1:7700` (http only for a loopback address).
    #[arg(long, value_name = "URL")]
    pub advertise_url: Option<String>,
    /// On a hub: a host without a heartbeat for this many seconds (hosts beat every 5 s) is
    /// shown stale; its usage up to its last shipment still counts. 6-86400, default 60.
    #[arg(long, value_name = "SECS")]
    pub stale_after: Option<u64>,
    /// On a hub: PEM bundle of the CAs that may sign the hosts' API certificates, for the
    /// container actions it forwards over HTTPS; default the system's.
    #[arg(long, value_name = "PATH")]
    pub fleet_ca: Option<PathBuf>,
}

/// A hub shows a host stale after this long without a heartbeat, unless `--stale-after`.
pub const STALE_AFTER_S: u64 = 60;

/// TLS of the connection to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS with the server's certificate and name verified (libpq's `verify-full`; our
    /// `require` verifies too: a ledger that bills is never spoken to unauthenticated).
    Verify,
}

/// A checked `--ledger` configuration.
#[derive(Clone)]
pub struct LedgerConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub password: Option<String>,
    pub ssl: SslMode,
    pub ca: PathBuf,
    /// This host's id in the fleet.
    pub host_id: String,
    pub hub: bool,
    pub advertise_url: Option<String>,
    /// On a hub: seconds without a heartbeat before a host is shown stale.
    pub stale_after_s: u64,
    /// On a hub: the CAs of the hosts' API certificates (`--fleet-ca`).
    pub fleet_ca: PathBuf,
}

impl std::fmt::Debug for LedgerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("ssl", &self.ssl)
            .field("host_id", &self.host_id)
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl LedgerConfig {
    /// `user@host:port/db` (no password), for logs and `corral info`.
    pub fn display(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }
}

/// Why the ledger flags are refused (names the flag).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{flag}: {message}")]
pub struct LedgerArgError {
    pub flag: &'static str,
    pub message: String,
}

fn bad(flag: &'static str, message: impl Into<String>) -> LedgerArgError {
    LedgerArgError {
        flag,
        message: message.into(),
    }
}

impl LedgerArgs {
    /// The checked configuration (`None`: no ledger). `host_id`: `--host-id`, else the
    /// hostname; `env_password`: `CORRAL_LEDGER_PASSWORD`.
    pub fn check(
        &self,
        host_id: Option<&str>,
        env_password: Option<String>,
    ) -> Result<Option<LedgerConfig>, LedgerArgError> {
        let Some(url) = &self.ledger else {
            if self.hub {
                return Err(bad(
                    "--hub",
                    "needs --ledger (the hub reads the shared ledger)",
                ));
            }
            if self.ledger_password_file.is_some() {
                return Err(bad("--ledger-password-file", "needs --ledger"));
            }
            return Ok(None);
        };
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| bad("--ledger", "a postgres://USER@HOST[:PORT]/DB URL"))?;
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (auth, hostpath) = main
            .rsplit_once('@')
            .ok_or_else(|| bad("--ledger", "name the user: postgres://USER@HOST[:PORT]/DB"))?;
        if auth.contains(':') {
            return Err(bad(
                "--ledger",
                "the URL holds a password, which would show in ps and shell history: put it \
                 in --ledger-password-file or CORRAL_LEDGER_PASSWORD",
            ));
        }
        let (hostport, dbname) = hostpath.split_once('/').ok_or_else(|| {
            bad(
                "--ledger",
                "name the database: postgres://USER@HOST[:PORT]/DB",
            )
        })?;
        // HOST, HOST:PORT, [IPV6] or [IPV6]:PORT.
        let (host, port) = match hostport.strip_prefix('[') {
            Some(rest) => {
                let (h, after) = rest
                    .split_once(']')
                    .ok_or_else(|| bad("--ledger", "an IPv6 address ends with ]"))?;
                match after {
                    "" => (h, None),
                    _ => (h, Some(after.strip_prefix(':').unwrap_or(after))),
                }
            }
            None => match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        let port = match port {
            None => 5432,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad("--ledger", format!("{p:?} is no port (1-65535)")))?,
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        };
        if host.is_empty() || port == 0 {
            return Err(bad(
                "--ledger",
                "name the server: postgres://USER@HOST[:PORT]/DB",
            ));
        }
        if !name_ok(auth) || !name_ok(dbname) {
            return Err(bad(
                "--ledger",
                "user and database: 1-63 of A-Z a-z 0-9 _ - .",
            ));
        }
        let mut ssl = SslMode::Verify;
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            match kv.split_once('=') {
                Some(("sslmode", "disable")) => ssl = SslMode::Disable,
                Some(("sslmode", "require" | "verify-full" | "verify-ca")) => ssl = SslMode::Verify,
                Some(("sslmode", v)) => {
                    return Err(bad(
                        "--ledger",
                        format!("sslmode={v}: one of verify-full, require, disable"),
                    ));
                }
                _ => {
                    return Err(bad(
                        "--ledger",
                        format!("unknown parameter {kv:?}: only sslmode"),
                    ));
                }
            }
        }
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if ssl == SslMode::Disable && !loopback {
            return Err(bad(
                "--ledger",
                "sslmode=disable is for a server on loopback only: usage and budgets would \
                 cross the network unauthenticated",
            ));
        }
        let password = match &self.ledger_password_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    bad(
                        "--ledger-password-file",
                        format!("cannot read {}: {e}", p.display()),
                    )
                })?;
                Some(text.lines().next().unwrap_or("").to_owned())
            }
            None => env_password.filter(|p| !p.is_empty()),
        };
        let host_id = match host_id {
            Some(h) => h.to_owned(),
            None => {
                let name = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_default();
                crate::config::parse_host_id(&name).map_err(|_| {
                    bad(
                        "--host-id",
                        format!(
                            "needed with --ledger: the hostname {name:?} is no host id (1-64 \
                             of A-Z a-z 0-9 _ . -, starting with a letter or digit)"
                        ),
                    )
                })?
            }
        };
        if let Some(u) = &self.advertise_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(bad("--advertise-url", "an http:// or https:// URL"));
        }
        let stale_after_s = match self.stale_after {
            None => STALE_AFTER_S,
            Some(s) if (6..=86_400).contains(&s) && self.hub => s,
            Some(_) if !self.hub => return Err(bad("--stale-after", "needs --hub")),
            Some(s) => {
                return Err(bad(
                    "--stale-after",
                    format!(
                        "{s} s: 6-86400 (hosts send a heartbeat every 5 s, so less would \
                         flap)"
                    ),
                ));
            }
        };
        if self.fleet_ca.is_some() && !self.hub {
            return Err(bad("--fleet-ca", "needs --hub"));
        }
        Ok(Some(LedgerConfig {
            host: host.to_owned(),
            port,
            user: auth.to_owned(),
            dbname: dbname.to_owned(),
            password,
            ssl,
            ca: self
                .ledger_ca
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::registry::SYSTEM_ROOTS)),
            host_id,
            hub: self.hub,
            advertise_url: self.advertise_url.clone(),
            stale_after_s,
            fleet_ca: self
                .fleet_ca
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::registry::SYSTEM_ROOTS)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> LedgerArgs {
        LedgerArgs {
            ledger: Some(url.into()),
            ..LedgerArgs::default()
        }
    }

    #[test]
    fn urls_are_checked_and_passwords_refused() {
        let c = args("postgres://corral@127.0.0.1:5433/fleet?sslmode=disable")
            .check(Some("n1"), Some("pw".into()))
            .expect("ok")
            .expect("some");
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.user.as_str(),
                c.dbname.as_str(),
                c.ssl
            ),
            ("127.0.0.1", 5433, "corral", "fleet", SslMode::Disable)
        );
        assert_eq!(c.password.as_deref(), Some("pw"));
        let c = args("postgresql://u@db.example/x")
            .check(Some("n1"), None)
            .expect("ok")
            .expect("some");
        assert_eq!((c.port, c.ssl), (5432, SslMode::Verify));
        for (url, host, port) in [
            ("postgres://u@[::1]:5433/x?sslmode=disable", "::1", 5433),
            ("postgres://u@[::1]/x?sslmode=disable", "::1", 5432),
            ("postgres://u@db.example:6000/x", "db.example", 6000),
        ] {
            let c = args(url).check(Some("n1"), None).expect(url).expect(url);
            assert_eq!((c.host.as_str(), c.port), (host, port), "{url}");
        }
        for (url, word) in [
            ("postgres://u:secret@db/x", "password"),
            ("mysql://u@db/x", "postgres://"),
            ("postgres://db/x", "user"),
            ("postgres://u@db", "database"),
            ("postgres://u@db:99999/x", "port"),
            ("postgres://u@::1/x", "port"),
            ("postgres://u@[::1/x", "IPv6"),
            ("postgres://u@db/x?sslmode=prefer", "sslmode"),
            ("postgres://u@db/x?sslmode=disable", "loopback"),
            ("postgres://u@db/x?application_name=a", "unknown"),
            ("postgres://u;drop@db/x", "user and database"),
        ] {
            let e = args(url).check(Some("n1"), None).expect_err(url);
            assert_eq!(e.flag, "--ledger", "{url}");
            assert!(e.message.contains(word), "{url}: {}", e.message);
        }
        let hub = LedgerArgs {
            hub: true,
            ..LedgerArgs::default()
        };
        assert_eq!(hub.check(None, None).expect_err("hub").flag, "--hub");
    }

    #[test]
    fn stale_after_is_a_hubs_and_bounded() {
        let url = "postgres://u@db.example/x";
        let with = |hub: bool, stale_after: Option<u64>| LedgerArgs {
            hub,
            stale_after,
            ..args(url)
        };
        let c = |a: LedgerArgs| {
            a.check(Some("n1"), None)
                .map(|c| c.expect("some").stale_after_s)
        };
        assert_eq!(c(with(true, None)), Ok(STALE_AFTER_S));
        assert_eq!(c(with(true, Some(8))), Ok(8));
        for (a, word) in [
            (with(true, Some(5)), "6-86400"),
            (with(true, Some(86_401)), "6-86400"),
            (with(false, Some(30)), "--hub"),
        ] {
            let e = c(a).expect_err(word);
            assert_eq!(e.flag, "--stale-after");
            assert!(e.message.contains(word), "{}", e.message);
        }
    }
}
