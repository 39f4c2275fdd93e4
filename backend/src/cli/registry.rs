//! `corral pull REF`, `corral login REGISTRY`, `corral logout REGISTRY`: clients of
//! `POST /api/v1/images/pull` and `POST /api/v1/registries/login|logout`. The daemon does the
//! pulling and keeps the credentials (root-only), so a pull works the same from any client.

use std::io::{IsTerminal, Write};

use anyhow::{Context, bail};
use clap::Args;
use hyper::Method;

use crate::client::Client;

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: `busybox`, `busybox:1.36`, `HOST[:PORT]/repo:tag`, `…@sha256:<hex>`.
    pub reference: String,
    /// Print the outcome as JSON (`wire::Pulled`) instead of the progress lines.
    #[arg(long)]
    pub json: bool,
    /// Print only the stored name.
    #[arg(short, long, conflicts_with = "json")]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry: HOST[:PORT] (`docker.io` for Docker Hub).
    pub registry: String,
    /// User name (asked for when missing and stdin is a terminal).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password (or token) from stdin, one line.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry: HOST[:PORT].
    pub registry: String,
}

/// `corral pull`: the daemon's progress lines as `docker pull` prints them (the byte counts of
/// `Downloading`/`Extracting` only on a terminal, on one line), then the outcome.
pub async fn pull(client: &Client, a: &PullArgs) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&wire::PullImage {
        reference: a.reference.clone(),
    })?;
    if a.json {
        let (_, bytes) = client
            .request(Method::POST, "/api/v1/images/pull", Some(body))
            .await?;
        let p: wire::Pulled =
            serde_json::from_slice(&bytes).context("the daemon's answer is not a pull result")?;
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(());
    }
    let tty = std::io::stdout().is_terminal() && !a.quiet;
    let quiet = a.quiet;
    let (mut done, mut failed) = (None, None);
    let mut transient = false;
    let mut on_line = |line: &[u8]| -> bool {
        let Ok(ev) = serde_json::from_slice::<wire::PullProgress>(line) else {
            return true;
        };
        let mut out = std::io::stdout().lock();
        match ev.status.as_str() {
            "done" => done = ev.pulled,
            "error" => failed = ev.error,
            _ if quiet => {}
            "Downloading" | "Extracting" => {
                if tty {
                    let _ = write!(
                        out,
                        "\r\x1b[K{}: {} {:.1}/{:.1} MB",
                        ev.id.as_deref().unwrap_or_default(),
                        ev.status,
                        ev.current as f64 / 1e6,
                        ev.total as f64 / 1e6
                    );
                    let _ = out.flush();
                    transient = true;
                }
            }
            _ => {
                if transient {
                    let _ = write!(out, "\r\x1b[K");
                    transient = false;
                }
                let _ = writeln!(out, "{}", ev.line());
            }
        }
        true
    };
    client
        .stream_lines(
            Method::POST,
            "/api/v1/images/pull",
            Some(body),
            1 << 20,
            &mut on_line,
        )
        .await?;
    if transient {
        print!("\r\x1b[K");
    }
    if let Some(e) = failed {
        bail!("{}", e.message);
    }
    let p = done.context("the daemon ended the pull without a result")?;
    if a.quiet {
        println!("{}", p.name);
    }
    Ok(())
}

/// `corral login`: the daemon checks the credentials with the registry and keeps them.
pub async fn login(client: &Client, a: &LoginArgs) -> anyhow::Result<()> {
    let terminal = std::io::stdin().is_terminal();
    let username = match &a.username {
        Some(u) => u.clone(),
        None if terminal && !a.password_stdin => {
            eprint!("Username: ");
            std::io::stderr().flush()?;
            super::users::read_line()?
        }
        None => bail!("give the user name with -u USER"),
    };
    let password = if a.password_stdin || !terminal {
        super::users::read_line()?
    } else {
        super::users::prompt_hidden("Password: ")?
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let req = wire::RegistryLogin {
        registry: a.registry.clone(),
        username,
        password,
    };
    let (_, bytes) = client
        .request(
            Method::POST,
            "/api/v1/registries/login",
            Some(serde_json::to_vec(&req)?),
        )
        .await?;
    let r: wire::RegistryAuth = serde_json::from_slice(&bytes)?;
    println!("{}", r.status);
    Ok(())
}

/// `corral logout`.
pub async fn logout(client: &Client, a: &LogoutArgs) -> anyhow::Result<()> {
    let req = wire::RegistryLogout {
        registry: a.registry.clone(),
    };
    let (_, bytes) = client
        .request(
            Method::POST,
            "/api/v1/registries/logout",
            Some(serde_json::to_vec(&req)?),
        )
        .await?;
    let r: wire::RegistryAuth = serde_json::from_slice(&bytes)?;
    println!("{}", r.status);
    Ok(())
}
