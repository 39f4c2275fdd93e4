//! `corral checkpoint NAME [--leave-running] [--export FILE]` and `corral restore NAME
//! [--import FILE] [--name NEW]`: `POST /api/v1/containers/{name}/checkpoint` and
//! `…/restore` (CRIU, issue 18). Where the host cannot checkpoint, the daemon's refusal
//! (`checkpoint is unavailable on this host: criu check failed: …`) is printed as the one
//! `error:` line.

use clap::{Args, Subcommand};
use hyper::Method;

use super::containers::{enc, send};
use crate::client::Client;

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Container name or id.
    pub name: String,
    /// Keep the container running after the checkpoint (default: it stops).
    #[arg(long)]
    pub leave_running: bool,
    /// Also write the checkpoint as a tarball to FILE on the daemon's host (admins); a
    /// relative FILE is taken from the current directory.
    #[arg(long, value_name = "FILE")]
    pub export: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The checkpointed container's name.
    pub name: String,
    /// Restore from a tarball written by `checkpoint --export` (on the daemon's host; admins).
    #[arg(long, value_name = "FILE")]
    pub import: Option<std::path::PathBuf>,
    /// The restored container's name (default: the checkpointed one's).
    #[arg(long = "name", value_name = "NEW")]
    pub new_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckpointsArgs {
    #[command(subcommand)]
    pub cmd: Option<CheckpointsCmd>,
}

#[derive(Debug, Subcommand)]
pub enum CheckpointsCmd {
    /// The stored checkpoints you may restore: name, team, image, when, size.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored checkpoint (an export written elsewhere stays).
    Rm {
        /// The checkpoint's (the checkpointed container's) name.
        name: String,
    },
}

/// `corral checkpoints [ls|rm NAME]`.
pub async fn checkpoints(client: &Client, a: &CheckpointsArgs) -> anyhow::Result<()> {
    match &a.cmd {
        None | Some(CheckpointsCmd::Ls { json: false }) => {
            let list: Vec<wire::StoredCheckpoint> =
                send(client, Method::GET, "/api/v1/checkpoints", None).await?;
            println!(
                "{:<24} {:<12} {:<28} {:<20} {:>10}",
                "NAME", "TEAM", "IMAGE", "CREATED", "SIZE"
            );
            for c in list {
                println!(
                    "{:<24} {:<12} {:<28} {:<20} {:>10}",
                    c.name,
                    c.team,
                    c.image,
                    crate::metering::calendar::format_time(c.created_at),
                    super::billing::human_bytes(c.size_bytes as f64)
                );
            }
        }
        Some(CheckpointsCmd::Ls { json: true }) => {
            let list: serde_json::Value =
                send(client, Method::GET, "/api/v1/checkpoints", None).await?;
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        Some(CheckpointsCmd::Rm { name }) => {
            let _: serde_json::Value = send(
                client,
                Method::DELETE,
                &format!("/api/v1/checkpoints/{}", enc(name)),
                None,
            )
            .await?;
            println!("{name}");
        }
    }
    Ok(())
}

/// FILE as an absolute path (the daemon refuses relative ones), or an error naming `flag`.
fn absolute(flag: &str, p: &std::path::Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(p).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    abs.to_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("{flag}: {} is not UTF-8", abs.display()))
}

/// `corral checkpoint`.
pub async fn checkpoint(client: &Client, a: &CheckpointArgs) -> anyhow::Result<()> {
    let export = a
        .export
        .as_deref()
        .map(|p| absolute("--export", p))
        .transpose()?;
    let body = wire::CheckpointRequest {
        leave_running: a.leave_running,
        export,
    };
    let ck: wire::Checkpoint = send(
        client,
        Method::POST,
        &format!("/api/v1/containers/{}/checkpoint", enc(&a.name)),
        Some(serde_json::to_value(&body)?),
    )
    .await
    .map_err(|e| super::name_field(e, &[("export", "--export")]))?;
    println!(
        "{}: checkpointed in {} ms, {} ({}){}",
        ck.container,
        ck.took_ms,
        super::billing::human_bytes(ck.size_bytes as f64),
        ck.status,
        ck.export
            .map(|f| format!(", exported to {f}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// `corral restore`.
pub async fn restore(client: &Client, a: &RestoreArgs) -> anyhow::Result<()> {
    let import = a
        .import
        .as_deref()
        .map(|p| absolute("--import", p))
        .transpose()?;
    let body = wire::RestoreRequest {
        import,
        name: a.new_name.clone(),
    };
    let c: wire::Container = send(
        client,
        Method::POST,
        &format!("/api/v1/containers/{}/restore", enc(&a.name)),
        Some(serde_json::to_value(&body)?),
    )
    .await
    .map_err(|e| super::name_field(e, &[("import", "--import"), ("name", "--name")]))?;
    println!("{}", c.name);
    Ok(())
}
