//! Team budgets (issue 13, part 2): a budget per team and UTC period (day, week, month), in
//! money from the rate card and/or CPU core-hours and memory GiB-hours, and a ladder of steps
//! the daemon puts on the team's cgroup as usage climbs.
//!
//! - Usage comes from the same hourly ledger the bill is priced from ([`billing::report`]):
//!   there is no second meter. Money is the priced total; core-hours the CPU time used;
//!   GiB-hours the memory integral. The percent is the highest of the budgets set.
//! - The [`Governor`] evaluates every budgeted team after each ledger flush (woken by
//!   [`crate::metering::Metering::on_flush`]) and at once on every change of a budget. The
//!   target step is the highest rung whose threshold the percent reached; the steps up to it
//!   are cumulative ([`overrides`]; of two steps of one kind the tighter wins) and reach the
//!   kernel through [`Pools::set_overrides`], never looser than the admin's own ceilings.
//! - A change of step is applied to the kernel first, then recorded in one transaction:
//!   `team_budget_state`, a `team_budget_steps` row (the timeline) and an audit row (actor
//!   `corral` when usage moved it, the admin when their change of the budget did). Then it
//!   goes out as `event: budget` and to the budget's webhook ([`crate::webhook`]). The same
//!   target twice writes nothing; at the period boundary (or when the budget is raised or
//!   cleared) the steps are lifted the same way. Nothing is killed.
//! - At daemon start [`Governor::restore`] loads the stored steps into the pools before
//!   [`Pools::restore`] writes the effective limits: a restart never lifts a step for a moment.
//!
//! With the `fault-injection` feature (tests only), the governor's clock is the wall clock
//! plus the seconds in `<state>/.clock-offset`, read at each evaluation: a test makes it
//! "tomorrow" to see the period reset without waiting for midnight.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;
use wire::{Budget, BudgetEvent, BudgetPeriod, LadderStep, StepAction, TeamBudget};

use crate::{
    auth::{Actor, audit},
    events::Events,
    metering::{
        MeteringError,
        billing::{self, Filter},
        calendar,
    },
    store::Store,
    teams::{Overrides, PoolError, Pools},
};

/// Fault-injection file under the state directory: seconds added to the governor's clock.
pub const CLOCK_OFFSET: &str = ".clock-offset";
/// Most ladder steps.
pub const MAX_STEPS: usize = 10;
/// Smallest memory.high a step may set.
pub const MIN_MEMORY_HIGH: u64 = 4 << 20;
/// Longest webhook URL.
pub const MAX_WEBHOOK_LEN: usize = 2000;

/// Errors of team budgets.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// A field of the budget is invalid; the message says what is allowed.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("team {0:?} has no budget")]
    NoBudget(String),
    #[error("database query failed")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot price the team's usage")]
    Metering(#[from] MeteringError),
    #[error("cannot change the team's cgroup")]
    Pool(#[from] PoolError),
    #[error("budget of team {team:?} does not convert to or from JSON")]
    Stored {
        team: String,
        source: serde_json::Error,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> BudgetError {
    BudgetError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Start (unix s) of the UTC period holding `t`: 00:00 of the day, Monday 00:00 of the week,
/// the first of the month 00:00.
pub fn period_start(p: BudgetPeriod, t: i64) -> i64 {
    match p {
        BudgetPeriod::Day => calendar::day_start(t),
        // 1970-01-01 was a Thursday: days since the epoch + 3 is 0 on Mondays (mod 7).
        BudgetPeriod::Week => {
            let days = t.div_euclid(calendar::DAY);
            (days - (days + 3).rem_euclid(7)) * calendar::DAY
        }
        BudgetPeriod::Month => calendar::month_start(t),
    }
}

/// Start of the period after the one holding `t`: when usage starts again from zero.
pub fn next_reset(p: BudgetPeriod, t: i64) -> i64 {
    match p {
        BudgetPeriod::Day => period_start(p, t) + calendar::DAY,
        BudgetPeriod::Week => period_start(p, t) + 7 * calendar::DAY,
        BudgetPeriod::Month => calendar::next_month(t),
    }
}

fn period_name(p: BudgetPeriod) -> &'static str {
    match p {
        BudgetPeriod::Day => "day",
        BudgetPeriod::Week => "week",
        BudgetPeriod::Month => "month",
    }
}

/// The ladder in force: the budget's, or [`wire::default_ladder`].
pub fn ladder_of(b: &Budget) -> Vec<LadderStep> {
    b.ladder.clone().unwrap_or_else(wire::default_ladder)
}

/// Checks a budget before it is stored; the error names the field (`ladder[2].cpus`) and what
/// is allowed. `host_cpus` caps a step's `cpus`.
pub fn validate(b: &Budget, host_cpus: f64) -> Result<(), BudgetError> {
    let amounts = [
        ("money", b.money),
        ("cpu_core_hours", b.cpu_core_hours),
        ("memory_gib_hours", b.memory_gib_hours),
    ];
    if amounts.iter().all(|(_, v)| v.is_none()) {
        return Err(invalid(
            "money",
            "a budget needs at least one of money, cpu_core_hours and memory_gib_hours",
        ));
    }
    for (field, v) in amounts {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0 && v <= 1e12)
        {
            return Err(invalid(
                field,
                format!("{field} must be a number above 0 (at most 1e12), not {v}"),
            ));
        }
    }
    if let Some(ladder) = &b.ladder {
        validate_ladder(ladder, host_cpus)?;
    }
    if let Some(url) = &b.webhook {
        validate_webhook(url)?;
    }
    Ok(())
}

fn validate_ladder(ladder: &[LadderStep], host_cpus: f64) -> Result<(), BudgetError> {
    if ladder.len() > MAX_STEPS {
        return Err(invalid(
            "ladder",
            format!(
                "a ladder has at most {MAX_STEPS} steps, not {}",
                ladder.len()
            ),
        ));
    }
    let mut last = 0;
    for (i, s) in ladder.iter().enumerate() {
        let f = |name: &str| format!("ladder[{i}].{name}");
        if !(1..=1000).contains(&s.at_percent) || s.at_percent <= last {
            return Err(invalid(
                f("at_percent"),
                format!(
                    "{} must be 1 to 1000 and above the previous step's ({last}), not {}",
                    f("at_percent"),
                    s.at_percent
                ),
            ));
        }
        last = s.at_percent;
        match &s.action {
            StepAction::Warn | StepAction::Freeze => {}
            StepAction::CpuWeight { cpu_weight } if !(1..=10_000).contains(cpu_weight) => {
                return Err(invalid(
                    f("cpu_weight"),
                    format!("{} must be 1 to 10000, not {cpu_weight}", f("cpu_weight")),
                ));
            }
            StepAction::Cpus { cpus }
                if !(cpus.is_finite() && *cpus >= 0.01 && *cpus <= host_cpus) =>
            {
                return Err(invalid(
                    f("cpus"),
                    format!(
                        "{} must be 0.01 to {host_cpus} (the host's CPUs), not {cpus}",
                        f("cpus")
                    ),
                ));
            }
            StepAction::MemoryHigh { memory_high } if *memory_high < MIN_MEMORY_HIGH => {
                return Err(invalid(
                    f("memory_high"),
                    format!(
                        "{} must be at least {MIN_MEMORY_HIGH} bytes (4 MiB), not {memory_high}",
                        f("memory_high")
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn validate_webhook(url: &str) -> Result<(), BudgetError> {
    let bad = |why: &str| {
        invalid(
            "webhook",
            format!(
                "webhook must be an http:// or https:// URL with a host, at most {MAX_WEBHOOK_LEN} characters: {why}"
            ),
        )
    };
    if url.len() > MAX_WEBHOOK_LEN {
        return Err(bad("too long"));
    }
    match crate::webhook::Target::parse(url) {
        Ok(_) => Ok(()),
        Err(e) => Err(bad(&e)),
    }
}

/// What a team used in a period, from the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Used {
    /// Millionths of the rate card's currency.
    pub money_micros: i64,
    pub cpu_usec: i64,
    pub mem_byte_s: i64,
}

impl Used {
    pub fn money(&self) -> f64 {
        self.money_micros as f64 / 1e6
    }
    pub fn cpu_core_hours(&self) -> f64 {
        self.cpu_usec as f64 / 3.6e9
    }
    pub fn memory_gib_hours(&self) -> f64 {
        self.mem_byte_s as f64 / (1u64 << 30) as f64 / 3600.0
    }
}

/// The usage percent (the highest over the budgets set) and which budget it is of, e.g.
/// `0.01 CPU core-hours`.
pub fn percent(b: &Budget, used: &Used, currency: &str) -> (f64, String) {
    let mut best = (0.0, String::new());
    for (limit, u, what) in [
        (b.money, used.money(), format!(" {currency}")),
        (
            b.cpu_core_hours,
            used.cpu_core_hours(),
            " CPU core-hours".into(),
        ),
        (
            b.memory_gib_hours,
            used.memory_gib_hours(),
            " memory GiB-hours".into(),
        ),
    ] {
        if let Some(limit) = limit {
            let p = u / limit * 100.0;
            if best.1.is_empty() || p > best.0 {
                best = (p, format!("{}{what}", amount(limit)));
            }
        }
    }
    best
}

/// A budget amount for people: at most 6 decimals, no trailing zeros (`0.013653`, `120`).
fn amount(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "0" && v != 0.0 {
        format!("{v:e}")
    } else {
        s.to_owned()
    }
}

/// The highest step whose threshold `percent` reached.
pub fn target_step(ladder: &[LadderStep], percent: f64) -> Option<usize> {
    ladder
        .iter()
        .rposition(|s| f64::from(s.at_percent) <= percent)
}

/// What the steps `0..=step` put on the team together: cumulative, and of two steps of one
/// kind the tighter.
pub fn overrides(ladder: &[LadderStep], step: Option<usize>) -> Overrides {
    let mut o = Overrides::default();
    let Some(step) = step else { return o };
    for s in ladder.iter().take(step + 1) {
        let l = &mut o.limits;
        match s.action {
            StepAction::Warn => {}
            StepAction::CpuWeight { cpu_weight } => {
                l.cpu_weight = Some(l.cpu_weight.map_or(cpu_weight, |w| w.min(cpu_weight)));
            }
            StepAction::Cpus { cpus } => l.cpus = Some(l.cpus.map_or(cpus, |c| c.min(cpus))),
            StepAction::MemoryHigh { memory_high } => {
                l.memory_high = Some(l.memory_high.map_or(memory_high, |m| m.min(memory_high)));
            }
            StepAction::Freeze => o.frozen = true,
        }
    }
    o
}

/// One step's action in words, e.g. `cpus 0.5`.
pub fn describe(a: &StepAction) -> String {
    match a {
        StepAction::Warn => "warn".into(),
        StepAction::CpuWeight { cpu_weight } => format!("cpu weight {cpu_weight}"),
        StepAction::Cpus { cpus } => format!("cpus {cpus}"),
        StepAction::MemoryHigh { memory_high } => format!("memory.high {memory_high}"),
        StepAction::Freeze => "freeze".into(),
    }
}

/// The step change from `from` to `to`: `escalated` (`warn` when the new top step only
/// warns), `lifted`, or `None` when the step stays.
pub fn change(
    ladder: &[LadderStep],
    from: Option<usize>,
    to: Option<usize>,
) -> Option<&'static str> {
    if from == to {
        return None;
    }
    if to < from {
        return Some("lifted");
    }
    match to.and_then(|i| ladder.get(i)) {
        Some(LadderStep {
            action: StepAction::Warn,
            ..
        }) => Some("warn"),
        _ => Some("escalated"),
    }
}

/// `unix s` as RFC 3339 UTC.
fn rfc3339(t: i64) -> String {
    calendar::format_time(t)
}

/// The stored state of a team's budget.
#[derive(Debug, Clone, Copy, PartialEq)]
struct State {
    period_start: i64,
    step: Option<usize>,
}

fn load_budget(conn: &Connection, team: &str) -> Result<Option<Budget>, BudgetError> {
    let json: Option<String> = conn
        .query_row(
            "SELECT budget FROM team_budgets WHERE team = ?1",
            [team],
            |r| r.get(0),
        )
        .optional()?;
    json.map(|j| {
        serde_json::from_str(&j).map_err(|source| BudgetError::Stored {
            team: team.to_owned(),
            source,
        })
    })
    .transpose()
}

/// Stores a team's budget (JSON of `wire::Budget`, checked by the caller) or, with `None`,
/// removes it; the caller evaluates afterwards.
pub(crate) fn save_budget(
    conn: &Connection,
    team: &str,
    json: Option<&str>,
) -> rusqlite::Result<()> {
    match json {
        Some(json) => conn.execute(
            "INSERT INTO team_budgets (team, budget, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(team) DO UPDATE SET budget = excluded.budget, updated_at = excluded.updated_at",
            params![team, json, crate::auth::now_secs()],
        ),
        None => conn.execute("DELETE FROM team_budgets WHERE team = ?1", [team]),
    }
    .map(drop)
}

fn load_state(conn: &Connection, team: &str) -> Result<Option<State>, BudgetError> {
    Ok(conn
        .query_row(
            "SELECT period_start, step FROM team_budget_state WHERE team = ?1",
            [team],
            |r| {
                Ok(State {
                    period_start: r.get(0)?,
                    step: r
                        .get::<_, Option<i64>>(1)?
                        .and_then(|s| usize::try_from(s).ok()),
                })
            },
        )
        .optional()?)
}

/// What the team used in `[from, to)` (unix s), priced from the ledger, and the currency.
fn local_used(
    conn: &Connection,
    team: &str,
    from: i64,
    to: i64,
) -> Result<(Used, String), BudgetError> {
    let r = billing::report(
        conn,
        from,
        to,
        &Filter {
            team: Some(team.to_owned()),
            ..Filter::default()
        },
    )?;
    Ok((
        Used {
            money_micros: r.total.cost.total,
            cpu_usec: r.total.usage.cpu_usec,
            mem_byte_s: r.total.usage.mem_byte_s,
        },
        r.currency,
    ))
}

impl std::ops::AddAssign for Used {
    fn add_assign(&mut self, o: Used) {
        self.money_micros += o.money_micros;
        self.cpu_usec += o.cpu_usec;
        self.mem_byte_s += o.mem_byte_s;
    }
}

/// What the other hosts of the fleet used of a team's budget period (`ledger::Ledger`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FleetUsage {
    pub period_start: i64,
    pub used: Used,
    pub hosts: u32,
}

/// Copies one knob of the second overrides into the first.
type CopyKnob = fn(&mut Overrides, &Overrides);

/// The budget engine of one daemon (cheap to clone).
#[derive(Clone)]
pub struct Governor {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    pools: Pools,
    events: Events,
    state_dir: PathBuf,
    wake: tokio::sync::Notify,
    webhooks: Arc<crate::webhook::Queue>,
    host_cpus: f64,
    /// Other hosts' usage per budgeted team, from the shared ledger (empty without one).
    fleet: std::sync::Mutex<BTreeMap<String, FleetUsage>>,
}

impl Governor {
    pub fn new(store: Store, pools: Pools, events: Events, state_dir: &Path) -> Self {
        Governor {
            inner: Arc::new(Inner {
                store,
                pools,
                events,
                state_dir: state_dir.to_owned(),
                wake: tokio::sync::Notify::new(),
                webhooks: Arc::default(),
                host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
                fleet: std::sync::Mutex::default(),
            }),
        }
    }

    pub fn host_cpus(&self) -> f64 {
        self.inner.host_cpus
    }

    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// The team pools the governor steps (the shared ledger brings teams' ceilings in).
    pub fn pools(&self) -> &Pools {
        &self.inner.pools
    }

    /// Every budgeted team with the start of its current period.
    pub fn budget_periods(&self, conn: &Connection) -> Result<Vec<(String, i64)>, BudgetError> {
        let rows: Vec<(String, String)> = conn
            .prepare("SELECT team, budget FROM team_budgets")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let now = self.now();
        let mut out = Vec::with_capacity(rows.len());
        for (team, json) in rows {
            match serde_json::from_str::<Budget>(&json) {
                Ok(b) => out.push((team, period_start(b.period, now))),
                Err(source) => return Err(BudgetError::Stored { team, source }),
            }
        }
        Ok(out)
    }

    /// Replaces the other hosts' usage; whether it changed (then evaluate again).
    pub fn set_fleet(&self, fleet: BTreeMap<String, FleetUsage>) -> bool {
        let mut f = self.inner.fleet.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *f != fleet;
        *f = fleet;
        changed
    }

    /// What `team` used from `start` to `now`: this host's ledger plus, with a shared ledger,
    /// the other hosts' usage of the same period (also returned on its own; `None`: no shared
    /// ledger, or nothing known for that period yet), and the currency.
    fn used(
        &self,
        conn: &Connection,
        team: &str,
        start: i64,
        now: i64,
    ) -> Result<(Used, String, Option<FleetUsage>), BudgetError> {
        let (mut u, currency) = local_used(conn, team, start, now + 1)?;
        let fleet = self
            .inner
            .fleet
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(team)
            .filter(|f| f.period_start == start)
            .copied();
        if let Some(f) = fleet {
            u += f.used;
        }
        Ok((u, currency, fleet))
    }

    /// Asks for an evaluation of every team (the ledger was written). Never blocks.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Starts the evaluation task (woken by [`Governor::wake`], and once a minute so a period
    /// boundary is seen without metering) and the webhook sender; both end when `closed`
    /// turns true.
    pub fn start(&self, closed: tokio::sync::watch::Receiver<bool>) {
        let me = self.clone();
        let mut c = closed.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = c.wait_for(|c| *c) => return,
                    () = me.inner.wake.notified() => {}
                    () = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
                }
                let g = me.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let conn = g.inner.store.lock();
                    g.evaluate_all(&conn);
                })
                .await;
            }
        });
        self.inner.webhooks.start(closed);
    }

    /// The governor's clock (unix s): the wall clock, plus `<state>/.clock-offset` in test
    /// builds.
    pub fn now(&self) -> i64 {
        let now = crate::auth::now_secs();
        #[cfg(feature = "fault-injection")]
        {
            let offset = std::fs::read_to_string(self.inner.state_dir.join(CLOCK_OFFSET))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(0);
            now + offset
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = &self.inner.state_dir;
            now
        }
    }

    /// Daemon start, before [`Pools::restore`]: the overrides of every team's stored step, so
    /// the pools write them with the admin's ceilings in one go.
    pub fn restore(&self, conn: &Connection) -> Result<(), BudgetError> {
        let mut st = conn.prepare(
            "SELECT s.team, s.step, b.budget FROM team_budget_state s
             JOIN team_budgets b ON b.team = s.team WHERE s.step IS NOT NULL",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (team, step, json) in rows {
            let budget: Budget = match serde_json::from_str(&json) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(team, error = %e, "cannot read the team's budget");
                    continue;
                }
            };
            let step = usize::try_from(step).ok();
            let (o, _) = self.supported(overrides(&ladder_of(&budget), step));
            self.inner.pools.preload_overrides(&team, o);
        }
        Ok(())
    }

    /// `o` without the knobs this host lacks, and a note per knob dropped.
    fn supported(&self, mut o: Overrides) -> (Overrides, Vec<String>) {
        let p = &self.inner.pools;
        let mut notes = Vec::new();
        if o.limits.cpu_weight.is_some() && !p.can_set("cpu_weight") {
            o.limits.cpu_weight = None;
            notes.push("cpu weight not supported on this host, skipped".to_owned());
        }
        if o.limits.cpus.is_some() && !p.can_set("cpu_max") {
            o.limits.cpus = None;
            notes.push("cpus not supported on this host, skipped".to_owned());
        }
        if o.limits.memory_high.is_some() && !p.can_set("memory_high") {
            o.limits.memory_high = None;
            notes.push(
                "memory.high not supported on this host (cgroup v1 memory), skipped".to_owned(),
            );
        }
        if o.frozen && !p.can_freeze() {
            o.frozen = false;
            notes.push("freeze not supported on this host, skipped".to_owned());
        }
        (o, notes)
    }

    /// Puts `o` on the team's group. When the kernel refuses it (cgroup v1 refuses a team CPU
    /// quota below one of its containers'), the knobs are moved one at a time from what is in
    /// force towards `o`, so one refused knob never holds back the others nor lifts any; each
    /// refused one gets a note in the step's reason.
    fn apply(
        &self,
        conn: &Connection,
        team: &str,
        o: Overrides,
        notes: &mut Vec<String>,
    ) -> Result<(), BudgetError> {
        let pools = &self.inner.pools;
        match pools.set_overrides(conn, team, o.clone()) {
            Ok(()) => return Ok(()),
            Err(PoolError::Refused(_) | PoolError::Unsupported(_) | PoolError::Invalid { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut cur = pools.overrides(team);
        let knobs: [(&str, CopyKnob); 4] = [
            ("cpu weight", |c, o| {
                c.limits.cpu_weight = o.limits.cpu_weight
            }),
            ("cpus", |c, o| c.limits.cpus = o.limits.cpus),
            ("memory.high", |c, o| {
                c.limits.memory_high = o.limits.memory_high
            }),
            ("freeze", |c, o| c.frozen = o.frozen),
        ];
        for (name, set) in knobs {
            let mut cand = cur.clone();
            set(&mut cand, &o);
            if cand == cur {
                continue;
            }
            match pools.set_overrides(conn, team, cand.clone()) {
                Ok(()) => cur = cand,
                Err(
                    e @ (PoolError::Refused(_)
                    | PoolError::Unsupported(_)
                    | PoolError::Invalid { .. }),
                ) => {
                    notes.push(format!("{name} refused by the kernel, skipped: {e}"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Evaluates every team with a budget or a step in force; failures are logged per team.
    pub fn evaluate_all(&self, conn: &Connection) {
        let teams: Result<Vec<String>, rusqlite::Error> = (|| {
            let mut st = conn.prepare(
                "SELECT team FROM team_budgets UNION SELECT team FROM team_budget_state",
            )?;
            st.query_map([], |r| r.get(0))?.collect()
        })();
        match teams {
            Ok(teams) => {
                for team in teams {
                    if let Err(e) = self.evaluate(conn, &team, None) {
                        tracing::warn!(team, error = %e, "cannot evaluate the team's budget");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the budgeted teams"),
        }
    }

    /// Evaluates one team: when its target step or period changed, puts the new overrides on
    /// its group, records the change and announces it. `actor`: the admin whose change of the
    /// budget caused this evaluation (`None`: usage, `corral`). Returns the change, if any.
    pub fn evaluate(
        &self,
        conn: &Connection,
        team: &str,
        actor: Option<&Actor>,
    ) -> Result<Option<BudgetEvent>, BudgetError> {
        let now = self.now();
        let budget = load_budget(conn, team)?;
        let state = load_state(conn, team)?;
        let (ladder, period, start, pct, of) = match &budget {
            Some(b) => {
                let start = period_start(b.period, now);
                let (u, currency, _) = self.used(conn, team, start, now)?;
                let (pct, of) = percent(b, &u, &currency);
                (ladder_of(b), Some(b.period), start, pct, of)
            }
            None => (
                Vec::new(),
                None,
                state.map_or(0, |s| s.period_start),
                0.0,
                String::new(),
            ),
        };
        let target = if budget.is_some() {
            target_step(&ladder, pct)
        } else {
            None
        };
        let from = state.and_then(|s| s.step);
        let action = change(&ladder, from, target);
        let period_moved = state.is_none_or(|s| s.period_start != start);
        if action.is_none() && !period_moved && budget.is_some() {
            return Ok(None);
        }
        let (o, mut notes) = self.supported(overrides(&ladder, target));
        // The kernel first: a recorded step is always one that landed.
        self.apply(conn, team, o, &mut notes)?;
        let ts = crate::metering::sampler::wall_ms();
        let reason = reason(
            &ladder,
            target,
            action,
            pct,
            &of,
            period,
            period_moved && state.is_some(),
            actor,
            &notes,
        );
        let tx = conn.unchecked_transaction()?;
        if budget.is_some() {
            tx.execute(
                "INSERT INTO team_budget_state (team, period_start, step, percent, evaluated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(team) DO UPDATE SET period_start = excluded.period_start,
                   step = excluded.step, percent = excluded.percent,
                   evaluated_at = excluded.evaluated_at",
                params![team, start, target.map(|s| s as i64), pct, now],
            )?;
        } else {
            tx.execute("DELETE FROM team_budget_state WHERE team = ?1", [team])?;
        }
        let Some(action) = action else {
            tx.commit()?;
            return Ok(None);
        };
        let who = actor.map_or("corral", |a| a.name.as_str());
        tx.execute(
            "INSERT INTO team_budget_steps (team, ts_ms, action, from_step, to_step, percent, reason, actor)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![team, ts, action, from.map(|s| s as i64), target.map(|s| s as i64), pct, reason, who],
        )?;
        let event = BudgetEvent {
            team: team.to_owned(),
            action: action.to_owned(),
            from_step: from,
            to_step: target,
            percent: pct,
            reason: reason.clone(),
            ts,
        };
        let row = match actor {
            Some(a) => audit::Event::new(a, "team.budget.step"),
            None => audit::Event::anonymous("corral", "team.budget.step"),
        };
        audit::insert(
            &tx,
            &row.target(format!("team:{team}"))
                .after(json!(event))
                .detail(reason),
        )?;
        tx.commit()?;
        tracing::info!(team, action, from = ?from, to = ?target, percent = pct, "budget step");
        self.inner.events.budget(event.clone());
        if let Some(url) = budget.as_ref().and_then(|b| b.webhook.clone()) {
            self.inner.webhooks.push(url, event.clone());
        }
        Ok(Some(event))
    }

    /// The team's budget and where it stands now (`None`: no budget).
    pub fn get(&self, conn: &Connection, team: &str) -> Result<Option<TeamBudget>, BudgetError> {
        let Some(budget) = load_budget(conn, team)? else {
            return Ok(None);
        };
        let now = self.now();
        let start = period_start(budget.period, now);
        let (u, currency, fleet) = self.used(conn, team, start, now)?;
        let (pct, _) = percent(&budget, &u, &currency);
        let state = load_state(conn, team)?;
        let step = state
            .filter(|s| s.period_start == start)
            .and_then(|s| s.step);
        let ladder = ladder_of(&budget);
        let o = self.inner.pools.overrides(team);
        Ok(Some(TeamBudget {
            period_start: rfc3339(start),
            next_reset: rfc3339(next_reset(budget.period, now)),
            used_money: u.money(),
            currency,
            used_cpu_core_hours: u.cpu_core_hours(),
            used_memory_gib_hours: u.memory_gib_hours(),
            percent: pct,
            fleet: fleet.map(|f| wire::FleetShare {
                hosts: f.hosts,
                used_money: f.used.money(),
                used_cpu_core_hours: f.used.cpu_core_hours(),
                used_memory_gib_hours: f.used.memory_gib_hours(),
            }),
            step,
            enforced: o.limits,
            frozen: o.frozen,
            evaluated_at: rfc3339(now),
            ladder,
            budget,
        }))
    }

    /// Stores `budget` for `team` (validated; audited `team.budget` in the same transaction),
    /// then evaluates it at once.
    pub fn put(
        &self,
        conn: &Connection,
        team: &str,
        budget: &Budget,
        actor: &Actor,
    ) -> Result<TeamBudget, BudgetError> {
        validate(budget, self.inner.host_cpus)?;
        let before = load_budget(conn, team)?;
        let json = serde_json::to_string(budget).map_err(|source| BudgetError::Stored {
            team: team.to_owned(),
            source,
        })?;
        let tx = conn.unchecked_transaction()?;
        save_budget(&tx, team, Some(&json))?;
        let mut row = audit::Event::new(actor, "team.budget")
            .target(format!("team:{team}"))
            .after(json!(budget));
        if let Some(b) = before {
            row = row.before(json!(b));
        }
        audit::insert(&tx, &row)?;
        tx.commit()?;
        self.evaluate(conn, team, Some(actor))?;
        self.get(conn, team)?
            .ok_or_else(|| BudgetError::NoBudget(team.to_owned()))
    }

    /// Removes the team's budget (audited) and lifts every step in force.
    pub fn clear(&self, conn: &Connection, team: &str, actor: &Actor) -> Result<(), BudgetError> {
        let Some(before) = load_budget(conn, team)? else {
            return Err(BudgetError::NoBudget(team.to_owned()));
        };
        // Lifted first, with the ladder still known for the reason.
        let tx = conn.unchecked_transaction()?;
        save_budget(&tx, team, None)?;
        audit::insert(
            &tx,
            &audit::Event::new(actor, "team.budget")
                .target(format!("team:{team}"))
                .before(json!(before))
                .detail("budget cleared"),
        )?;
        tx.commit()?;
        self.evaluate(conn, team, Some(actor))?;
        Ok(())
    }

    /// The team's budget timeline, oldest first (the newest `limit`).
    pub fn steps(
        conn: &Connection,
        team: &str,
        limit: usize,
    ) -> Result<Vec<BudgetEvent>, BudgetError> {
        let mut st = conn.prepare(
            "SELECT team, action, from_step, to_step, percent, reason, ts_ms FROM
               (SELECT * FROM team_budget_steps WHERE team = ?1 ORDER BY id DESC LIMIT ?2)
             ORDER BY id",
        )?;
        let step = |v: Option<i64>| v.and_then(|s| usize::try_from(s).ok());
        let rows = st
            .query_map(params![team, limit as i64], |r| {
                Ok(BudgetEvent {
                    team: r.get(0)?,
                    action: r.get(1)?,
                    from_step: step(r.get(2)?),
                    to_step: step(r.get(3)?),
                    percent: r.get(4)?,
                    reason: r.get(5)?,
                    ts: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// One line saying why a step changed, e.g. "112 % of 0.01 CPU core-hours this day: cpus 0.5".
#[allow(clippy::too_many_arguments)]
fn reason(
    ladder: &[LadderStep],
    target: Option<usize>,
    action: Option<&str>,
    pct: f64,
    of: &str,
    period: Option<BudgetPeriod>,
    reset: bool,
    actor: Option<&Actor>,
    notes: &[String],
) -> String {
    let mut r = match period {
        Some(p) => format!("{pct:.0} % of {of} this {}", period_name(p)),
        None => "budget cleared".to_owned(),
    };
    match target.and_then(|i| ladder.get(i)) {
        Some(s) if action != Some("lifted") => {
            r.push_str(&format!(": {}", describe(&s.action)));
        }
        Some(s) => r.push_str(&format!(
            ": lifted to {} % ({})",
            s.at_percent,
            describe(&s.action)
        )),
        None if action == Some("lifted") => r.push_str(": every step lifted"),
        None => {}
    }
    if reset {
        r.push_str(" (new period)");
    }
    if let Some(a) = actor {
        r.push_str(&format!(" (budget changed by {})", a.name));
    }
    for n in notes {
        r.push_str(&format!("; {n}"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Limits;

    fn t(y: i64, m: u32, d: u32, h: i64) -> i64 {
        calendar::days_from_civil(y, m, d) * calendar::DAY + h * 3600
    }

    #[test]
    fn periods() {
        // Thursday 2026-12-03 12:00.
        let now = t(2026, 12, 3, 12);
        assert_eq!(period_start(BudgetPeriod::Day, now), t(2026, 12, 3, 0));
        assert_eq!(next_reset(BudgetPeriod::Day, now), t(2026, 12, 4, 0));
        assert_eq!(period_start(BudgetPeriod::Week, now), t(2026, 11, 30, 0));
        assert_eq!(next_reset(BudgetPeriod::Week, now), t(2026, 12, 7, 0));
        assert_eq!(period_start(BudgetPeriod::Month, now), t(2026, 12, 1, 0));
        assert_eq!(next_reset(BudgetPeriod::Month, now), t(2027, 1, 1, 0));
        // A Monday at 00:00 starts its own week; the Sunday before belongs to the last.
        assert_eq!(
            period_start(BudgetPeriod::Week, t(2026, 11, 30, 0)),
            t(2026, 11, 30, 0)
        );
        assert_eq!(
            period_start(BudgetPeriod::Week, t(2026, 11, 29, 23)),
            t(2026, 11, 23, 0)
        );
        // Leap February; a week over a year's end.
        assert_eq!(
            next_reset(BudgetPeriod::Month, t(2028, 2, 29, 23)),
            t(2028, 3, 1, 0)
        );
        assert_eq!(
            period_start(BudgetPeriod::Month, t(2028, 2, 29, 23)),
            t(2028, 2, 1, 0)
        );
        assert_eq!(
            period_start(BudgetPeriod::Week, t(2027, 1, 1, 5)),
            t(2026, 12, 28, 0)
        );
        assert_eq!(
            next_reset(BudgetPeriod::Day, t(2026, 12, 31, 23)),
            t(2027, 1, 1, 0)
        );
        // Before the epoch too.
        assert_eq!(
            period_start(BudgetPeriod::Week, t(1969, 12, 31, 1)),
            t(1969, 12, 29, 0)
        );
    }

    fn ok_budget() -> Budget {
        Budget {
            period: BudgetPeriod::Day,
            cpu_core_hours: Some(1.0),
            ..Budget::default()
        }
    }

    fn field_of(b: &Budget) -> (String, String) {
        match validate(b, 2.0) {
            Err(BudgetError::Invalid { field, message }) => (field, message),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        validate(&ok_budget(), 2.0).unwrap();
        assert_eq!(field_of(&Budget::default()).0, "money");
        let (f, m) = field_of(&Budget {
            money: Some(-1.0),
            ..Budget::default()
        });
        assert_eq!(f, "money");
        assert!(m.contains("above 0"), "{m}");
        assert_eq!(
            field_of(&Budget {
                memory_gib_hours: Some(f64::NAN),
                ..ok_budget()
            })
            .0,
            "memory_gib_hours"
        );
        let step = |at, action| LadderStep {
            at_percent: at,
            action,
        };
        let with = |ladder| Budget {
            ladder: Some(ladder),
            ..ok_budget()
        };
        let (f, m) = field_of(&with(vec![
            step(80, StepAction::Warn),
            step(100, StepAction::CpuWeight { cpu_weight: 10 }),
            step(110, StepAction::Cpus { cpus: 3.0 }),
        ]));
        assert_eq!(f, "ladder[2].cpus");
        assert!(m.contains("0.01 to 2"), "{m}");
        assert_eq!(
            field_of(&with(vec![
                step(80, StepAction::Warn),
                step(80, StepAction::Freeze)
            ]))
            .0,
            "ladder[1].at_percent"
        );
        assert_eq!(
            field_of(&with(vec![step(0, StepAction::Warn)])).0,
            "ladder[0].at_percent"
        );
        assert_eq!(
            field_of(&with(vec![step(1001, StepAction::Warn)])).0,
            "ladder[0].at_percent"
        );
        assert_eq!(
            field_of(&with(vec![step(
                5,
                StepAction::CpuWeight { cpu_weight: 0 }
            )]))
            .0,
            "ladder[0].cpu_weight"
        );
        assert_eq!(
            field_of(&with(vec![step(
                5,
                StepAction::MemoryHigh {
                    memory_high: 1 << 20
                }
            )]))
            .0,
            "ladder[0].memory_high"
        );
        assert_eq!(
            field_of(&with((1..=11).map(|i| step(i, StepAction::Warn)).collect())).0,
            "ladder"
        );
        validate(&with(Vec::new()), 2.0).unwrap();
        for bad in [
            "ftp://x/",
            "http://",
            "http:///a",
            "example.com/hook",
            &format!("http://a/{}", "x".repeat(2000)),
        ] {
            let (f, _) = field_of(&Budget {
                webhook: Some(bad.to_owned()),
                ..ok_budget()
            });
            assert_eq!(f, "webhook", "{bad}");
        }
        validate(
            &Budget {
                webhook: Some("https://hooks.example.com:8443/budget?x=1".into()),
                ..ok_budget()
            },
            2.0,
        )
        .unwrap();
    }

    #[test]
    fn percent_target_and_overrides() {
        assert_eq!(amount(0.013653283070026464), "0.013653");
        assert_eq!(amount(120.0), "120");
        assert_eq!(amount(1e-9), "1e-9");
        let b = Budget {
            money: Some(10.0),
            cpu_core_hours: Some(0.01),
            ..ok_budget()
        };
        let used = Used {
            money_micros: 5_000_000,
            cpu_usec: 40_320_000, // 0.0112 core-hours
            mem_byte_s: 0,
        };
        let (p, of) = percent(&b, &used, "EUR");
        assert!((p - 112.0).abs() < 1e-9, "{p}");
        assert_eq!(of, "0.01 CPU core-hours");
        let ladder = wire::default_ladder();
        assert_eq!(target_step(&ladder, 0.0), None);
        assert_eq!(target_step(&ladder, 79.9), None);
        assert_eq!(target_step(&ladder, 80.0), Some(0));
        assert_eq!(target_step(&ladder, p), Some(2));
        assert_eq!(target_step(&ladder, 1000.0), Some(3));
        assert_eq!(target_step(&[], 1000.0), None);
        assert_eq!(overrides(&ladder, None), Overrides::default());
        assert_eq!(overrides(&ladder, Some(0)), Overrides::default());
        let o = overrides(&ladder, Some(2));
        assert_eq!(o.limits.cpu_weight, Some(10));
        assert_eq!(o.limits.cpus, Some(0.5));
        assert_eq!(o.limits.memory_high, None);
        // Two steps of one kind: the tighter wins, whatever the order.
        let two = vec![
            LadderStep {
                at_percent: 50,
                action: StepAction::Cpus { cpus: 0.25 },
            },
            LadderStep {
                at_percent: 90,
                action: StepAction::Cpus { cpus: 1.0 },
            },
            LadderStep {
                at_percent: 95,
                action: StepAction::Freeze,
            },
        ];
        assert_eq!(overrides(&two, Some(1)).limits.cpus, Some(0.25));
        assert!(overrides(&two, Some(2)).frozen);
        assert_eq!(change(&ladder, None, Some(0)), Some("warn"));
        assert_eq!(change(&ladder, Some(0), Some(1)), Some("escalated"));
        assert_eq!(change(&ladder, None, Some(2)), Some("escalated"));
        assert_eq!(change(&ladder, Some(3), None), Some("lifted"));
        assert_eq!(change(&ladder, Some(3), Some(1)), Some("lifted"));
        assert_eq!(change(&ladder, Some(1), Some(1)), None);
    }

    #[test]
    fn tighter_of_admin_and_step() {
        let admin = Limits {
            cpus: Some(0.25),
            cpu_weight: Some(200),
            memory_max: Some(1 << 30),
            ..Limits::default()
        };
        let step = Limits {
            cpus: Some(0.5),
            cpu_weight: Some(10),
            memory_high: Some(64 << 20),
            ..Limits::default()
        };
        let t = crate::teams::tighter(&admin, &step);
        assert_eq!(
            t.cpus,
            Some(0.25),
            "a step never loosens the admin's ceiling"
        );
        assert_eq!(t.cpu_weight, Some(10));
        assert_eq!(t.memory_high, Some(64 << 20));
        assert_eq!(t.memory_max, Some(1 << 30));
        assert_eq!(crate::teams::tighter(&admin, &Limits::default()), admin);
    }
}
