//! `corral bill` (usage and cost over a period) and `corral stats` (live usage, like
//! `docker stats`).

use std::time::Duration;

use clap::Args;
use hyper::Method;

use crate::client::{Client, ClientError};

#[derive(Debug, Args)]
pub struct BillArgs {
    /// Only this team.
    #[arg(long)]
    pub team: Option<String>,
    /// Only this container (name or id).
    #[arg(long)]
    pub container: Option<String>,
    /// Only containers with this label (key=value).
    #[arg(long)]
    pub label: Option<String>,
    /// Start: YYYY-MM-DD, YYYY-MM or YYYY-MM-DDTHH:MMZ (UTC; default: start of this month).
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive (default: now).
    #[arg(long)]
    pub to: Option<String>,
    /// The team's monthly statement for MONTH (YYYY-MM), reconciled with the host; needs --team.
    #[arg(long, value_name = "MONTH", requires = "team")]
    pub statement: Option<String>,
    /// Print CSV instead of a table.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit.
    #[arg(long)]
    pub no_stream: bool,
}

/// Percent-encodes a query value or path segment.
pub(super) fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `corral bill`.
pub async fn bill(client: &Client, a: &BillArgs) -> Result<(), ClientError> {
    if let (Some(month), Some(team)) = (&a.statement, &a.team) {
        let path = format!("/api/v1/billing/statements/{}/{}", enc(team), enc(month));
        if a.csv {
            let (_, body) = client
                .request(Method::GET, &format!("{path}?format=csv"), None)
                .await?;
            print!("{}", String::from_utf8_lossy(&body));
        } else {
            let s: wire::billing::Statement = client.get(&path).await?;
            note_unset_rates(&s.report);
            print_report(&s.report);
            let h = &s.host;
            println!(
                "\nHost CPU {:.1} s = containers {:.1} s + idle {:.1} s  ({})",
                h.host_cpu_seconds,
                h.containers_cpu_seconds,
                h.idle_cpu_seconds,
                if h.reconciled {
                    "reconciled"
                } else {
                    "NOT reconciled"
                }
            );
        }
        return Ok(());
    }
    let path = super::with_query(
        "/api/v1/billing",
        &[
            ("team", &a.team),
            ("container", &a.container),
            ("label", &a.label),
            ("from", &a.from),
            ("to", &a.to),
        ],
    );
    let r: wire::billing::BillingReport = client.get(&path).await?;
    note_unset_rates(&r);
    if a.csv {
        print!("{}", report_csv(&r));
    } else {
        print_report(&r);
    }
    Ok(())
}

/// On stderr (stdout stays a clean table or CSV): why every cost is 0.00, and how to fix it.
fn note_unset_rates(r: &wire::billing::BillingReport) {
    if !r.rates_set {
        eprintln!(
            "note: the rate card is unset for {} .. {}, so every cost shows as 0.00; an admin sets it with `corral rates set …` (or on the dashboard's billing page)",
            r.from, r.to
        );
    }
}

fn report_csv(r: &wire::billing::BillingReport) -> String {
    let mut out = String::from(
        "kind,container_id,name,team,cpu_seconds,cpu_reserved_core_hours,mem_gib_hours,mem_reserved_gib_hours,io_bytes,cost,currency\n",
    );
    let mut row = |kind: &str, l: &wire::billing::BillingLine| {
        let u = &l.usage;
        out.push_str(&format!(
            "{kind},{},{},{},{:.6},{:.6},{:.6},{:.6},{},{:.6},{}\n",
            l.container_id,
            l.name,
            l.team,
            u.cpu_seconds,
            u.cpu_reserved_core_hours,
            u.mem_gib_hours,
            u.mem_reserved_gib_hours,
            u.io_read_bytes + u.io_write_bytes,
            l.cost.total,
            r.currency
        ));
    };
    for l in &r.containers {
        row("container", l);
    }
    for l in &r.teams {
        row("team", l);
    }
    row("total", &r.total);
    out
}

fn print_report(r: &wire::billing::BillingReport) {
    println!("Period {} .. {} ({})", r.from, r.to, r.currency);
    println!(
        "{:<24} {:<12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "CONTAINER", "TEAM", "CPU-SEC", "CORE-H RES", "GIB-H", "IO GIB", "COST"
    );
    let line = |name: &str, l: &wire::billing::BillingLine| {
        let u = &l.usage;
        println!(
            "{:<24} {:<12} {:>12.1} {:>12.3} {:>12.3} {:>12.3} {:>12.2}",
            name,
            l.team,
            u.cpu_seconds,
            u.cpu_reserved_core_hours,
            u.mem_gib_hours,
            (u.io_read_bytes + u.io_write_bytes) as f64 / (1u64 << 30) as f64,
            l.cost.total
        );
    };
    for l in &r.containers {
        line(&l.name, l);
    }
    for l in &r.teams {
        line("(team total)", l);
    }
    line("TOTAL", &r.total);
}

pub(super) fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1}{}", UNITS[i])
}

fn print_stats(s: &wire::billing::LiveStats) {
    println!(
        "{:<24} {:<12} {:>8} {:>22} {:>7} {:>20} {:>6}",
        "NAME", "TEAM", "CPU %", "MEM USAGE / LIMIT", "MEM %", "BLOCK I/O", "PIDS"
    );
    for l in s.stats.iter().filter(|l| l.kind == "container") {
        let limit = l
            .mem_limit_bytes
            .map_or("-".to_owned(), |m| human_bytes(m as f64));
        let mem_pct = l
            .mem_limit_bytes
            .filter(|m| *m > 0)
            .map_or("-".to_owned(), |m| {
                format!("{:.1}%", l.mem_bytes as f64 * 100.0 / m as f64)
            });
        println!(
            "{:<24} {:<12} {:>7.1}% {:>22} {:>7} {:>20} {:>6}",
            l.name,
            l.team,
            l.cpu_cores * 100.0,
            format!("{} / {}", human_bytes(l.mem_bytes as f64), limit),
            mem_pct,
            format!(
                "{} / {}",
                human_bytes(l.io_read_bytes_total as f64),
                human_bytes(l.io_write_bytes_total as f64)
            ),
            l.pids
        );
    }
}

/// `corral stats`.
pub async fn stats(client: &Client, a: &StatsArgs) -> Result<(), ClientError> {
    loop {
        let s: wire::billing::LiveStats = client.get("/api/v1/stats").await?;
        if a.no_stream {
            print_stats(&s);
            return Ok(());
        }
        // Clear the screen and home the cursor, like `docker stats`.
        print!("\x1b[2J\x1b[H");
        print_stats(&s);
        let wait = Duration::from_secs_f64(s.interval_secs.clamp(1.0, 60.0));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
