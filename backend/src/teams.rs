//! Team pools (issue 13, part 1): a team's cgroup lives as long as the team does, and carries
//! the team's pooled ceilings.
//!
//! The group `<subtree>/<team>` is created with the team (and for every team at daemon start),
//! kept while the team has no containers ([`Cgroups::pin_team`]: the runtime no longer removes
//! it with the last container), and removed with the team — which is refused while containers
//! remain. Its limits are the container limits' wire type ([`wire::Limits`]: same units,
//! validation and conversion to the engine), changed by a [`wire::LimitsPatch`] (absent:
//! unchanged, `null`/`"max"`: no limit), stored in `team_limits` (`migrations/0011`) and
//! re-applied at start. Only the fields that change are written, all-or-nothing
//! ([`crate::cgroup::Group::apply`]); if the store refuses the new limits afterwards, the old
//! ones are written back. A container's own limit may exceed its team's: the kernel's hierarchy
//! enforces the pool (on cgroup v1 the kernel refuses a CPU quota above the parent's, which is
//! reported as a conflict).
//!
//! Budget overrides (issue 13, part 2, [`crate::budget`]): the steps of a team's budget ladder
//! in force put [`Overrides`] on top of the admin's ceilings. The kernel always holds the
//! per-field tighter of the two ([`tighter`]): a step never loosens an admin's limit, and an
//! admin's change while a step is in force keeps the step. Only the difference between the old
//! and new effective limits is written, so re-applying a step is idempotent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use wire::{Limits, LimitsPatch};

use crate::cgroup::{CgroupError, Cgroups, Controller, Group, GroupPath};
use crate::runtime::cgroups::wire_limits;

/// Errors of team pools.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("team {team:?} still has containers: {}; remove them first", names.join(", "))]
    InUse { team: String, names: Vec<String> },
    /// A field of the limits is invalid; the message says what is allowed.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// A knob this host's cgroups do not have; nothing was changed.
    #[error("{0}; nothing was changed")]
    Unsupported(String),
    /// The kernel refused a value the validation let through; nothing was changed.
    #[error("the kernel refused the team's limits, nothing was changed: {0}")]
    Refused(String),
    #[error("team cgroup operation failed: {0}")]
    Cgroup(#[source] CgroupError),
    #[error("database query failed")]
    Sql(#[from] rusqlite::Error),
    #[error("limits of team {team:?} do not convert to or from JSON")]
    Stored {
        team: String,
        source: serde_json::Error,
    },
}

fn engine_err(e: CgroupError) -> PoolError {
    match e {
        // A valid request this host cannot carry out (a knob its cgroups lack).
        CgroupError::Unsupported { .. } => PoolError::Unsupported(e.to_string()),
        CgroupError::Invalid { field, .. } => PoolError::Invalid {
            field: match field {
                "cpu_max" => "cpus".to_owned(),
                f => f.trim_start_matches("io_max.").to_owned(),
            },
            message: e.to_string(),
        },
        CgroupError::Write { .. } => {
            let mut m = e.to_string();
            if let Some(s) = std::error::Error::source(&e) {
                m.push_str(&format!(": {s}"));
            }
            PoolError::Refused(m)
        }
        other => PoolError::Cgroup(other),
    }
}

/// What a team's budget steps in force put on its group, on top of the admin's ceilings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Only `cpu_weight`, `cpus` and `memory_high` are used.
    pub limits: Limits,
    /// Freeze the team's processes.
    pub frozen: bool,
}

/// The team pools of one daemon (cheap to clone).
#[derive(Clone)]
pub struct Pools {
    cg: Arc<Cgroups>,
    /// Budget overrides in force per team (absent: none). Its own lock, never held across a
    /// kernel write of another team.
    overrides: Arc<Mutex<HashMap<String, Overrides>>>,
}

impl Pools {
    pub fn new(cg: Arc<Cgroups>) -> Self {
        Self {
            cg,
            overrides: Arc::default(),
        }
    }

    fn overrides_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Overrides>> {
        self.overrides.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The team's budget overrides in force.
    pub fn overrides(&self, team: &str) -> Overrides {
        self.overrides_map().get(team).cloned().unwrap_or_default()
    }

    /// Records overrides without writing them (daemon start, before [`Pools::restore`] writes
    /// the effective limits: a step in force is never lifted for a moment).
    pub fn preload_overrides(&self, team: &str, o: Overrides) {
        self.overrides_map().insert(team.to_owned(), o);
    }

    /// Whether this host can set the `Limits` field `knob` on a team group.
    pub fn can_set(&self, knob: &str) -> bool {
        self.cg
            .capabilities()
            .knobs
            .iter()
            .any(|k| k.name == knob && k.available)
    }

    /// Whether this host can freeze a group.
    pub fn can_freeze(&self) -> bool {
        self.cg.capabilities().freeze.is_some()
    }

    /// Puts `new` overrides on the team's group: the kernel gets the tighter of the admin's
    /// ceilings and `new`, written as the difference from what the previous overrides put
    /// there (nothing when equal), then frozen or thawed if that changed. The caller drops the
    /// knobs this host lacks first ([`Pools::can_set`]).
    pub fn set_overrides(
        &self,
        conn: &Connection,
        team: &str,
        new: Overrides,
    ) -> Result<(), PoolError> {
        let stored = Self::stored(conn, team)?;
        let old = self.overrides(team);
        let g = self.group(team)?;
        let update = diff(
            &g,
            &tighter(&stored, &old.limits),
            &tighter(&stored, &new.limits),
        )?;
        g.apply(&update).map_err(engine_err)?;
        let frozen_now = g.is_frozen().unwrap_or(false);
        if new.frozen && !frozen_now {
            g.freeze().map_err(PoolError::Cgroup)?;
        } else if !new.frozen && (old.frozen || frozen_now) {
            g.thaw().map_err(PoolError::Cgroup)?;
        }
        self.overrides_map().insert(team.to_owned(), new);
        Ok(())
    }

    fn path(team: &str) -> Result<GroupPath, PoolError> {
        GroupPath::new([team]).map_err(engine_err)
    }

    fn group(&self, team: &str) -> Result<Group, PoolError> {
        let path = Self::path(team)?;
        match self.cg.open(&path) {
            Ok(g) => Ok(g),
            Err(CgroupError::NotFound { .. }) => self.cg.create(&path).map_err(engine_err),
            Err(e) => Err(engine_err(e)),
        }
    }

    /// The team was created: its group exists from now on.
    pub fn create(&self, team: &str) -> Result<(), PoolError> {
        self.cg.pin_team(team);
        self.group(team).map(drop)
    }

    /// Every team's group with its stored limits (daemon start). A team whose limits the
    /// kernel refuses now is logged and keeps running without them.
    pub fn restore(&self, conn: &Connection) -> Result<(), PoolError> {
        let mut stmt = conn.prepare(
            "SELECT t.name, l.limits FROM teams t LEFT JOIN team_limits l ON l.team = t.name",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (team, limits) in rows {
            let restored = (|| {
                self.create(&team)?;
                let limits: Limits = match limits {
                    None => Limits::default(),
                    Some(json) => {
                        serde_json::from_str(&json).map_err(|source| PoolError::Stored {
                            team: team.clone(),
                            source,
                        })?
                    }
                };
                let g = self.group(&team)?;
                let o = self.overrides(&team);
                let effective = tighter(&limits, &o.limits);
                // The knobs a budget step may have left in the kernel (a crash between the
                // write and the state's commit) are compared with the kernel's own values, so
                // they end up exactly as the stored step says.
                let kernel = wire_limits(g.limits());
                let old = Limits {
                    cpu_weight: kernel.cpu_weight,
                    cpus: kernel.cpus,
                    memory_high: kernel.memory_high,
                    ..Limits::default()
                };
                let update = diff(&g, &old, &effective)?;
                g.apply(&update).map_err(engine_err)?;
                if o.frozen {
                    g.freeze().map_err(PoolError::Cgroup)?;
                } else if g.is_frozen() == Some(true) {
                    g.thaw().map_err(PoolError::Cgroup)?;
                }
                Ok::<(), PoolError>(())
            })();
            if let Err(e) = restored {
                tracing::error!(team, error = %e, "cannot restore the team's pool");
            }
        }
        Ok(())
    }

    /// Removes the team's group; refused while the team has containers.
    pub fn remove(&self, conn: &Connection, team: &str) -> Result<(), PoolError> {
        let names = containers_of(conn, team)?;
        if !names.is_empty() {
            return Err(PoolError::InUse {
                team: team.to_owned(),
                names,
            });
        }
        self.cg.unpin_team(team);
        self.overrides_map().remove(team);
        match self.cg.open(&Self::path(team)?) {
            Ok(g) => g.remove().map_err(|e| {
                self.cg.pin_team(team);
                PoolError::Cgroup(e)
            }),
            Err(CgroupError::NotFound { .. }) => Ok(()),
            Err(e) => Err(PoolError::Cgroup(e)),
        }
    }

    /// The limits the admin set (not the kernel's view).
    pub fn stored(conn: &Connection, team: &str) -> Result<Limits, PoolError> {
        let json: Option<String> = conn
            .query_row(
                "SELECT limits FROM team_limits WHERE team = ?1",
                [team],
                |r| r.get(0),
            )
            .optional()?;
        match json {
            None => Ok(Limits::default()),
            Some(j) => serde_json::from_str(&j).map_err(|source| PoolError::Stored {
                team: team.to_owned(),
                source,
            }),
        }
    }

    /// The team's group if it exists (reads never create it).
    fn existing(&self, team: &str) -> Result<Option<Group>, PoolError> {
        match self.cg.open(&Self::path(team)?) {
            Ok(g) => Ok(Some(g)),
            Err(CgroupError::NotFound { .. }) => Ok(None),
            Err(e) => Err(PoolError::Cgroup(e)),
        }
    }

    /// The team group's limits as the kernel enforces them (none when it has no group).
    pub fn limits(&self, team: &str) -> Result<Limits, PoolError> {
        Ok(self
            .existing(team)?
            .map(|g| wire_limits(g.limits()))
            .unwrap_or_default())
    }

    /// CPU time, memory and tasks of the team's group now (cores in use come from metering).
    pub fn usage(&self, team: &str) -> Result<wire::TeamUsage, PoolError> {
        let Some(g) = self.existing(team)? else {
            return Ok(wire::TeamUsage::default());
        };
        let s = g.stats();
        Ok(wire::TeamUsage {
            cpu_cores: None,
            cpu_usage_usec: s.cpu_usage_usec,
            memory_bytes: s.memory_current,
            pids: s.pids_current,
        })
    }

    /// Applies `patch` to the team's limits, live. Validated as container limits are; only
    /// the changed knobs are written, all or none; stored in `conn`'s transaction `tx` by the
    /// caller's commit. Returns the kernel's limits before and after.
    pub fn update(
        &self,
        tx: &rusqlite::Transaction<'_>,
        team: &str,
        patch: LimitsPatch,
    ) -> Result<(Limits, Limits), PoolError> {
        let new = patch.merge(&Self::stored(tx, team)?);
        self.set(tx, team, new)
    }

    /// Puts `new` in force as the team's limits (as [`Pools::update`] does with a patch): the
    /// shared ledger's copy pulled, or a fleet-wide change.
    pub fn set(
        &self,
        tx: &rusqlite::Transaction<'_>,
        team: &str,
        new: Limits,
    ) -> Result<(Limits, Limits), PoolError> {
        let old = Self::stored(tx, team)?;
        validate(&new)?;
        let json = serde_json::to_string(&new).map_err(|source| PoolError::Stored {
            team: team.to_owned(),
            source,
        })?;
        let g = self.group(team)?;
        let before = wire_limits(g.limits());
        // The kernel holds the effective limits: budget overrides in force stay on top.
        let o = self.overrides(team).limits;
        let (old_eff, new_eff) = (tighter(&old, &o), tighter(&new, &o));
        let update = diff(&g, &old_eff, &new_eff)?;
        g.apply(&update).map_err(engine_err)?;
        let stored = tx.execute(
            "INSERT INTO team_limits (team, limits, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(team) DO UPDATE SET limits = excluded.limits, updated_at = excluded.updated_at",
            params![team, json, crate::auth::now_secs()],
        );
        if let Err(e) = stored {
            // Put back what was applied: the kernel follows the store.
            if let Err(undo) =
                diff(&g, &new_eff, &old_eff).and_then(|u| g.apply(&u).map_err(engine_err))
            {
                tracing::error!(team, error = %undo, "cannot restore the team's limits");
            }
            return Err(e.into());
        }
        Ok((before, wire_limits(g.limits())))
    }
}

/// Checks team limits as container limits are checked, naming the field.
pub fn validate(new: &Limits) -> Result<(), PoolError> {
    crate::runtime::manager::validate_limits(new).map_err(|e| match e {
        crate::runtime::RuntimeError::Invalid { field, message } => PoolError::Invalid {
            field: field.trim_start_matches("limits.").to_owned(),
            message,
        },
        other => PoolError::Invalid {
            field: "limits".into(),
            message: other.to_string(),
        },
    })
}

/// Names of the team's containers (any status).
pub fn containers_of(conn: &Connection, team: &str) -> Result<Vec<String>, rusqlite::Error> {
    let mut stmt =
        conn.prepare_cached("SELECT name FROM containers WHERE team = ?1 ORDER BY name")?;
    stmt.query_map([team], |r| r.get(0))?.collect()
}

/// The engine update that takes a group from `old` to `new`: the changed fields only; a
/// removed limit becomes the kernel's default (no limit, weight 100, the parent's cpus).
fn diff(g: &Group, old: &Limits, new: &Limits) -> Result<crate::cgroup::LimitsUpdate, PoolError> {
    // Clearing memory.low writes 0 on cgroup2; v1's soft limit defaults to unlimited.
    let v2 = g.place(Controller::Memory).is_some_and(|p| p.v2);
    crate::runtime::cgroups::diff(old, new, v2).map_err(engine_err)
}

/// The admin's ceilings with budget overrides on top: per field the tighter (lower weight,
/// fewer cpus, lower memory.high); fields the overrides do not set are the admin's.
pub fn tighter(admin: &Limits, o: &Limits) -> Limits {
    fn min<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b < a { b } else { a }),
            (a, b) => a.or(b),
        }
    }
    Limits {
        cpu_weight: min(admin.cpu_weight, o.cpu_weight),
        cpus: min(admin.cpus, o.cpus),
        memory_high: min(admin.memory_high, o.memory_high),
        ..admin.clone()
    }
}

/// The limit in force for a container of a team: per field the tighter of the two (CPU lists
/// and IO lines: the container's when it has one, else the team's).
pub fn effective(own: &Limits, team: &Limits) -> Limits {
    fn min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    Limits {
        cpus: match (own.cpus, team.cpus) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        cpuset_cpus: own.cpuset_cpus.clone().or_else(|| team.cpuset_cpus.clone()),
        cpuset_mems: own.cpuset_mems.clone().or_else(|| team.cpuset_mems.clone()),
        // A weight is relative among siblings: the container's own.
        cpu_weight: own.cpu_weight,
        memory_max: min(own.memory_max, team.memory_max),
        memory_high: min(own.memory_high, team.memory_high),
        memory_low: min(own.memory_low, team.memory_low),
        memory_min: min(own.memory_min, team.memory_min),
        swap_max: min(own.swap_max, team.swap_max),
        pids_max: min(own.pids_max, team.pids_max),
        io_weight: own.io_weight,
        io_max: if own.io_max.is_empty() {
            team.io_max.clone()
        } else {
            own.io_max.clone()
        },
    }
}
