//! `corral timeline NAME`: the container's recorded changes and attempts, oldest first (`GET
//! /api/v1/containers/{name}/events`, the rows the dashboard's chart marks come from) — who,
//! when, what, and for limit changes old → new. The ids are what `corral update NAME --undo
//! --to ID` takes.

use std::collections::BTreeSet;

use clap::Args;
use serde_json::Value;

use crate::{client::Client, metering::calendar::format_time};

#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// Container name or id.
    pub name: String,
    /// Print the daemon's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn timeline(client: &Client, a: &TimelineArgs) -> anyhow::Result<()> {
    let rows: Vec<wire::AuditEntry> = client
        .get(&format!(
            "/api/v1/containers/{}/events",
            super::billing::enc(&a.name)
        ))
        .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:>6}  {:<20}  {:<12}  {:<20}  {:<8}  CHANGE",
        "ID", "TIME (UTC)", "ACTOR", "ACTION", "RESULT"
    );
    for r in rows {
        println!(
            "{:>6}  {:<20}  {:<12}  {:<20}  {:<8}  {}",
            r.id,
            format_time(r.at_ms.div_euclid(1000)),
            r.actor,
            r.action,
            r.result,
            limits_change(r.before.as_deref(), r.after.as_deref())
                .or(r.detail)
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `cpus 0.5 → max, pids_max max → 77` from rows whose before and after hold `limits`.
fn limits_change(before: Option<&str>, after: Option<&str>) -> Option<String> {
    let limits = |s: Option<&str>| -> Option<serde_json::Map<String, Value>> {
        let v: Value = serde_json::from_str(s?).ok()?;
        v.get("limits")?.as_object().cloned()
    };
    let (b, a) = (limits(before)?, limits(after)?);
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    let show = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "max".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let changes: Vec<String> = keys
        .into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| format!("{k} {} → {}", show(b.get(k)), show(a.get(k))))
        .collect();
    Some(if changes.is_empty() {
        "no change".to_owned()
    } else {
        changes.join(", ")
    })
}

#[cfg(test)]
mod tests {
    use super::limits_change;

    #[test]
    fn changes_old_to_new() {
        let before = r#"{"limits":{"cpus":0.5,"memory_max":268435456}}"#;
        let after = r#"{"limits":{"memory_max":268435456,"pids_max":77},"requested":{}}"#;
        assert_eq!(
            limits_change(Some(before), Some(after)).unwrap(),
            "cpus 0.5 → max, pids_max max → 77"
        );
        assert_eq!(limits_change(Some(before), None), None);
        assert_eq!(
            limits_change(Some(before), Some(before)).unwrap(),
            "no change"
        );
    }
}
