//! `corral team update NAME [--cpus N|max] …` and `corral team inspect NAME`: the team pool's
//! ceilings (`PATCH /api/v1/teams/{name}/limits`) and its state (`GET /api/v1/teams/{name}`).

use clap::Args;
use wire::{LimitsPatch, Setting};

use super::containers::parse_size;

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

fn or_max<T>(s: &str, f: impl Fn(&str) -> Result<T, String>) -> Result<Setting<T>, String> {
    if s.eq_ignore_ascii_case("max") {
        Ok(Setting::Clear)
    } else {
        f(s).map(Setting::Set)
    }
}

fn cpus_or_max(s: &str) -> Result<Setting<f64>, String> {
    or_max(s, |t| {
        t.parse::<f64>()
            .map_err(|_| format!("{t:?} is not a number of CPUs, e.g. 1.5, or max"))
    })
}

fn count_or_max(s: &str) -> Result<Setting<u64>, String> {
    or_max(s, |t| {
        t.parse::<u64>()
            .map_err(|_| format!("{t:?} is not a whole number or max"))
    })
}

fn size_or_max(s: &str) -> Result<Setting<u64>, String> {
    or_max(s, parse_size)
}

fn list_or_max(s: &str) -> Result<Setting<String>, String> {
    or_max(s, |t| Ok(t.to_owned()))
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
}
