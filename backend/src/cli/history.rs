//! `corral history NAME` / `corral history --team TEAM`: a container's or a team pool's usage
//! over time (`GET /api/v1/containers/{name}/history`, `/teams/{name}/history`) as a table.

use clap::Args;

use super::billing::human_bytes;
use crate::client::Client;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Container name or id (also of a removed one).
    #[arg(required_unless_present = "team", conflicts_with = "team")]
    pub name: Option<String>,
    /// A team pool's history instead of a container's.
    #[arg(long)]
    pub team: Option<String>,
    /// How far back: 30s, 5m, 2h, 7d, 2w (default 1h).
    #[arg(long, value_name = "DURATION", conflicts_with = "from")]
    pub since: Option<String>,
    /// Start instead of --since: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS]Z or Unix seconds.
    #[arg(long)]
    pub from: Option<String>,
    /// End (default now).
    #[arg(long)]
    pub to: Option<String>,
    /// Point spacing, e.g. 1m (default: about 120 points).
    #[arg(long, value_name = "DURATION")]
    pub step: Option<String>,
    /// Print the daemon's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The query parameter each flag fills, so a refusal names the flag.
const FLAGS: [(&str, &str); 4] = [
    ("range", "--since"),
    ("step", "--step"),
    ("from", "--from"),
    ("to", "--to"),
];

pub async fn history(client: &Client, a: &HistoryArgs) -> anyhow::Result<()> {
    let path = match (&a.name, &a.team) {
        (_, Some(t)) => format!("/api/v1/teams/{}/history", super::billing::enc(t)),
        (Some(n), None) => format!("/api/v1/containers/{}/history", super::billing::enc(n)),
        (None, None) => anyhow::bail!("give a container NAME or --team TEAM"),
    };
    let path = super::with_query(
        &path,
        &[
            ("range", &a.since),
            ("step", &a.step),
            ("from", &a.from),
            ("to", &a.to),
        ],
    );
    let h: wire::billing::History = client
        .get(&path)
        .await
        .map_err(|e| super::name_field(e.into(), &FLAGS))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&h)?);
    } else {
        print!("{}", table(&h));
    }
    Ok(())
}

fn table(h: &wire::billing::History) -> String {
    let mut out = format!(
        "{} ({} tier, one point per {} s)\n{:<20} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>5} {:>17}\n",
        h.name,
        h.tier,
        h.step_secs,
        "TIME (UTC)",
        "CORES",
        "THROTTLED",
        "MEM AVG",
        "MEM PEAK",
        "IO READ",
        "IO WRITE",
        "PIDS",
        "PSI CPU/MEM/IO %"
    );
    if h.points.is_empty() {
        out.push_str("no samples in this range\n");
    }
    let psi = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    for p in &h.points {
        let t = crate::metering::calendar::format_time(p.ts.div_euclid(1000));
        out.push_str(&format!(
            "{:<20} {:>7.3} {:>9.1}s {:>10} {:>10} {:>10} {:>10} {:>5} {:>17}\n",
            t.trim_end_matches('Z').replace('T', " "),
            p.cpu_cores,
            p.throttled_seconds,
            human_bytes(p.mem_avg_bytes as f64),
            human_bytes(p.mem_peak_bytes as f64),
            human_bytes(p.io_read_bytes as f64),
            human_bytes(p.io_write_bytes as f64),
            p.pids_peak,
            format!(
                "{}/{}/{}",
                psi(p.cpu_pressure),
                psi(p.memory_pressure),
                psi(p.io_pressure)
            )
        ));
    }
    out
}
