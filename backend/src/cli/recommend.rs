//! `corral recommend [NAME | --team TEAM] [--window 7d] [--apply] [--json]`: right-sized limits
//! from the stored history (`GET /api/v1/{containers,teams}/{name}/recommendation`), one line
//! per limit; `--apply` sends the answer's patch through the ordinary re-limit
//! (`PATCH …/limits`: audited, and undoable with `corral update NAME --undo`).

use anyhow::bail;
use clap::Args;
use hyper::Method;

use super::containers::{enc, send};
use crate::client::Client;

#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// Container name or id (default: every container you can see).
    #[arg(conflicts_with = "team")]
    pub name: Option<String>,
    /// A team's pooled ceilings instead of a container's limits.
    #[arg(long, value_name = "TEAM")]
    pub team: Option<String>,
    /// How much history to read: 1h, 24h, 7d (default 7d).
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Apply the increases and decreases (one container or --team at a time).
    #[arg(long)]
    pub apply: bool,
    /// Print the daemon's JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// `corral recommend`.
pub async fn recommend(client: &Client, a: &RecommendArgs) -> anyhow::Result<()> {
    let query = a
        .window
        .as_ref()
        .map(|w| format!("?window={}", enc(w)))
        .unwrap_or_default();
    let (base, names) = match (&a.name, &a.team) {
        (_, Some(team)) => ("teams", vec![team.clone()]),
        (Some(name), None) => ("containers", vec![name.clone()]),
        (None, None) => {
            if a.apply {
                bail!(
                    "--apply needs a container NAME or --team: recommendations apply one at a time"
                );
            }
            let all: Vec<wire::Container> =
                send(client, Method::GET, "/api/v1/containers?all=true", None).await?;
            ("containers", all.into_iter().map(|c| c.name).collect())
        }
    };
    let mut answers = Vec::new();
    for name in &names {
        let path = format!("/api/v1/{base}/{}/recommendation{query}", enc(name));
        let r: wire::Recommendation = send(client, Method::GET, &path, None).await?;
        if !a.json {
            print_lines(&r, names.len() > 1 || a.name.is_none() && a.team.is_none());
        }
        if a.apply {
            apply(client, base, &r, a.json).await?;
        }
        answers.push(r);
    }
    if a.json {
        let out = if a.name.is_some() || a.team.is_some() {
            serde_json::to_string_pretty(&answers[0])?
        } else {
            serde_json::to_string_pretty(&answers)?
        };
        println!("{out}");
    }
    Ok(())
}

/// One line per item; `prefixed` starts each with the name (the list of every container).
fn print_lines(r: &wire::Recommendation, prefixed: bool) {
    let head = |s: &str| {
        if prefixed {
            format!("{}  {s}", r.name)
        } else {
            s.to_owned()
        }
    };
    if let Some(note) = &r.note {
        println!("{}", head(note));
    }
    for i in &r.items {
        println!("{}", head(&i.line));
    }
}

/// Sends the recommendation's patch to the re-limit route of its container or team.
async fn apply(
    client: &Client,
    base: &str,
    r: &wire::Recommendation,
    quiet: bool,
) -> anyhow::Result<()> {
    if r.patch.is_empty() {
        if !quiet {
            println!("nothing to apply to {}", r.name);
        }
        return Ok(());
    }
    let path = format!("/api/v1/{base}/{}/limits", enc(&r.name));
    let _: serde_json::Value = send(
        client,
        Method::PATCH,
        &path,
        Some(serde_json::to_value(&r.patch)?),
    )
    .await?;
    if !quiet {
        let changed: Vec<String> = r
            .items
            .iter()
            .filter(|i| i.action != wire::RecommendationAction::Keep)
            .map(|i| i.knob.clone())
            .collect();
        println!("applied to {}: {}", r.name, changed.join(", "));
    }
    Ok(())
}
