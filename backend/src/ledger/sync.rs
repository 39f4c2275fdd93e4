//! Fleet-wide settings in PostgreSQL: the rate card, the team budgets and the teams themselves
//! (name, description, pooled ceilings).
//!
//! With a ledger, PostgreSQL holds the one copy every host obeys. A change through any host's
//! API is checked there, written to PostgreSQL first and then locally (refused with
//! `ledger_unavailable` while PostgreSQL is unreachable, so hosts never diverge); every
//! shipper tick pulls both into SQLite, where the bill and the governor read them, so a host
//! that loses PostgreSQL keeps pricing and enforcing what it last knew. Settings made before
//! a host joined seed the fleet when PostgreSQL has none.
//!
//! Teams: a team created, changed or removed through any host is created, changed or removed
//! on every host (its cgroup pool and ceilings written by each host's own kernel); a removed
//! team stays in PostgreSQL as a tombstone, so a host that was away removes it too (refused,
//! and retried every round, while that host still has containers in it).

use rusqlite::Connection;
use tokio_postgres::Client;

use super::pg::{NOW_MS, PgError};
use crate::{
    auth::audit,
    metering::{
        MeteringError,
        billing::{self, RateCard},
    },
    teams::{PoolError, Pools},
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

/// A team as the fleet defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetTeam {
    pub name: String,
    pub description: String,
    pub limits: wire::Limits,
    /// Removed through some host: every host removes it.
    pub deleted: bool,
}

/// Every team definition, tombstones included.
pub async fn teams(client: &Client) -> Result<Vec<FleetTeam>, PgError> {
    let rows = client.query(&format!("{TEAMS} ORDER BY name"), &[]).await?;
    rows.iter().map(fleet_team).collect()
}

/// One team's definition (tombstone included), if PostgreSQL has it.
pub async fn team(client: &Client, name: &str) -> Result<Option<FleetTeam>, PgError> {
    let row = client
        .query_opt(&format!("{TEAMS} WHERE name = $1"), &[&name])
        .await?;
    row.as_ref().map(fleet_team).transpose()
}

const TEAMS: &str = "SELECT name, description, limits, deleted FROM corral_teams";

fn fleet_team(r: &tokio_postgres::Row) -> Result<FleetTeam, PgError> {
    let (name, json): (String, String) = (r.get(0), r.get(2));
    let limits = serde_json::from_str(&json)
        .map_err(|e| PgError::Data(format!("corral_teams.limits of {name:?}: {e}")))?;
    Ok(FleetTeam {
        name,
        description: r.get(1),
        limits,
        deleted: r.get(3),
    })
}

/// Writes a team's definition (or its tombstone).
pub async fn put_team(client: &Client, t: &FleetTeam) -> Result<(), PgError> {
    let limits = serde_json::to_string(&t.limits).map_err(|e| PgError::Data(e.to_string()))?;
    client
        .execute(
            &format!(
                "INSERT INTO corral_teams (name, description, limits, deleted, updated_ms)
                 VALUES ($1, $2, $3, $4, {NOW_MS})
                 ON CONFLICT (name) DO UPDATE SET description = excluded.description,
                   limits = excluded.limits, deleted = excluded.deleted,
                   updated_ms = excluded.updated_ms"
            ),
            &[&t.name, &t.description, &limits, &t.deleted],
        )
        .await?;
    Ok(())
}

/// Removes a team's row altogether (a creation this host then refused).
pub async fn forget_team(client: &Client, name: &str) -> Result<(), PgError> {
    client
        .execute("DELETE FROM corral_teams WHERE name = $1", &[&name])
        .await?;
    Ok(())
}

/// A team as this host has it: name, description, the admin's ceilings.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalTeam {
    pub name: String,
    pub description: String,
    pub limits: wire::Limits,
}

/// The local settings, read in one go for a pull.
pub struct Local {
    pub cards: Vec<RateCard>,
    pub budgets: Vec<(String, String)>,
    pub teams: Vec<LocalTeam>,
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
    let rows: Vec<(String, String, Option<String>)> = conn
        .prepare(
            "SELECT t.name, t.description, l.limits FROM teams t
             LEFT JOIN team_limits l ON l.team = t.name ORDER BY t.name",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut teams = Vec::with_capacity(rows.len());
    for (name, description, limits) in rows {
        let limits = match limits {
            None => wire::Limits::default(),
            Some(j) => serde_json::from_str(&j).map_err(MeteringError::Json)?,
        };
        teams.push(LocalTeam {
            name,
            description,
            limits,
        });
    }
    Ok(Local {
        cards,
        budgets,
        teams,
    })
}

/// What a pull changes locally.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Replace the local rate card with these versions.
    pub cards: Option<Vec<RateCard>>,
    /// Budgets to write locally (team, JSON) and to remove.
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
    /// Local settings PostgreSQL lacks: pushed up (seeding the fleet).
    pub push_cards: Vec<RateCard>,
    pub push_budgets: Vec<(String, String)>,
    /// Teams to create here, to bring in line (description, ceilings), to remove here.
    pub create_teams: Vec<FleetTeam>,
    pub change_teams: Vec<FleetTeam>,
    pub remove_teams: Vec<String>,
    /// Local teams PostgreSQL has never heard of (seeding the fleet).
    pub push_teams: Vec<FleetTeam>,
}

/// Compares the fleet's settings with the local ones. Budgets of teams this host does not
/// have are not copied (there is no pool to govern); they apply once the team exists.
pub fn plan(
    local: &Local,
    cards: &[RateCard],
    budgets: &FleetBudgets,
    teams: &[FleetTeam],
) -> Plan {
    let mut p = Plan::default();
    for t in teams {
        match local.teams.iter().find(|l| l.name == t.name) {
            None if !t.deleted => p.create_teams.push(t.clone()),
            None => {}
            Some(_) if t.deleted => p.remove_teams.push(t.name.clone()),
            Some(l) if l.description != t.description || l.limits != t.limits => {
                p.change_teams.push(t.clone())
            }
            Some(_) => {}
        }
    }
    for l in &local.teams {
        if !teams.iter().any(|t| t.name == l.name) {
            p.push_teams.push(FleetTeam {
                name: l.name.clone(),
                description: l.description.clone(),
                limits: l.limits.clone(),
                deleted: false,
            });
        }
    }
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
            && local.teams.iter().any(|t| &t.name == team)
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

/// What a pull did to teams: created and removed here (metering follows), and the changes
/// this host could not carry out (team, why), tried again next round.
#[derive(Debug, Default)]
pub struct TeamsApplied {
    pub created: Vec<String>,
    pub removed: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// Applies a plan's team changes, each in its own transaction with its audit row (actor
/// `ledger`), the pools' cgroups and ceilings written by this host's kernel. One team's
/// failure (its containers still here, a knob this host lacks) leaves the others applied.
pub fn apply_teams(conn: &Connection, pools: &Pools, p: &Plan) -> TeamsApplied {
    let mut done = TeamsApplied::default();
    let pulled = |action: &str, team: &str| {
        audit::Event::anonymous("ledger", action)
            .target(format!("team:{team}"))
            .detail("pulled from the shared ledger")
    };
    for t in &p.create_teams {
        let r = (|| {
            let tx = conn.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO teams (name, description, created_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![t.name, t.description, crate::auth::now_secs()],
            )?;
            pools.create(&t.name)?;
            pools.set(&tx, &t.name, t.limits.clone())?;
            audit::insert(&tx, &pulled("team.create", &t.name))?;
            tx.commit()?;
            Ok::<_, PoolError>(())
        })();
        match r {
            Ok(()) => done.created.push(t.name.clone()),
            Err(e) => {
                // The group of a team that did not come into being goes too.
                let _ = pools.remove(conn, &t.name);
                done.failed.push((t.name.clone(), e.to_string()));
            }
        }
    }
    for t in &p.change_teams {
        let r = (|| {
            let tx = conn.unchecked_transaction()?;
            tx.execute(
                "UPDATE teams SET description = ?2 WHERE name = ?1",
                rusqlite::params![t.name, t.description],
            )?;
            let (before, after) = pools.set(&tx, &t.name, t.limits.clone())?;
            audit::insert(
                &tx,
                &pulled("team.update", &t.name)
                    .before(serde_json::json!(before))
                    .after(serde_json::json!({"description": t.description, "limits": after})),
            )?;
            tx.commit()?;
            Ok::<_, PoolError>(())
        })();
        if let Err(e) = r {
            done.failed.push((t.name.clone(), e.to_string()));
        }
    }
    for name in &p.remove_teams {
        let r = (|| {
            let tx = conn.unchecked_transaction()?;
            pools.remove(&tx, name)?;
            tx.execute("DELETE FROM teams WHERE name = ?1", [name])?;
            audit::insert(&tx, &pulled("team.delete", name))?;
            tx.commit()?;
            Ok::<_, PoolError>(())
        })();
        match r {
            Ok(()) => done.removed.push(name.clone()),
            Err(e) => done.failed.push((name.clone(), e.to_string())),
        }
    }
    done
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
            teams: ["a", "b", "c"].map(|n| team(n, "")).to_vec(),
        };
        let p = plan(&local, &[], &vec![], &[]);
        assert_eq!(p.push_cards, vec![card(3600)]);
        assert_eq!(p.push_budgets.len(), 2);
        assert!(p.cards.is_none() && p.set.is_empty() && p.remove.is_empty());
        let fleet = vec![
            ("a".to_owned(), Some("{9}".to_owned())),
            ("b".to_owned(), None),
            ("c".to_owned(), Some("{3}".to_owned())),
            ("d".to_owned(), Some("{4}".to_owned())),
        ];
        let p = plan(&local, &[card(3600), card(7200)], &fleet, &[]);
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
                ],
                &["a", "b", "c"].map(|n| fleet_team(n, "", false))
            ),
            Plan::default()
        );
    }

    fn team(name: &str, description: &str) -> LocalTeam {
        LocalTeam {
            name: name.into(),
            description: description.into(),
            limits: wire::Limits::default(),
        }
    }

    fn fleet_team(name: &str, description: &str, deleted: bool) -> FleetTeam {
        FleetTeam {
            name: name.into(),
            description: description.into(),
            limits: wire::Limits::default(),
            deleted,
        }
    }

    #[test]
    fn teams_follow_the_fleet_and_tombstones_remove_them() {
        let local = Local {
            cards: vec![],
            budgets: vec![],
            teams: vec![
                team("same", "x"),
                team("old", "x"),
                team("gone", ""),
                team("mine", ""),
            ],
        };
        let mut capped = fleet_team("old", "x", false);
        capped.limits.cpus = Some(2.0);
        let fleet = [
            fleet_team("same", "x", false),
            capped.clone(),
            fleet_team("gone", "", true),
            fleet_team("new", "d", false),
            fleet_team("never-here", "", true),
        ];
        let p = plan(&local, &[], &vec![], &fleet);
        assert_eq!(p.create_teams, vec![fleet_team("new", "d", false)]);
        assert_eq!(p.change_teams, vec![capped]);
        assert_eq!(p.remove_teams, vec!["gone".to_owned()]);
        assert_eq!(
            p.push_teams,
            vec![fleet_team("mine", "", false)],
            "a local team the fleet never had seeds it; a tombstoned one is not pushed back"
        );
    }
}
