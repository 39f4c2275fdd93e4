//! `corral user add|update|passwd|rm|ls`, `corral passwd`, `corral team add|ls|rm|update|inspect`,
//! `corral token create|ls|revoke`, `corral audit`: thin clients of the users, teams, tokens and
//! audit endpoints.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand};
use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{Client, ClientError};

#[derive(Debug, Clone, Subcommand)]
pub enum UserCmd {
    /// Create a user. The password is read from stdin (asked twice, without echo, on a terminal).
    Add {
        name: String,
        /// admin, operator or viewer.
        #[arg(long, value_parser = parse_role, default_value = "viewer")]
        role: wire::Role,
        /// A team the user belongs to (repeat for several).
        #[arg(long = "team")]
        teams: Vec<String>,
    },
    /// Change a user's role or teams (admins).
    Update {
        name: String,
        /// admin, operator or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Option<wire::Role>,
        /// The user's teams, comma-separated, replacing the current ones (`--teams ""`: none).
        #[arg(long, value_name = "TEAM,...")]
        teams: Option<String>,
    },
    /// Set a user's password (read like `add`); ends the user's sessions.
    Passwd { name: String },
    /// Delete a user with its sessions and tokens.
    Rm { name: String },
    /// List users.
    Ls,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TeamCmd {
    /// Create a team.
    Add {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the teams you can see.
    Ls,
    /// Delete a team (refused while it has containers).
    Rm { name: String },
    /// Change the team's pooled ceilings live (admins); unnamed limits stay, `max` removes one.
    /// `--description` (operators of the team too) changes its description.
    Update {
        name: String,
        /// A new description (at most 1000 characters).
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        limits: super::teams::TeamLimitArgs,
    },
    /// The team as JSON: limits as the kernel enforces them, usage now, budget.
    Inspect { name: String },
    /// The team's budget: without flags its state (used, percent, step in force, next reset);
    /// with `--period` (and amounts) sets it (admins); `--clear` removes it.
    Budget {
        name: String,
        #[command(flatten)]
        budget: super::teams::BudgetArgs,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCmd {
    /// Create an API token and print it (it is shown only once). Use it as CORRAL_TOKEN.
    Create {
        /// A label for the token.
        name: String,
        /// The user the token acts as (admins; required for root over the unix socket).
        #[arg(long)]
        user: Option<String>,
        /// Days until it expires; never by default.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List tokens (admins: everyone's).
    Ls,
    /// Revoke a token by id.
    Revoke { id: i64 },
}

#[derive(Debug, Clone, Args)]
pub struct PasswdArgs {
    /// Another user whose password to set (admins; as `corral user passwd NAME`, no current
    /// password asked). Root over the unix socket has no password and must name a user.
    pub name: Option<String>,
    /// Read the passwords from stdin, one a line (current, then new; only the new one with
    /// NAME), without prompting. Also the behaviour when stdin is not a terminal.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Rows to show, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only rows of this actor.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only rows of this action (e.g. login, user.create).
    #[arg(long)]
    pub action: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_role(s: &str) -> Result<wire::Role, String> {
    match s {
        "admin" => Ok(wire::Role::Admin),
        "operator" => Ok(wire::Role::Operator),
        "viewer" => Ok(wire::Role::Viewer),
        other => Err(format!(
            "unknown role {other:?}: use admin, operator or viewer"
        )),
    }
}

async fn send<T: DeserializeOwned>(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
) -> anyhow::Result<Option<T>> {
    let json = body.map(serde_json::to_vec).transpose()?;
    let (status, bytes) = client.request(method, path, json).await?;
    if status == hyper::StatusCode::NO_CONTENT || bytes.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&bytes).map_err(|source| {
        ClientError::Decode { status, source }
    })?))
}

/// Percent-encodes one path segment.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a password: from a terminal twice without echo, otherwise one line of stdin (only the
/// line ending is removed; the password is never trimmed or truncated).
fn read_password() -> anyhow::Result<String> {
    read_new_password("Password: ", false)
}

/// A new password: prompted twice without echo on a terminal, else one line of stdin.
fn read_new_password(prompt: &str, from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        return read_line();
    }
    let first = prompt_hidden(prompt)?;
    let second = prompt_hidden("Again: ")?;
    anyhow::ensure!(first == second, "the passwords differ");
    Ok(first)
}

/// One line of stdin without its line ending (never trimmed otherwise).
pub(super) fn read_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let p = line.strip_suffix('\n').unwrap_or(&line);
    Ok(p.strip_suffix('\r').unwrap_or(p).to_owned())
}

pub(super) fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    tcsetattr(&stdin, SetArg::TCSANOW, &saved)?;
    eprintln!();
    read?;
    let p = line.strip_suffix('\n').unwrap_or(&line);
    Ok(p.strip_suffix('\r').unwrap_or(p).to_owned())
}

pub async fn user(client: &Client, cmd: &UserCmd) -> anyhow::Result<()> {
    match cmd.clone() {
        UserCmd::Add { name, role, teams } => {
            let password = read_password()?;
            let req = wire::UserCreate {
                name,
                role,
                teams,
                password,
            };
            let u: Option<wire::User> =
                send(client, Method::POST, "/api/v1/users", Some(&req)).await?;
            if let Some(u) = u {
                println!("created {} ({})", u.name, u.role);
            }
        }
        UserCmd::Update { name, role, teams } => {
            let teams = teams.map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            });
            anyhow::ensure!(
                role.is_some() || teams.is_some(),
                "name what to change: --role and/or --teams"
            );
            let req = wire::UserUpdate {
                role,
                teams,
                password: None,
            };
            let u: Option<wire::User> = send(
                client,
                Method::PATCH,
                &format!("/api/v1/users/{}", seg(&name)),
                Some(&req),
            )
            .await
            .map_err(|e| super::name_field(e, &[("role", "--role"), ("teams", "--teams")]))?;
            if let Some(u) = u {
                println!(
                    "updated {} ({}) teams: {}",
                    u.name,
                    u.role,
                    u.teams.join(",")
                );
            }
        }
        UserCmd::Passwd { name } => {
            let password = read_password()?;
            let req = wire::UserUpdate {
                password: Some(password),
                ..Default::default()
            };
            let _: Option<wire::User> = send(
                client,
                Method::PATCH,
                &format!("/api/v1/users/{}", seg(&name)),
                Some(&req),
            )
            .await?;
            println!("password of {name} changed; their sessions ended");
        }
        UserCmd::Rm { name } => {
            let _: Option<serde_json::Value> = send(
                client,
                Method::DELETE,
                &format!("/api/v1/users/{}", seg(&name)),
                None::<&()>,
            )
            .await?;
            println!("deleted {name}");
        }
        UserCmd::Ls => {
            let users: Vec<wire::User> = client.get("/api/v1/users").await?;
            println!("{:<24} {:<9} TEAMS", "NAME", "ROLE");
            for u in users {
                println!("{:<24} {:<9} {}", u.name, u.role, u.teams.join(","));
            }
        }
    }
    Ok(())
}

/// `corral passwd [NAME]`: without NAME one's own password, checked against the current one
/// (`PUT /api/v1/me/password`; one's other sessions end, API tokens stay); with another user's
/// NAME an admin sets theirs (`PATCH /api/v1/users/{name}`; their sessions end).
pub async fn passwd(client: &Client, a: &PasswdArgs) -> anyhow::Result<()> {
    let me: wire::Me = client.get("/api/v1/me").await?;
    let stdin = a.password_stdin || !std::io::stdin().is_terminal();
    match &a.name {
        Some(name) if *name != me.name || me.via == "unix" => {
            let password = read_new_password("New password: ", stdin)?;
            let req = wire::UserUpdate {
                password: Some(password),
                ..Default::default()
            };
            let _: Option<wire::User> = send(
                client,
                Method::PATCH,
                &format!("/api/v1/users/{}", seg(name)),
                Some(&req),
            )
            .await
            .map_err(|e| super::name_field(e, &[("password", "password")]))?;
            println!("password of {name} changed; their sessions ended");
        }
        _ if me.via == "unix" => anyhow::bail!(
            "root over the unix socket has no password of its own: name the user whose password \
             to set, `corral passwd NAME`"
        ),
        _ => {
            let current_password = if stdin {
                read_line()?
            } else {
                prompt_hidden("Current password: ")?
            };
            let new_password = read_new_password("New password: ", stdin)?;
            let req = wire::PasswordChange {
                current_password,
                new_password,
            };
            let _: Option<serde_json::Value> =
                send(client, Method::PUT, "/api/v1/me/password", Some(&req))
                    .await
                    .map_err(|e| {
                        if matches!(e.downcast_ref(), Some(ClientError::Api { code, .. }) if code == "bad_credentials")
                        {
                            return anyhow::anyhow!("the current password is wrong; nothing changed");
                        }
                        super::name_field(
                            e,
                            &[
                                ("current_password", "current password"),
                                ("new_password", "new password"),
                                ("password", "new password"),
                            ],
                        )
                    })?;
            println!(
                "password of {} changed; your other sessions ended (API tokens stay: corral token ls)",
                me.name
            );
        }
    }
    Ok(())
}

pub async fn team(client: &Client, cmd: &TeamCmd) -> anyhow::Result<()> {
    match cmd.clone() {
        TeamCmd::Add { name, description } => {
            let req = wire::TeamCreate { name, description };
            let t: Option<wire::Team> =
                send(client, Method::POST, "/api/v1/teams", Some(&req)).await?;
            if let Some(t) = t {
                println!("created team {}", t.name);
            }
        }
        TeamCmd::Ls => {
            let teams: Vec<wire::Team> = client.get("/api/v1/teams").await?;
            println!("{:<24} {:<30} DESCRIPTION", "NAME", "MEMBERS");
            for t in teams {
                println!(
                    "{:<24} {:<30} {}",
                    t.name,
                    t.members.join(","),
                    t.description
                );
            }
        }
        TeamCmd::Rm { name } => {
            let _: Option<serde_json::Value> = send(
                client,
                Method::DELETE,
                &format!("/api/v1/teams/{}", seg(&name)),
                None::<&()>,
            )
            .await?;
            println!("deleted team {name}");
        }
        TeamCmd::Update {
            name,
            description: Some(description),
            limits,
        } => {
            let patch = limits.to_patch();
            let req = wire::TeamUpdate {
                description: Some(description),
                limits: (!patch.is_empty()).then_some(patch),
            };
            let t: Option<wire::Team> = send(
                client,
                Method::PATCH,
                &format!("/api/v1/teams/{}", seg(&name)),
                Some(&req),
            )
            .await
            .map_err(|e| super::name_field(e, &[("description", "--description")]))
            .map_err(super::limits::name_the_flag)?;
            if let Some(t) = t {
                println!("updated team {}: {}", t.name, t.description);
            }
        }
        TeamCmd::Update {
            name,
            description: None,
            limits,
        } => {
            let l: Option<wire::Limits> = send(
                client,
                Method::PATCH,
                &format!("/api/v1/teams/{}/limits", seg(&name)),
                Some(&limits.to_patch()),
            )
            .await?;
            println!("{}", serde_json::to_string(&l)?);
        }
        TeamCmd::Inspect { name } => {
            let t: serde_json::Value = client.get(&format!("/api/v1/teams/{}", seg(&name))).await?;
            println!("{}", serde_json::to_string_pretty(&t)?);
        }
        TeamCmd::Budget { name, budget } => {
            let path = format!("/api/v1/teams/{}/budget", seg(&name));
            if budget.steps {
                let steps: Vec<wire::BudgetEvent> = client.get(&format!("{path}/steps")).await?;
                if budget.json {
                    println!("{}", serde_json::to_string_pretty(&steps)?);
                } else {
                    print!("{}", super::teams::steps_text(&steps));
                }
                return Ok(());
            }
            let state: Option<wire::TeamBudget> = if budget.clear {
                let _: Option<serde_json::Value> =
                    send(client, Method::DELETE, &path, None::<&()>).await?;
                println!("budget of team {name} cleared; every step lifted");
                None
            } else if let Some(req) = budget.to_budget()? {
                send(client, Method::PUT, &path, Some(&req)).await?
            } else {
                Some(client.get(&path).await?)
            };
            if let Some(b) = state {
                if budget.json {
                    println!("{}", serde_json::to_string_pretty(&b)?);
                } else {
                    print!("{}", super::teams::budget_text(&name, &b));
                }
            }
        }
    }
    Ok(())
}

pub async fn token(client: &Client, cmd: &TokenCmd) -> anyhow::Result<()> {
    match cmd.clone() {
        TokenCmd::Create {
            name,
            user,
            expires_in_days,
        } => {
            let req = wire::TokenCreate {
                name,
                user,
                expires_in_days,
            };
            let t: Option<wire::TokenCreated> =
                send(client, Method::POST, "/api/v1/tokens", Some(&req)).await?;
            let t = t.ok_or_else(|| anyhow::anyhow!("the daemon sent no token"))?;
            eprintln!(
                "token {} for {} (id {}); it is shown only this once:",
                t.info.name, t.info.user, t.info.id
            );
            println!("{}", t.token);
        }
        TokenCmd::Ls => {
            let tokens: Vec<wire::TokenInfo> = client.get("/api/v1/tokens").await?;
            println!(
                "{:<6} {:<20} {:<16} {:<12} {:<12} STATE",
                "ID", "NAME", "USER", "CREATED", "LAST USED"
            );
            for t in tokens {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<6} {:<20} {:<16} {:<12} {:<12} {state}",
                    t.id,
                    t.name,
                    t.user,
                    t.created_at,
                    t.last_used_at
                        .map_or_else(|| "-".to_owned(), |v| v.to_string())
                );
            }
        }
        TokenCmd::Revoke { id } => {
            let _: Option<serde_json::Value> = send(
                client,
                Method::DELETE,
                &format!("/api/v1/tokens/{id}"),
                None::<&()>,
            )
            .await?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

pub async fn audit(client: &Client, args: &AuditArgs) -> anyhow::Result<()> {
    let mut path = format!("/api/v1/audit?limit={}", args.limit);
    if let Some(a) = &args.actor {
        path.push_str(&format!("&actor={}", seg(a)));
    }
    if let Some(a) = &args.action {
        path.push_str(&format!("&action={}", seg(a)));
    }
    let rows: Vec<wire::AuditEntry> = client.get(&path).await?;
    for r in rows {
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
            continue;
        }
        println!(
            "{:>6} {:>14} {:<12} {:<7} {:<28} {:<9} {}",
            r.id,
            r.at_ms,
            r.actor,
            r.via,
            r.action,
            r.result,
            r.target.unwrap_or_default()
        );
    }
    Ok(())
}
