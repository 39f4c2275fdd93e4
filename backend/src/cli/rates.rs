//! `corral rates` (the rate card in force, with its effective date, and every version) and
//! `corral rates set` (a new version from an effective date; admins): `GET|PUT
//! /api/v1/billing/rates`. The flags are the wire `RateCard`'s fields.

use clap::{Args, Subcommand};
use hyper::Method;
use wire::billing::{RateCard, RateCards};

use crate::client::Client;

#[derive(Debug, Args)]
pub struct RatesArgs {
    #[command(subcommand)]
    pub cmd: Option<RatesCmd>,
    /// Print the daemon's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RatesCmd {
    /// Add a version of the rate card from --effective on (admins); prices not named are
    /// copied from the latest version. Past and current hours keep their prices.
    Set(SetArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Per CPU-core-hour used.
    #[arg(long, value_name = "PRICE")]
    pub cpu_core_hour_used: Option<f64>,
    /// Per CPU-core-hour reserved (cpu.max quota/period, or cpuset size).
    #[arg(long, value_name = "PRICE")]
    pub cpu_core_hour_reserved: Option<f64>,
    /// Per GiB-hour of memory used.
    #[arg(long, value_name = "PRICE")]
    pub mem_gib_hour_used: Option<f64>,
    /// Per GiB-hour of memory reserved (memory.max × time).
    #[arg(long, value_name = "PRICE")]
    pub mem_gib_hour_reserved: Option<f64>,
    /// Per GiB read or written.
    #[arg(long, value_name = "PRICE")]
    pub io_gib: Option<f64>,
    /// ISO 4217 code, e.g. USD (default: the card's; every version has one currency).
    #[arg(long)]
    pub currency: Option<String>,
    /// From when (UTC hour boundary; rounded up): YYYY-MM-DD, YYYY-MM-DDTHH:MMZ or Unix
    /// seconds (default: the next hour).
    #[arg(long, visible_alias = "effective-from", value_name = "TIME")]
    pub effective: Option<String>,
}

/// The API field each flag fills, so a refusal names the flag.
const FLAGS: [(&str, &str); 7] = [
    ("cpu_core_hour_used", "--cpu-core-hour-used"),
    ("cpu_core_hour_reserved", "--cpu-core-hour-reserved"),
    ("mem_gib_hour_used", "--mem-gib-hour-used"),
    ("mem_gib_hour_reserved", "--mem-gib-hour-reserved"),
    ("io_gib", "--io-gib"),
    ("currency", "--currency"),
    ("effective_from", "--effective"),
];

pub async fn rates(client: &Client, a: &RatesArgs) -> anyhow::Result<()> {
    let cards: RateCards = client.get("/api/v1/billing/rates").await?;
    let Some(RatesCmd::Set(s)) = &a.cmd else {
        if a.json {
            println!("{}", serde_json::to_string_pretty(&cards)?);
        } else {
            print!("{}", cards_text(&cards));
        }
        return Ok(());
    };
    // The latest version (possibly not yet in force) is the base of the next one; before the
    // first there is only the daemon's all-zero card, whose currency binds nothing.
    let saved = cards.versions.iter().rfind(|v| v.effective_from.is_some());
    let base = saved.unwrap_or(&cards.current);
    let card = RateCard {
        effective_from: s.effective.clone(),
        currency: s
            .currency
            .clone()
            .or_else(|| saved.map(|v| v.currency.clone()))
            .ok_or_else(|| {
                anyhow::anyhow!("--currency: the first rate card needs one, e.g. USD or EUR")
            })?,
        cpu_core_hour_used: s.cpu_core_hour_used.unwrap_or(base.cpu_core_hour_used),
        cpu_core_hour_reserved: s
            .cpu_core_hour_reserved
            .unwrap_or(base.cpu_core_hour_reserved),
        mem_gib_hour_used: s.mem_gib_hour_used.unwrap_or(base.mem_gib_hour_used),
        mem_gib_hour_reserved: s
            .mem_gib_hour_reserved
            .unwrap_or(base.mem_gib_hour_reserved),
        io_gib: s.io_gib.unwrap_or(base.io_gib),
    };
    let (_, body) = client
        .request(
            Method::PUT,
            "/api/v1/billing/rates",
            Some(serde_json::to_vec(&card)?),
        )
        .await
        .map_err(|e| super::name_field(e.into(), &FLAGS))?;
    let saved: RateCard = serde_json::from_slice(&body)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&saved)?);
    } else {
        println!(
            "rate card version from {} saved",
            saved.effective_from.as_deref().unwrap_or("?")
        );
        print!("{}", card_text(&saved));
    }
    Ok(())
}

fn card_text(c: &RateCard) -> String {
    let cur = &c.currency;
    format!(
        "  CPU core-hour used      {:>12} {cur}\n  CPU core-hour reserved  {:>12} {cur}\n  \
         memory GiB-hour used    {:>12} {cur}\n  memory GiB-hour reserved{:>12} {cur}\n  \
         IO GiB                  {:>12} {cur}\n",
        c.cpu_core_hour_used,
        c.cpu_core_hour_reserved,
        c.mem_gib_hour_used,
        c.mem_gib_hour_reserved,
        c.io_gib
    )
}

/// `corral rates`: the card in force and every version, for people.
fn cards_text(cards: &RateCards) -> String {
    let versions: Vec<&RateCard> = cards
        .versions
        .iter()
        .filter(|v| v.effective_from.is_some())
        .collect();
    if versions.is_empty() {
        return "the rate card is unset: every price is 0 until an admin runs\n  \
                corral rates set --currency USD --cpu-core-hour-used PRICE ... [--effective DATE]\n"
            .to_owned();
    }
    let mut out = match &cards.current.effective_from {
        Some(from) => format!("in force since {from}:\n"),
        None => "in force now: no version yet (every price 0)\n".to_owned(),
    };
    out.push_str(&card_text(&cards.current));
    out.push_str(&format!(
        "\n{:<22} {:<8} {:>12} {:>12} {:>12} {:>12} {:>12}\n",
        "EFFECTIVE FROM",
        "CURRENCY",
        "CPU-H USED",
        "CPU-H RES",
        "GIB-H USED",
        "GIB-H RES",
        "IO GIB"
    ));
    for v in versions {
        let mark = if *v == cards.current { " *" } else { "" };
        out.push_str(&format!(
            "{:<22} {:<8} {:>12} {:>12} {:>12} {:>12} {:>12}\n",
            format!("{}{mark}", v.effective_from.as_deref().unwrap_or("-")),
            v.currency,
            v.cpu_core_hour_used,
            v.cpu_core_hour_reserved,
            v.mem_gib_hour_used,
            v.mem_gib_hour_reserved,
            v.io_gib
        ));
    }
    out
}
