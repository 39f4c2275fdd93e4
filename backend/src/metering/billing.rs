//! Billing: the versioned rate card, priced totals per container / team / label over any period,
//! and monthly statements that reconcile with the host's CPU time.
//!
//! Money is integer millionths of the currency unit; a price applies to a ledger hour when its
//! version was in force at the hour's start. A period is split at every rate change, each piece
//! read from the coarsest ledger tables that fit it (whole months in the middle; ten-day blocks,
//! days, six-hour blocks and hours at the edges: at most 38 rows plus one per whole month, per
//! container and rate segment),
//! and priced with exact integer arithmetic; rounding to micros happens once per container and
//! quantity.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{MeteringError, calendar, store};

/// One version of the rate card. Prices in millionths of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateCard {
    /// Unix seconds (a UTC hour boundary) from which this version prices ledger hours.
    pub effective_from: i64,
    pub currency: String,
    pub cpu_core_hour_used: i64,
    pub cpu_core_hour_reserved: i64,
    pub mem_gib_hour_used: i64,
    pub mem_gib_hour_reserved: i64,
    pub io_gib: i64,
}

impl RateCard {
    /// What applies before any version was saved: free, in USD.
    pub fn zero() -> RateCard {
        RateCard {
            effective_from: i64::MIN,
            currency: "USD".into(),
            cpu_core_hour_used: 0,
            cpu_core_hour_reserved: 0,
            mem_gib_hour_used: 0,
            mem_gib_hour_reserved: 0,
            io_gib: 0,
        }
    }
}

/// Every saved version, oldest first, preceded by [`RateCard::zero`] if none starts at the
/// beginning of time.
pub fn rate_cards(conn: &Connection) -> Result<Vec<RateCard>, MeteringError> {
    let mut st = conn.prepare(
        "SELECT effective_from, currency, cpu_core_hour_used_micros, cpu_core_hour_reserved_micros,
           mem_gib_hour_used_micros, mem_gib_hour_reserved_micros, io_gib_micros
         FROM rate_card ORDER BY effective_from",
    )?;
    let rows = st.query_map([], |r| {
        Ok(RateCard {
            effective_from: r.get(0)?,
            currency: r.get(1)?,
            cpu_core_hour_used: r.get(2)?,
            cpu_core_hour_reserved: r.get(3)?,
            mem_gib_hour_used: r.get(4)?,
            mem_gib_hour_reserved: r.get(5)?,
            io_gib: r.get(6)?,
        })
    })?;
    let mut out = vec![RateCard::zero()];
    for r in rows {
        out.push(r?);
    }
    Ok(out)
}

/// Saves a new version. `effective_from` is rounded up to the next hour boundary and must not
/// be before the current hour's end: a new rate never re-prices hours already (partly) billed.
/// A version at the same instant is replaced (it has priced nothing yet).
pub fn put_rate_card(
    conn: &Connection,
    card: &RateCard,
    now: i64,
) -> Result<RateCard, MeteringError> {
    let card = check_rate_card(conn, card, now)?;
    insert_rate_card(conn, &card, now * 1000)?;
    Ok(card)
}

/// Stores a checked version as it is (also a version pulled from the fleet's ledger).
pub fn insert_rate_card(
    conn: &Connection,
    card: &RateCard,
    created_at_ms: i64,
) -> Result<(), MeteringError> {
    conn.execute(
        "INSERT OR REPLACE INTO rate_card (effective_from, currency, cpu_core_hour_used_micros,
           cpu_core_hour_reserved_micros, mem_gib_hour_used_micros, mem_gib_hour_reserved_micros,
           io_gib_micros, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            card.effective_from,
            card.currency,
            card.cpu_core_hour_used,
            card.cpu_core_hour_reserved,
            card.mem_gib_hour_used,
            card.mem_gib_hour_reserved,
            card.io_gib,
            created_at_ms
        ],
    )?;
    Ok(())
}

/// [`put_rate_card`]'s checks: the version as it would be saved, or the field at fault.
pub fn check_rate_card(
    conn: &Connection,
    card: &RateCard,
    now: i64,
) -> Result<RateCard, MeteringError> {
    let mut card = card.clone();
    card.effective_from = calendar::hour_ceil(card.effective_from);
    let earliest = calendar::hour_ceil(now + 1);
    if card.effective_from < earliest {
        return Err(MeteringError::Invalid {
            field: "effective_from",
            value: calendar::format_time(card.effective_from),
            allowed: format!(
                "an hour boundary at or after {} (past and current hours keep their price)",
                calendar::format_time(earliest)
            ),
        });
    }
    let c = card.currency.trim();
    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(MeteringError::Invalid {
            field: "currency",
            value: card.currency.clone(),
            allowed: "a 3-letter ISO 4217 code such as USD or EUR".into(),
        });
    }
    // Totals add costs across versions: they must all be in one currency.
    let saved: Option<String> = conn
        .query_row(
            "SELECT currency FROM rate_card ORDER BY effective_from DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(cur) = saved
        && cur != c
    {
        return Err(MeteringError::Invalid {
            field: "currency",
            value: c.to_owned(),
            allowed: format!("{cur}, the currency of the existing rate card"),
        });
    }
    for (field, v) in [
        ("cpu_core_hour_used", card.cpu_core_hour_used),
        ("cpu_core_hour_reserved", card.cpu_core_hour_reserved),
        ("mem_gib_hour_used", card.mem_gib_hour_used),
        ("mem_gib_hour_reserved", card.mem_gib_hour_reserved),
        ("io_gib", card.io_gib),
    ] {
        if !(0..=1_000_000_000_000).contains(&v) {
            return Err(MeteringError::Invalid {
                field,
                value: format!("{}", v as f64 / 1e6),
                allowed: "0 to 1000000 per unit".into(),
            });
        }
    }
    card.currency = c.to_owned();
    Ok(card)
}

/// Summed quantities of a ledger slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantities {
    pub cpu_usec: i64,
    pub throttled_usec: i64,
    pub cpu_reserved_core_usec: i64,
    pub mem_byte_s: i64,
    pub mem_reserved_byte_s: i64,
    pub io_rbytes: i64,
    pub io_wbytes: i64,
    pub io_rios: i64,
    pub io_wios: i64,
    pub oom_kills: i64,
    pub mem_peak: i64,
    pub pids_peak: i64,
}

impl Quantities {
    pub fn add(&mut self, o: &Quantities) {
        self.cpu_usec += o.cpu_usec;
        self.throttled_usec += o.throttled_usec;
        self.cpu_reserved_core_usec += o.cpu_reserved_core_usec;
        self.mem_byte_s += o.mem_byte_s;
        self.mem_reserved_byte_s += o.mem_reserved_byte_s;
        self.io_rbytes += o.io_rbytes;
        self.io_wbytes += o.io_wbytes;
        self.io_rios += o.io_rios;
        self.io_wios += o.io_wios;
        self.oom_kills += o.oom_kills;
        self.mem_peak = self.mem_peak.max(o.mem_peak);
        self.pids_peak = self.pids_peak.max(o.pids_peak);
    }
}

const USEC_PER_HOUR: i128 = 3_600_000_000;
const GIB_SECONDS_PER_GIB_HOUR: i128 = (1 << 30) * 3600;
const BYTES_PER_GIB: i128 = 1 << 30;

/// Exact cost numerators (quantity × price), divided once at the end.
#[derive(Debug, Clone, Copy, Default)]
struct CostAcc {
    cpu_used: i128,
    cpu_reserved: i128,
    mem_used: i128,
    mem_reserved: i128,
    io: i128,
}

impl CostAcc {
    fn add(&mut self, q: &Quantities, rate: &RateCard) {
        self.cpu_used += i128::from(q.cpu_usec) * i128::from(rate.cpu_core_hour_used);
        self.cpu_reserved +=
            i128::from(q.cpu_reserved_core_usec) * i128::from(rate.cpu_core_hour_reserved);
        self.mem_used += i128::from(q.mem_byte_s) * i128::from(rate.mem_gib_hour_used);
        self.mem_reserved +=
            i128::from(q.mem_reserved_byte_s) * i128::from(rate.mem_gib_hour_reserved);
        self.io += i128::from(q.io_rbytes + q.io_wbytes) * i128::from(rate.io_gib);
    }

    fn finish(&self) -> Cost {
        let div = |n: i128, d: i128| i64::try_from((n + d / 2) / d).unwrap_or(i64::MAX);
        let c = Cost {
            cpu_used: div(self.cpu_used, USEC_PER_HOUR),
            cpu_reserved: div(self.cpu_reserved, USEC_PER_HOUR),
            mem_used: div(self.mem_used, GIB_SECONDS_PER_GIB_HOUR),
            mem_reserved: div(self.mem_reserved, GIB_SECONDS_PER_GIB_HOUR),
            io: div(self.io, BYTES_PER_GIB),
            total: 0,
        };
        Cost {
            total: c.cpu_used + c.cpu_reserved + c.mem_used + c.mem_reserved + c.io,
            ..c
        }
    }
}

/// Cost in millionths of the currency, per priced quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    pub cpu_used: i64,
    pub cpu_reserved: i64,
    pub mem_used: i64,
    pub mem_reserved: i64,
    pub io: i64,
    pub total: i64,
}

impl Cost {
    pub fn add(&mut self, o: &Cost) {
        self.cpu_used += o.cpu_used;
        self.cpu_reserved += o.cpu_reserved;
        self.mem_used += o.mem_used;
        self.mem_reserved += o.mem_reserved;
        self.io += o.io;
        self.total += o.total;
    }
}

/// A priced line: one container (with the team and labels it had), a team, or a label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub container_id: String,
    pub name: String,
    pub team: String,
    pub labels: BTreeMap<String, String>,
    pub usage: Quantities,
    pub cost: Cost,
}

impl Line {
    /// Adds another line's usage and cost (a team's, a label's or a total's).
    pub fn add(&mut self, o: &Line) {
        self.usage.add(&o.usage);
        self.cost.add(&o.cost);
    }
}

/// Which ledger rows a report covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub team: Option<String>,
    /// Only these teams (the teams a non-admin caller may see); `None`: every team.
    pub teams: Option<Vec<String>>,
    /// Container id or name.
    pub container: Option<String>,
    /// `key=value`: only containers carrying that label.
    pub label: Option<(String, String)>,
}

/// Totals over `[from, to)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub from: i64,
    pub to: i64,
    /// The currency of the newest rate version in the period.
    pub currency: String,
    /// Whether a saved rate card version was in force during some of the period (without
    /// one, every cost is 0: [`RateCard::zero`] priced it).
    pub rates_set: bool,
    pub containers: Vec<Line>,
    /// One line per team (container fields empty).
    pub teams: Vec<Line>,
    /// One line per `key=value` label (name holds `key=value`).
    pub labels: Vec<Line>,
    pub total: Line,
}

/// Prices the ledger over `[from, to)` (rounded out to whole hours).
pub fn report(
    conn: &Connection,
    from: i64,
    to: i64,
    filter: &Filter,
) -> Result<Report, MeteringError> {
    let cards = rate_cards(conn)?;
    let base = Report::priced_by(&cards, from, to);
    let mut pricer = Pricer::default();
    for (card, lo, hi) in card_spans(&cards, base.from, base.to) {
        for (grain, a, b) in calendar::decompose(lo, hi) {
            let table = store::ledger_table(grain);
            let mut sql = format!(
                "SELECT container_id, team, labels, name, cpu_usec, throttled_usec,
                   cpu_reserved_core_usec, mem_byte_s, mem_reserved_byte_s, io_rbytes, io_wbytes,
                   io_rios, io_wios, oom_kills, mem_peak, pids_peak
                 FROM {table} WHERE period >= ?1 AND period < ?2"
            );
            let mut args: Vec<rusqlite::types::Value> = vec![a.into(), b.into()];
            if let Some(team) = &filter.team {
                args.push(team.clone().into());
                sql.push_str(&format!(" AND team = ?{}", args.len()));
            }
            if let Some(teams) = &filter.teams {
                let mut marks = Vec::with_capacity(teams.len());
                for t in teams {
                    args.push(t.clone().into());
                    marks.push(format!("?{}", args.len()));
                }
                if marks.is_empty() {
                    sql.push_str(" AND 0");
                } else {
                    sql.push_str(&format!(" AND team IN ({})", marks.join(", ")));
                }
            }
            if let Some(c) = &filter.container {
                args.push(c.clone().into());
                sql.push_str(&format!(
                    " AND (container_id = ?{n} OR name = ?{n})",
                    n = args.len()
                ));
            }
            let mut st = conn.prepare_cached(&sql)?;
            let mut rows = st.query(rusqlite::params_from_iter(args))?;
            while let Some(r) = rows.next()? {
                let q = Quantities {
                    cpu_usec: r.get(4)?,
                    throttled_usec: r.get(5)?,
                    cpu_reserved_core_usec: r.get(6)?,
                    mem_byte_s: r.get(7)?,
                    mem_reserved_byte_s: r.get(8)?,
                    io_rbytes: r.get(9)?,
                    io_wbytes: r.get(10)?,
                    io_rios: r.get(11)?,
                    io_wios: r.get(12)?,
                    oom_kills: r.get(13)?,
                    mem_peak: r.get(14)?,
                    pids_peak: r.get(15)?,
                };
                let text = |i: usize| -> Result<&str, rusqlite::Error> {
                    r.get_ref(i)?.as_str().map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            i,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })
                };
                pricer.add(text(0)?, text(1)?, text(2)?, text(3)?, &q, card);
            }
        }
    }
    Ok(pricer.finish(base, filter.label.as_ref()))
}

/// The rate card versions (oldest first, as [`rate_cards`] gives them) that price
/// `[from, to)`, each with the part of the range it prices.
pub fn card_spans(
    cards: &[RateCard],
    from: i64,
    to: i64,
) -> impl Iterator<Item = (&RateCard, i64, i64)> {
    cards.iter().enumerate().filter_map(move |(i, card)| {
        let lo = from.max(card.effective_from);
        let hi = cards
            .get(i + 1)
            .map_or(to, |next| to.min(next.effective_from));
        (lo < hi).then_some((card, lo, hi))
    })
}

impl Report {
    /// An empty report of `[from, to)` rounded out to whole hours, with the currency of the
    /// newest version pricing it and whether a saved version prices any of it.
    pub fn priced_by(cards: &[RateCard], from: i64, to: i64) -> Report {
        let (from, to) = (calendar::hour_start(from), calendar::hour_ceil(to));
        let spans: Vec<&RateCard> = card_spans(cards, from, to).map(|(c, ..)| c).collect();
        Report {
            from,
            to,
            currency: spans
                .last()
                .copied()
                .or(cards.last())
                .map(|c| c.currency.clone())
                .unwrap_or_default(),
            rates_set: spans.iter().any(|c| c.effective_from != i64::MIN),
            ..Report::default()
        }
    }
}

/// Sums ledger rows per (container, team, labels) and prices each row with the rate card of
/// its hour; [`Pricer::finish`] rounds each line once and adds lines up into team, label and
/// total lines. The local bill and the fleet's (`ledger::hub`) share it, so a team's fleet
/// total is the sum of its hosts' totals to the microsecond.
#[derive(Default)]
pub struct Pricer {
    index: HashMap<String, usize>,
    acc: Vec<Acc>,
    key: String,
}

impl Pricer {
    /// Adds one ledger row. No allocation for a key already seen.
    pub fn add(
        &mut self,
        id: &str,
        team: &str,
        labels: &str,
        name: &str,
        q: &Quantities,
        card: &RateCard,
    ) {
        self.key.clear();
        for part in [id, team, labels] {
            self.key.push_str(part);
            self.key.push('\0');
        }
        let i = match self.index.get(self.key.as_str()) {
            Some(i) => *i,
            None => {
                self.index.insert(self.key.clone(), self.acc.len());
                self.acc.push(Acc {
                    key: (id.to_owned(), team.to_owned(), labels.to_owned()),
                    name: String::new(),
                    q: Quantities::default(),
                    cost: CostAcc::default(),
                });
                self.acc.len() - 1
            }
        };
        let e = &mut self.acc[i];
        // The greatest name, as `max(name)` keeps it in the coarse tables.
        if *name > *e.name {
            e.name = name.to_owned();
        }
        e.q.add(q);
        e.cost.add(q, card);
    }

    /// The priced lines, in `out` (whose period and currency the caller set); `label`: only
    /// containers carrying it.
    pub fn finish(self, mut out: Report, label: Option<&(String, String)>) -> Report {
        let mut acc = self.acc;
        let mut teams: BTreeMap<String, Line> = BTreeMap::new();
        let mut labels: BTreeMap<String, Line> = BTreeMap::new();
        acc.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        for Acc {
            key: (id, team, labels_json),
            name,
            q,
            cost: c,
        } in acc
        {
            let label_map: BTreeMap<String, String> =
                serde_json::from_str(&labels_json).unwrap_or_default();
            if let Some((k, v)) = label
                && label_map.get(k) != Some(v)
            {
                continue;
            }
            let line = Line {
                container_id: id,
                name,
                team: team.clone(),
                labels: label_map.clone(),
                usage: q,
                cost: c.finish(),
            };
            teams
                .entry(team.clone())
                .or_insert_with(|| Line {
                    team: team.clone(),
                    ..Line::default()
                })
                .add(&line);
            for (k, v) in &label_map {
                let kv = format!("{k}={v}");
                labels
                    .entry(kv.clone())
                    .or_insert_with(|| Line {
                        name: kv,
                        ..Line::default()
                    })
                    .add(&line);
            }
            out.total.add(&line);
            out.containers.push(line);
        }
        out.teams = teams.into_values().collect();
        out.labels = labels.into_values().collect();
        out
    }
}

/// The host side of a statement: the host's busy CPU time over the period, what all containers
/// (of every team) used, and the rest (`idle` = host − containers: daemons, the kernel, Corral).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconciliation {
    pub host_cpu_usec: i64,
    pub containers_cpu_usec: i64,
    pub idle_cpu_usec: i64,
    /// Time the host was sampled in the period, ms.
    pub host_covered_ms: i64,
    /// |containers + idle − host| / host, and containers never above host by more than 1 %.
    pub reconciled: bool,
}

/// A team's monthly statement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub team: String,
    /// `YYYY-MM`.
    pub month: String,
    pub report: Report,
    pub host: Reconciliation,
}

/// One container's (with one team and label set) running totals in [`report`].
struct Acc {
    key: (String, String, String),
    name: String,
    q: Quantities,
    cost: CostAcc,
}

/// Host busy CPU over `[from, to)` against every container's CPU there.
pub fn reconcile(conn: &Connection, from: i64, to: i64) -> Result<Reconciliation, MeteringError> {
    let (host, covered): (i64, i64) = conn.query_row(
        "SELECT coalesce(sum(cpu_usec), 0), coalesce(sum(duration_ms), 0) FROM host_ledger
         WHERE period >= ?1 AND period < ?2",
        params![from, to],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let all = report(conn, from, to, &Filter::default())?;
    let containers = all.total.usage.cpu_usec;
    let idle = host - containers;
    let reconciled = host > 0 && idle >= -(host / 100);
    Ok(Reconciliation {
        host_cpu_usec: host,
        containers_cpu_usec: containers,
        idle_cpu_usec: idle,
        host_covered_ms: covered,
        reconciled,
    })
}

/// The statement of `team` for the month holding `month_time`.
pub fn statement(
    conn: &Connection,
    team: &str,
    month_time: i64,
) -> Result<Statement, MeteringError> {
    let from = calendar::month_start(month_time);
    let to = calendar::next_month(month_time);
    let report = report(
        conn,
        from,
        to,
        &Filter {
            team: Some(team.to_owned()),
            ..Filter::default()
        },
    )?;
    Ok(Statement {
        team: team.to_owned(),
        month: calendar::format_month(from),
        report,
        host: reconcile(conn, from, to)?,
    })
}

/// Formats millionths as a decimal with 6 places.
pub fn money(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}

fn hours(usec: i64) -> String {
    format!("{:.6}", usec as f64 / 3.6e9)
}

fn gib_hours(byte_s: i64) -> String {
    format!("{:.6}", byte_s as f64 / GIB_SECONDS_PER_GIB_HOUR as f64)
}

/// The statement as CSV: one row per container, a team total, then the host reconciliation.
pub fn statement_csv(s: &Statement) -> String {
    let mut out = String::from(
        "kind,container_id,name,team,labels,cpu_core_hours,cpu_reserved_core_hours,mem_gib_hours,mem_reserved_gib_hours,io_gib,cost_cpu,cost_cpu_reserved,cost_mem,cost_mem_reserved,cost_io,cost_total,currency\n",
    );
    let row = |out: &mut String, kind: &str, l: &Line| {
        let labels: Vec<String> = l.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let q = &l.usage;
        out.push_str(&format!(
            "{kind},{},{},{},{},{},{},{},{},{:.6},{},{},{},{},{},{},{}\n",
            csv_field(&l.container_id),
            csv_field(&l.name),
            csv_field(&l.team),
            csv_field(&labels.join(";")),
            hours(q.cpu_usec),
            hours(q.cpu_reserved_core_usec),
            gib_hours(q.mem_byte_s),
            gib_hours(q.mem_reserved_byte_s),
            (q.io_rbytes + q.io_wbytes) as f64 / BYTES_PER_GIB as f64,
            money(l.cost.cpu_used),
            money(l.cost.cpu_reserved),
            money(l.cost.mem_used),
            money(l.cost.mem_reserved),
            money(l.cost.io),
            money(l.cost.total),
            csv_field(&s.report.currency),
        ));
    };
    for l in &s.report.containers {
        row(&mut out, "container", l);
    }
    let mut total = s.report.total.clone();
    total.team = s.team.clone();
    row(&mut out, "team_total", &total);
    let h = &s.host;
    out.push_str(&format!(
        "\nhost_cpu_seconds,containers_cpu_seconds,idle_cpu_seconds,reconciled\n{:.6},{:.6},{:.6},{}\n",
        h.host_cpu_usec as f64 / 1e6,
        h.containers_cpu_usec as f64 / 1e6,
        h.idle_cpu_usec as f64 / 1e6,
        h.reconciled
    ));
    out
}

/// One CSV cell from text a user chose (names, labels, the currency), safe to open in a
/// spreadsheet (CSV injection, OWASP): a cell starting with `=`, `+`, `-`, `@`, tab or CR gets
/// a leading `'` so it is never a formula; a cell holding a separator (`,`, or `;` and tab,
/// which some locales split on), a quote or a line break (`\r` included) is quoted, quotes
/// doubled. Each `;`-joined label is checked on its own too, for readers that split on `;`.
fn csv_field(s: &str) -> String {
    let neutral = |part: &str| -> String {
        if part.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{part}")
        } else {
            part.to_owned()
        }
    };
    let cell = s.split(';').map(neutral).collect::<Vec<_>>().join(";");
    if cell.contains([',', ';', '"', '\n', '\r', '\t']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::metering::{
        account::Usage,
        store::{Batch, LedgerOwner, commit, tests::db},
    };

    #[test]
    fn csv_cells_are_never_formulas_and_always_one_cell() {
        let table = [
            ("web", "web"),
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"",
            ),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "\"'\t=1\""),
            ("\r=1", "\"'\r=1\""),
            ("a=x;=cmd|' /C calc'!A0", "\"a=x;'=cmd|' /C calc'!A0\""),
            ("a,b", "\"a,b\""),
            ("line\nbreak", "\"line\nbreak\""),
            ("a=b", "a=b"),
        ];
        for (input, cell) in table {
            assert_eq!(csv_field(input), cell, "{input:?}");
        }
    }

    fn owner(id: &str, team: &str, labels: &str) -> LedgerOwner {
        LedgerOwner {
            container_id: id.into(),
            name: format!("name-{id}"),
            team: team.into(),
            labels: labels.into(),
        }
    }

    /// One core all the time, 1 GiB, 1 GiB of IO per hour.
    fn hour_usage() -> Usage {
        Usage {
            duration_ns: 3_600 * 1_000_000_000,
            cpu_usec: 3_600_000_000,
            memory_byte_seconds: (1 << 30) * 3600,
            io_rbytes: 1 << 30,
            cpu_reserved_core_usec: 2 * 3_600_000_000,
            ..Usage::default()
        }
    }

    fn card(from: i64, cpu: i64) -> RateCard {
        RateCard {
            effective_from: from,
            currency: "EUR".into(),
            cpu_core_hour_used: cpu,
            cpu_core_hour_reserved: 1_000,
            mem_gib_hour_used: 10_000,
            mem_gib_hour_reserved: 0,
            io_gib: 50_000,
        }
    }

    #[test]
    fn a_new_rate_never_reprices_the_past() {
        let mut conn = db();
        let t0 = calendar::parse_time("2026-03-01").unwrap();
        // Rate 1 from the start, rate 2 from day 10; 20 days of one container.
        conn.execute_batch("DELETE FROM rate_card").unwrap();
        put_rate_card(&conn, &card(t0, 40_000), t0 - 10).unwrap();
        let mut b = Batch::default();
        for h in 0..(20 * 24) {
            b.add_ledger(
                &owner("a", "red", "{}"),
                (t0 + h * 3600 + 3600) * 1000,
                &hour_usage(),
            );
        }
        commit(&mut conn, &b).unwrap();
        let before = report(&conn, t0, t0 + 20 * 86_400, &Filter::default()).unwrap();
        assert_eq!(before.total.cost.cpu_used, 480 * 40_000);
        assert_eq!(before.total.cost.cpu_reserved, 480 * 2 * 1_000);
        assert_eq!(before.total.cost.mem_used, 480 * 10_000);
        assert_eq!(before.total.cost.io, 480 * 50_000);
        // Cannot switch currency under existing bills.
        let mut usd = card(t0 + 30 * 86_400, 1);
        usd.currency = "USD".into();
        assert!(matches!(
            put_rate_card(&conn, &usd, t0),
            Err(MeteringError::Invalid {
                field: "currency",
                ..
            })
        ));
        // Cannot start in the past (at "now" = day 10, 12:30).
        let now = t0 + 10 * 86_400 + 45_000;
        assert!(put_rate_card(&conn, &card(t0 + 86_400, 1), now).is_err());
        // Starts at the next hour boundary: day 10, 13:00.
        let saved = put_rate_card(&conn, &card(now, 80_000), now).unwrap();
        assert_eq!(saved.effective_from, t0 + 10 * 86_400 + 46_800);
        let after = report(&conn, t0, t0 + 20 * 86_400, &Filter::default()).unwrap();
        let old_hours = 10 * 24 + 13;
        let new_hours = 480 - old_hours;
        assert_eq!(
            after.total.cost.cpu_used,
            old_hours * 40_000 + new_hours * 80_000
        );
        // What was billed before the change is unchanged.
        let first_ten =
            |c: &Connection| report(c, t0, t0 + 10 * 86_400, &Filter::default()).unwrap();
        assert_eq!(first_ten(&conn).total.cost.cpu_used, 240 * 40_000);
    }

    #[test]
    fn totals_per_container_team_and_label_from_any_period() {
        let mut conn = db();
        let t0 = calendar::parse_time("2026-01-30").unwrap();
        put_rate_card(&conn, &card(t0, 1_000_000), t0 - 1).unwrap();
        let mut b = Batch::default();
        let containers = [
            ("a", "red", r#"{"env":"prod"}"#),
            ("b", "red", r#"{"env":"dev"}"#),
            ("c", "blue", r#"{"env":"prod"}"#),
        ];
        // 40 days, crossing two month boundaries, one row per container-hour.
        for h in 0..(40 * 24) {
            for (id, team, labels) in containers {
                b.add_ledger(
                    &owner(id, team, labels),
                    (t0 + h * 3600 + 3600) * 1000,
                    &hour_usage(),
                );
            }
        }
        commit(&mut conn, &b).unwrap();
        // Any period, including odd edges, equals the hour count.
        for (from_h, to_h) in [(0, 960), (5, 7), (3, 900), (47, 49), (0, 24), (71, 800)] {
            let r = report(
                &conn,
                t0 + from_h * 3600,
                t0 + to_h * 3600,
                &Filter::default(),
            )
            .unwrap();
            let n = to_h - from_h;
            assert_eq!(
                r.total.usage.cpu_usec,
                3 * n * 3_600_000_000,
                "{from_h}..{to_h}"
            );
            assert_eq!(r.total.cost.cpu_used, 3 * n * 1_000_000);
            let red = r.teams.iter().find(|t| t.team == "red").unwrap();
            assert_eq!(red.usage.cpu_usec, 2 * n * 3_600_000_000);
            let prod = r.labels.iter().find(|l| l.name == "env=prod").unwrap();
            assert_eq!(prod.cost.total, 2 * r.containers[0].cost.total);
        }
        let r = report(
            &conn,
            t0,
            t0 + 960 * 3600,
            &Filter {
                team: Some("red".into()),
                label: Some(("env".into(), "dev".into())),
                ..Filter::default()
            },
        )
        .unwrap();
        assert_eq!(r.containers.len(), 1);
        assert_eq!(r.containers[0].name, "name-b");
        let r = report(
            &conn,
            t0,
            t0 + 960 * 3600,
            &Filter {
                container: Some("name-c".into()),
                ..Filter::default()
            },
        )
        .unwrap();
        assert_eq!(r.total.usage.cpu_usec, 960 * 3_600_000_000);
    }

    #[test]
    fn statement_reconciles_with_the_host() {
        let mut conn = db();
        let t0 = calendar::parse_time("2026-05-01").unwrap();
        let mut b = Batch::default();
        for h in 0..(31 * 24) {
            let end = (t0 + h * 3600 + 3600) * 1000;
            b.add_ledger(&owner("a", "red", "{}"), end, &hour_usage());
            b.add_ledger(&owner("c", "blue", "{}"), end, &hour_usage());
            // The host: both containers plus 0.25 core of everything else.
            let mut host = hour_usage();
            host.cpu_usec = 2 * 3_600_000_000 + 900_000_000;
            b.add_host(end, &host);
        }
        commit(&mut conn, &b).unwrap();
        let s = statement(&conn, "red", t0 + 5 * 86_400).unwrap();
        assert_eq!(s.month, "2026-05");
        let h = s.host;
        assert!(h.reconciled);
        assert_eq!(h.containers_cpu_usec + h.idle_cpu_usec, h.host_cpu_usec);
        assert_eq!(h.idle_cpu_usec, 744 * 900_000_000);
        assert_eq!(s.report.total.usage.cpu_usec, 744 * 3_600_000_000);
        let csv = statement_csv(&s);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("container,a,name-a,red,,744.000000,")
        );
        assert!(csv.contains("team_total"));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"reconciled\":true"));
        assert_eq!(money(1_234_567), "1.234567");
        assert_eq!(money(-5), "-0.000005");
    }

    /// Property: over a generated ledger written by the live path (many commits, usage
    /// intervals crossing hours, rate changes), any random range's per-container totals and
    /// peaks equal the sums and maxima of the hourly rows in it.
    #[test]
    fn any_range_equals_the_hourly_sum() {
        let mut conn = db();
        let t0 = calendar::parse_time("2025-12-20T07:00Z").unwrap();
        let span_h: i64 = 24 * 120;
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        conn.execute_batch("DELETE FROM rate_card").unwrap();
        for (k, cpu) in [(0, 40_000), (700, 45_000), (1900, 50_000)] {
            put_rate_card(&conn, &card(t0 + k * 3600, cpu), t0 - 1).unwrap();
        }
        let owners = [
            owner("a", "red", r#"{"env":"prod"}"#),
            owner("b", "red", "{}"),
            owner("c", "blue", r#"{"env":"prod"}"#),
        ];
        // Intervals of 20 min to 5 h per owner, committed a few at a time.
        for o in &owners {
            let mut end_ms = t0 * 1000;
            let mut b = Batch::default();
            while end_ms < (t0 + span_h * 3600) * 1000 {
                let dt_s = 1200 + rnd(5 * 3600 - 1200);
                end_ms += dt_s as i64 * 1000;
                let u = Usage {
                    duration_ns: dt_s * 1_000_000_000,
                    cpu_usec: rnd(dt_s * 1_000_000),
                    throttled_usec: rnd(1_000_000),
                    memory_byte_seconds: rnd(1 << 40),
                    memory_peak: rnd(1 << 33),
                    pids_peak: rnd(500),
                    io_rbytes: rnd(1 << 30),
                    io_wbytes: rnd(1 << 28),
                    oom_kills: rnd(3) / 2,
                    cpu_reserved_core_usec: dt_s * 2_000_000,
                    ..Usage::default()
                };
                b.add_ledger(o, end_ms, &u);
                if rnd(4) == 0 {
                    commit(&mut conn, &b).unwrap();
                    b = Batch::default();
                }
            }
            commit(&mut conn, &b).unwrap();
        }
        let cards = rate_cards(&conn).unwrap();
        for round in 0..150 {
            let a = rnd(span_h as u64) as i64;
            let b = a + rnd((span_h - a) as u64 + 1) as i64;
            let (from, to) = (t0 + a * 3600, t0 + b * 3600);
            let r = report(&conn, from, to, &Filter::default()).unwrap();
            // The same from the hourly rows, priced per hour.
            let mut want: BTreeMap<String, (Quantities, CostAcc)> = BTreeMap::new();
            let mut st = conn
                .prepare(
                    "SELECT container_id, period, cpu_usec, throttled_usec, cpu_reserved_core_usec,
                       mem_byte_s, mem_reserved_byte_s, io_rbytes, io_wbytes, io_rios, io_wios,
                       oom_kills, mem_peak, pids_peak
                     FROM usage_ledger WHERE period >= ?1 AND period < ?2",
                )
                .unwrap();
            let mut rows = st.query(params![from, to]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                let q = Quantities {
                    cpu_usec: row.get(2).unwrap(),
                    throttled_usec: row.get(3).unwrap(),
                    cpu_reserved_core_usec: row.get(4).unwrap(),
                    mem_byte_s: row.get(5).unwrap(),
                    mem_reserved_byte_s: row.get(6).unwrap(),
                    io_rbytes: row.get(7).unwrap(),
                    io_wbytes: row.get(8).unwrap(),
                    io_rios: row.get(9).unwrap(),
                    io_wios: row.get(10).unwrap(),
                    oom_kills: row.get(11).unwrap(),
                    mem_peak: row.get(12).unwrap(),
                    pids_peak: row.get(13).unwrap(),
                };
                let period: i64 = row.get(1).unwrap();
                let rate = cards
                    .iter()
                    .rev()
                    .find(|c| c.effective_from <= period)
                    .unwrap();
                let e = want.entry(row.get(0).unwrap()).or_default();
                e.0.add(&q);
                e.1.add(&q, rate);
            }
            let got: BTreeMap<String, (Quantities, Cost)> = r
                .containers
                .iter()
                .map(|l| (l.container_id.clone(), (l.usage, l.cost)))
                .collect();
            let want: BTreeMap<String, (Quantities, Cost)> = want
                .into_iter()
                .map(|(k, (q, c))| (k, (q, c.finish())))
                .collect();
            assert_eq!(got, want, "round {round}: hours {a}..{b}");
        }
    }
}
