//! Fleet-wide settings in PostgreSQL: the rate card and the team budgets.
//!
//! With a ledger, PostgreSQL holds the one copy every host obeys. A change through any host's
//! API is checked there, written to PostgreSQL first and then locally (refused with
//! `ledger_unavailable` while PostgreSQL is unreachable, so hosts never diverge); every
//! shipper tick pulls both into SQLite, where the bill and the governor read them, so a host
//! that loses PostgreSQL keeps pricing and enforcing what it last knew. Settings made before
//! a host joined seed the fleet when PostgreSQL has none.

use rusqlite::Connection;
use tokio_postgres::Client;

use super::pg::{NOW_MS, PgError};
use crate::{
    auth::audit,
    metering::{
        MeteringError,
        billing::{self, RateCard},
    },
};

/// The fleet's rate card versions, oldest first (without the implicit zero card).
pub async fn rate_cards(client: &Client) -> Result<Vec<RateCard>, PgError> {
    let rows = client
        .query(
            "SELECT effective_from, currency, cpu_core_hour_used_micros,
               cpu_core_hour_reserved_micros, mem_gib_hour_used_micros,
               mem_gib_hour_reserved_micros, io_gib_micros
             FROM corral_rate_card ORDER BY effective_from",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RateCard {
            effective_from: r.get(0),
            currency: r.get(1),
            cpu_core_hour_used: r.get(2),
            cpu_core_hour_reserved: r.get(3),
            mem_gib_hour_used: r.get(4),
            mem_gib_hour_reserved: r.get(5),
            io_gib: r.get(6),
        })
        .collect())
}

/// Writes (or replaces) one version.
pub async fn put_rate_card(client: &Client, c: &RateCard) -> Result<(), PgError> {
    client
        .execute(
            &format!(
                "INSERT INTO corral_rate_card (effective_from, currency,
                   cpu_core_hour_used_micros, cpu_core_hour_reserved_micros,
                   mem_gib_hour_used_micros, mem_gib_hour_reserved_micros, io_gib_micros,
                   created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, {NOW_MS})
                 ON CONFLICT (effective_from) DO UPDATE SET currency = excluded.currency,
                   cpu_core_hour_used_micros = excluded.cpu_core_hour_used_micros,
                   cpu_core_hour_reserved_micros = excluded.cpu_core_hour_reserved_micros,
                   mem_gib_hour_used_micros = excluded.mem_gib_hour_used_micros,
                   mem_gib_hour_reserved_micros = excluded.mem_gib_hour_reserved_micros,
                   io_gib_micros = excluded.io_gib_micros"
            ),
            &[
                &c.effective_from,
                &c.currency,
                &c.cpu_core_hour_used,
                &c.cpu_core_hour_reserved,
                &c.mem_gib_hour_used,
                &c.mem_gib_hour_reserved,
                &c.io_gib,
            ],
        )
        .await?;
    Ok(())
}

/// A budget as PostgreSQL holds it: `None` is a removed budget (kept, so every host removes
/// its copy).
pub type FleetBudgets = Vec<(String, Option<String>)>;

pub async fn budgets(client: &Client) -> Result<FleetBudgets, PgError> {
    let rows = client
        .query(
            "SELECT team, budget FROM corral_team_budgets ORDER BY team",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Sets (`Some` JSON of `wire::Budget`) or removes (`None`) a team's budget.
pub async fn put_budget(client: &Client, team: &str, json: Option<&str>) -> Result<(), PgError> {
    client
        .execute(
            &format!(
                "INSERT INTO corral_team_budgets (team, budget, updated_ms) VALUES ($1, $2, {NOW_MS})
                 ON CONFLICT (team) DO UPDATE SET budget = excluded.budget,
                   updated_ms = excluded.updated_ms"
            ),
            &[&team, &json],
        )
        .await?;
    Ok(())
}

/// The local settings, read in one go for a pull.
pub struct Local {
    pub cards: Vec<RateCard>,
    pub budgets: Vec<(String, String)>,
    pub teams: Vec<String>,
}

pub fn local(conn: &Connection) -> Result<Local, MeteringError> {
    let cards = billing::rate_cards(conn)?
        .into_iter()
        .filter(|c| c.effective_from != i64::MIN)
        .collect();
    let budgets = conn
        .prepare("SELECT team, budget FROM team_budgets ORDER BY team")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let teams = conn
        .prepare("SELECT name FROM teams ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Local {
        cards,
        budgets,
        teams,
    })
}

/// What a pull changes locally.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Replace the local rate card with these versions.
    pub cards: Option<Vec<RateCard>>,
    /// Budgets to write locally (team, JSON) and to remove.
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
    /// Local settings PostgreSQL lacks: pushed up (seeding the fleet).
    pub push_cards: Vec<RateCard>,
    pub push_budgets: Vec<(String, String)>,
}

/// Compares the fleet's settings with the local ones. Budgets of teams this host does not
/// have are not copied (there is no pool to govern); they apply once the team exists.
pub fn plan(local: &Local, cards: &[RateCard], budgets: &FleetBudgets) -> Plan {
    let mut p = Plan::default();
    if cards.is_empty() {
        p.push_cards = local.cards.clone();
    } else if cards != local.cards.as_slice() {
        p.cards = Some(cards.to_vec());
    }
    for (team, json) in &local.budgets {
        match budgets.iter().find(|(t, _)| t == team) {
            None => p.push_budgets.push((team.clone(), json.clone())),
            Some((_, None)) => p.remove.push(team.clone()),
            Some((_, Some(j))) if j != json => p.set.push((team.clone(), j.clone())),
            Some(_) => {}
        }
    }
    for (team, json) in budgets {
        if let Some(j) = json
            && !local.budgets.iter().any(|(t, _)| t == team)
            && local.teams.iter().any(|t| t == team)
        {
            p.set.push((team.clone(), j.clone()));
        }
    }
    p
}

/// Applies a plan's local part in one transaction, each change audited as the shared
/// ledger's (actor `ledger`). Whether anything changed (then the governor evaluates again).
pub fn apply(conn: &Connection, p: &Plan) -> Result<bool, MeteringError> {
    if p.cards.is_none() && p.set.is_empty() && p.remove.is_empty() {
        return Ok(false);
    }
    let pulled = |action: &str, target: &str| {
        audit::Event::anonymous("ledger", action)
            .target(target)
            .detail("pulled from the shared ledger")
    };
    let tx = conn.unchecked_transaction()?;
    if let Some(cards) = &p.cards {
        tx.execute("DELETE FROM rate_card", [])?;
        for c in cards {
            billing::insert_rate_card(&tx, c, crate::metering::sampler::wall_ms())?;
        }
        audit::insert(&tx, &pulled("billing.rates.put", "rate card"))?;
    }
    for (team, json) in &p.set {
        crate::budget::save_budget(&tx, team, Some(json))?;
        audit::insert(&tx, &pulled("team.budget", &format!("team:{team}")))?;
    }
    for team in &p.remove {
        crate::budget::save_budget(&tx, team, None)?;
        audit::insert(
            &tx,
            &pulled("team.budget", &format!("team:{team}")).detail("removed in the shared ledger"),
        )?;
    }
    tx.commit()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(from: i64) -> RateCard {
        RateCard {
            effective_from: from,
            currency: "EUR".into(),
            cpu_core_hour_used: 10,
            cpu_core_hour_reserved: 0,
            mem_gib_hour_used: 0,
            mem_gib_hour_reserved: 0,
            io_gib: 0,
        }
    }

    #[test]
    fn the_fleet_wins_and_local_settings_seed_an_empty_fleet() {
        let local = Local {
            cards: vec![card(3600)],
            budgets: vec![("a".into(), "{1}".into()), ("b".into(), "{2}".into())],
            teams: vec!["a".into(), "b".into(), "c".into()],
        };
        let p = plan(&local, &[], &vec![]);
        assert_eq!(p.push_cards, vec![card(3600)]);
        assert_eq!(p.push_budgets.len(), 2);
        assert!(p.cards.is_none() && p.set.is_empty() && p.remove.is_empty());
        let fleet = vec![
            ("a".to_owned(), Some("{9}".to_owned())),
            ("b".to_owned(), None),
            ("c".to_owned(), Some("{3}".to_owned())),
            ("d".to_owned(), Some("{4}".to_owned())),
        ];
        let p = plan(&local, &[card(3600), card(7200)], &fleet);
        assert_eq!(p.cards, Some(vec![card(3600), card(7200)]));
        assert_eq!(
            p.set,
            vec![("a".into(), "{9}".into()), ("c".into(), "{3}".into())],
            "d: no such team here"
        );
        assert_eq!(p.remove, vec!["b".to_owned()]);
        assert!(p.push_cards.is_empty() && p.push_budgets.is_empty());
        assert_eq!(
            plan(
                &local,
                &[card(3600)],
                &vec![
                    ("a".into(), Some("{1}".into())),
                    ("b".into(), Some("{2}".into()))
                ]
            ),
            Plan::default()
        );
    }
}
