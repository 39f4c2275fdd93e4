//! `corral team update NAME [--cpus N|max] …` and `corral team inspect NAME`: the team pool's
//! ceilings (`PATCH /api/v1/teams/{name}/limits`) and its state (`GET /api/v1/teams/{name}`).

use clap::Args;
use wire::{Budget, BudgetPeriod, LadderStep, LimitsPatch, Setting, StepAction, TeamBudget};

use super::containers::parse_size;
use super::limits::{count_or_max, cpus_or_max, list_or_max, size_or_max};

/// The team's limits; every flag takes `max` to remove that limit. Unnamed limits stay.
#[derive(Debug, Clone, Args, Default)]
pub struct TeamLimitArgs {
    /// CPUs for the whole team, e.g. 1.5, or max.
    #[arg(long, value_parser = cpus_or_max)]
    pub cpus: Option<Setting<f64>>,
    /// Relative CPU weight 1..10000 (max: the default, 100).
    #[arg(long, value_parser = count_or_max)]
    pub cpu_weight: Option<Setting<u64>>,
    /// CPU list, e.g. 0-1,3 (max: the parent's).
    #[arg(long, value_parser = list_or_max)]
    pub cpuset: Option<Setting<String>>,
    /// Memory node list, e.g. 0 (max: the parent's).
    #[arg(long, value_parser = list_or_max)]
    pub cpuset_mems: Option<Setting<String>>,
    /// Hard memory limit for the whole team, e.g. 2G, or max.
    #[arg(short, long, value_parser = size_or_max)]
    pub memory: Option<Setting<u64>>,
    /// Memory throttling threshold (cgroup v2).
    #[arg(long, value_parser = size_or_max)]
    pub memory_high: Option<Setting<u64>>,
    /// Best-effort memory protection (max: none).
    #[arg(long, value_parser = size_or_max)]
    pub memory_low: Option<Setting<u64>>,
    /// Hard memory protection for the whole team (memory.min; cgroup v2 only; max: none).
    #[arg(long, value_parser = size_or_max)]
    pub memory_min: Option<Setting<u64>>,
    /// Swap on top of the memory limit (not Docker's memory+swap total).
    #[arg(long, value_parser = size_or_max)]
    pub swap: Option<Setting<u64>>,
    /// Most processes and threads of the whole team.
    #[arg(long, value_parser = count_or_max)]
    pub pids: Option<Setting<u64>>,
    /// Relative IO weight 1..10000 (max: the default, 100).
    #[arg(long, value_parser = count_or_max)]
    pub io_weight: Option<Setting<u64>>,
    /// Per-device IO limit `MAJ:MIN rbps=N wbps=N riops=N wiops=N` (repeat per device; the
    /// devices given replace the team's), or max to remove every device limit.
    #[arg(long)]
    pub io_max: Vec<String>,
}

impl TeamLimitArgs {
    pub fn to_patch(&self) -> LimitsPatch {
        let keep = |o: &Option<Setting<u64>>| o.clone().unwrap_or_default();
        LimitsPatch {
            cpus: self.cpus.clone().unwrap_or_default(),
            cpuset_cpus: self.cpuset.clone().unwrap_or_default(),
            cpuset_mems: self.cpuset_mems.clone().unwrap_or_default(),
            cpu_weight: keep(&self.cpu_weight),
            memory_max: keep(&self.memory),
            memory_high: keep(&self.memory_high),
            memory_low: keep(&self.memory_low),
            memory_min: keep(&self.memory_min),
            swap_max: keep(&self.swap),
            pids_max: keep(&self.pids),
            io_weight: keep(&self.io_weight),
            io_max: match self.io_max.as_slice() {
                [] => Setting::Keep,
                [one] if one.eq_ignore_ascii_case("max") => Setting::Clear,
                many => Setting::Set(many.to_vec()),
            },
        }
    }
}

/// `corral team budget NAME …`: without flags the state; `--period` sets; `--clear` removes.
#[derive(Debug, Clone, Args, Default)]
pub struct BudgetArgs {
    /// The period the budget counts over (UTC; resets at its boundary): day, week or month.
    #[arg(long, value_parser = parse_period)]
    pub period: Option<BudgetPeriod>,
    /// Budget in the rate card's currency.
    #[arg(long)]
    pub money: Option<f64>,
    /// Budget in CPU core-hours used.
    #[arg(long)]
    pub cpu_hours: Option<f64>,
    /// Budget in memory GiB-hours used.
    #[arg(long)]
    pub memory_gib_hours: Option<f64>,
    /// The ladder, `PERCENT:ACTION[=VALUE]` comma-separated, e.g.
    /// `80:warn,100:cpu-weight=10,110:cpus=0.5,125:memory-high=256M,150:freeze`; `none` for no
    /// steps. Default: 80 warn, 100 cpu-weight 10, 110 cpus 0.5, 125 memory-high 256M.
    #[arg(long, value_parser = parse_ladder_arg)]
    pub ladder: Option<LadderArg>,
    /// URL that gets a POST of each step change as JSON.
    #[arg(long)]
    pub webhook: Option<String>,
    /// Remove the budget (every step in force is lifted).
    #[arg(long, conflicts_with_all = ["period", "money", "cpu_hours", "memory_gib_hours", "ladder", "webhook"])]
    pub clear: bool,
    /// Print the budget's timeline instead: every step change with when, why and who.
    #[arg(long, conflicts_with_all = ["period", "money", "cpu_hours", "memory_gib_hours", "ladder", "webhook", "clear"])]
    pub steps: bool,
    /// Print the raw state (or timeline) as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_period(s: &str) -> Result<BudgetPeriod, String> {
    match s {
        "day" => Ok(BudgetPeriod::Day),
        "week" => Ok(BudgetPeriod::Week),
        "month" => Ok(BudgetPeriod::Month),
        _ => Err(format!("{s:?} is not a period: day, week or month")),
    }
}

/// A parsed `--ladder` (a newtype: clap reads a bare `Vec` as repeated values).
#[derive(Debug, Clone, PartialEq)]
pub struct LadderArg(pub Vec<LadderStep>);

fn parse_ladder_arg(s: &str) -> Result<LadderArg, String> {
    parse_ladder(s).map(LadderArg)
}

/// Parses a ladder spec (see [`BudgetArgs::ladder`]); the daemon validates the values.
pub fn parse_ladder(s: &str) -> Result<Vec<LadderStep>, String> {
    if s.trim().is_empty() || s == "none" {
        return Ok(Vec::new());
    }
    s.split(',').map(|part| parse_step(part.trim())).collect()
}

fn parse_step(part: &str) -> Result<LadderStep, String> {
    let (pct, action) = part
        .split_once(':')
        .ok_or_else(|| format!("{part:?} is not PERCENT:ACTION[=VALUE], e.g. 110:cpus=0.5"))?;
    let at_percent = pct
        .trim_end_matches('%')
        .parse::<u32>()
        .map_err(|_| format!("{pct:?} is not a whole percent"))?;
    let (name, value) = match action.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (action, None),
    };
    let need = |what: &str| {
        value.ok_or_else(|| format!("{name} needs a value: {at_percent}:{name}={what}"))
    };
    let action = match name {
        "warn" => StepAction::Warn,
        "freeze" => StepAction::Freeze,
        "cpu-weight" => StepAction::CpuWeight {
            cpu_weight: need("10")?.parse().map_err(|_| {
                format!("cpu-weight {:?} is not a whole number", value.unwrap_or(""))
            })?,
        },
        "cpus" => StepAction::Cpus {
            cpus: need("0.5")?
                .parse()
                .map_err(|_| format!("cpus {:?} is not a number", value.unwrap_or("")))?,
        },
        "memory-high" => StepAction::MemoryHigh {
            memory_high: parse_size(need("256M")?)?,
        },
        other => {
            return Err(format!(
                "{other:?} is not a step: warn, cpu-weight=N, cpus=N, memory-high=SIZE or freeze"
            ));
        }
    };
    Ok(LadderStep { at_percent, action })
}

impl BudgetArgs {
    /// The budget to set, or `None` when no flag asks for a change (show the state).
    pub fn to_budget(&self) -> anyhow::Result<Option<Budget>> {
        let any = self.money.is_some()
            || self.cpu_hours.is_some()
            || self.memory_gib_hours.is_some()
            || self.ladder.is_some()
            || self.webhook.is_some();
        let Some(period) = self.period else {
            if any {
                anyhow::bail!("setting a budget needs --period day|week|month");
            }
            return Ok(None);
        };
        Ok(Some(Budget {
            period,
            money: self.money,
            cpu_core_hours: self.cpu_hours,
            memory_gib_hours: self.memory_gib_hours,
            ladder: self.ladder.clone().map(|l| l.0),
            webhook: self.webhook.clone(),
        }))
    }
}

/// A step in words, e.g. `110 %: cpus 0.5`.
fn step_text(s: &LadderStep) -> String {
    let a = match &s.action {
        StepAction::Warn => "warn".to_owned(),
        StepAction::CpuWeight { cpu_weight } => format!("cpu-weight {cpu_weight}"),
        StepAction::Cpus { cpus } => format!("cpus {cpus}"),
        StepAction::MemoryHigh { memory_high } => {
            format!("memory-high {}", size_text(*memory_high))
        }
        StepAction::Freeze => "freeze".to_owned(),
    };
    format!("{} %: {a}", s.at_percent)
}

fn size_text(b: u64) -> String {
    match b {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}G", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b => format!("{b}"),
    }
}

/// `corral team budget NAME --steps`: the timeline for people, one change a line.
pub fn steps_text(steps: &[wire::BudgetEvent]) -> String {
    if steps.is_empty() {
        return "no step changes yet\n".to_owned();
    }
    let step = |s: Option<usize>| s.map_or_else(|| "none".to_owned(), |i| i.to_string());
    steps
        .iter()
        .map(|e| {
            format!(
                "{}  {:<9}  step {} -> {}  {:.1} %  {}\n",
                crate::metering::calendar::format_time(e.ts.div_euclid(1000)),
                e.action,
                step(e.from_step),
                step(e.to_step),
                e.percent,
                e.reason
            )
        })
        .collect()
}

/// `corral team budget NAME`: the state for people.
pub fn budget_text(team: &str, b: &TeamBudget) -> String {
    let period = match b.budget.period {
        BudgetPeriod::Day => "day",
        BudgetPeriod::Week => "week",
        BudgetPeriod::Month => "month",
    };
    let mut out = format!("team {team}: budget per {period} (UTC)\n");
    let mut line = |what: &str, used: String, of: Option<f64>, unit: &str| {
        if let Some(of) = of {
            out.push_str(&format!("  {what:<16} {used} of {of} {unit}\n"));
        }
    };
    line(
        "money",
        format!("{:.2}", b.used_money),
        b.budget.money,
        &b.currency,
    );
    line(
        "cpu",
        format!("{:.4}", b.used_cpu_core_hours),
        b.budget.cpu_core_hours,
        "core-hours",
    );
    line(
        "memory",
        format!("{:.4}", b.used_memory_gib_hours),
        b.budget.memory_gib_hours,
        "GiB-hours",
    );
    out.push_str(&format!("  {:<16} {:.1} %\n", "used", b.percent));
    if let Some(f) = &b.fleet {
        out.push_str(&format!(
            "  {:<16} {:.2} {}, {:.4} core-hours, {:.4} GiB-hours on {} other host(s)\n",
            "of which",
            f.used_money,
            b.currency,
            f.used_cpu_core_hours,
            f.used_memory_gib_hours,
            f.hosts
        ));
    }
    let step = match b.step.and_then(|i| b.ladder.get(i).map(|s| (i, s))) {
        Some((i, s)) => format!("step {i} ({})", step_text(s)),
        None => "none".to_owned(),
    };
    out.push_str(&format!("  {:<16} {step}\n", "in force"));
    let mut enforced = Vec::new();
    if let Some(w) = b.enforced.cpu_weight {
        enforced.push(format!("cpu-weight {w}"));
    }
    if let Some(c) = b.enforced.cpus {
        enforced.push(format!("cpus {c}"));
    }
    if let Some(m) = b.enforced.memory_high {
        enforced.push(format!("memory-high {}", size_text(m)));
    }
    if b.frozen {
        enforced.push("frozen".into());
    }
    if !enforced.is_empty() {
        out.push_str(&format!("  {:<16} {}\n", "enforced", enforced.join(", ")));
    }
    out.push_str(&format!("  {:<16} {}\n", "period start", b.period_start));
    out.push_str(&format!("  {:<16} {}\n", "next reset", b.next_reset));
    let ladder: Vec<String> = b.ladder.iter().map(step_text).collect();
    out.push_str(&format!(
        "  {:<16} {}\n",
        "ladder",
        if ladder.is_empty() {
            "none".to_owned()
        } else {
            ladder.join(", ")
        }
    ));
    if let Some(w) = &b.budget.webhook {
        out.push_str(&format!("  {:<16} {w}\n", "webhook"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_to_patch() {
        let a = TeamLimitArgs {
            cpus: Some(cpus_or_max("1.5").unwrap()),
            memory: Some(size_or_max("max").unwrap()),
            pids: Some(count_or_max("100").unwrap()),
            io_max: vec!["max".into()],
            ..TeamLimitArgs::default()
        };
        let p = a.to_patch();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"cpus": 1.5, "memory_max": null, "pids_max": 100, "io_max": null})
        );
        assert!(cpus_or_max("lots").is_err());
        assert_eq!(size_or_max("1G").unwrap(), Setting::Set(1 << 30));
    }

    #[test]
    fn ladder_spec() {
        let l =
            parse_ladder("80:warn,100:cpu-weight=10,110:cpus=0.5,125:memory-high=256M,150:freeze")
                .unwrap();
        assert_eq!(l.len(), 5);
        assert_eq!(l[1].action, StepAction::CpuWeight { cpu_weight: 10 });
        assert_eq!(l[2].action, StepAction::Cpus { cpus: 0.5 });
        assert_eq!(
            l[3].action,
            StepAction::MemoryHigh {
                memory_high: 256 << 20
            }
        );
        assert_eq!(l[4].at_percent, 150);
        assert!(parse_ladder("none").unwrap().is_empty());
        for bad in ["80", "x:warn", "80:cpus", "80:nap", "80:cpus=lots"] {
            assert!(parse_ladder(bad).is_err(), "{bad}");
        }
    }
}
