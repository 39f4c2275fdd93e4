//! The runtime's view of the cgroup engine: the few operations a container needs, behind
//! [`CgroupDriver`] so the manager does not depend on the engine's internals.

use std::path::PathBuf;

/// What the container manager asks of the cgroup engine. Paths are (team, container).
pub trait CgroupDriver: Send + Sync + 'static {
    /// `v2`, `v1` or `hybrid`.
    fn mode(&self) -> String;
    /// Whether the host is pure cgroup v2 (the container then gets a read-only cgroup2 mount).
    fn pure_v2(&self) -> bool;
    /// Creates the container's cgroup with `limits` applied (all-or-nothing).
    fn create(&self, team: &str, name: &str, limits: &wire::Limits) -> Result<(), CgroupFailure>;
    /// The `cgroup.procs` files a process is written into to join the container's cgroup.
    fn procs_files(&self, team: &str, name: &str) -> Vec<PathBuf>;
    /// The processes in the container's cgroup, from every hierarchy it has (host PIDs).
    fn procs(&self, team: &str, name: &str) -> Result<Vec<i32>, CgroupFailure>;
    /// Takes the group from the limits `old` to `new` (both complete): only the changed knobs
    /// are written, and a limit `new` no longer has goes back to the kernel default (see
    /// [`diff`]). On error the old limits stay in force.
    fn update(
        &self,
        team: &str,
        name: &str,
        old: &wire::Limits,
        new: &wire::Limits,
    ) -> Result<(), CgroupFailure>;
    /// Limits as the kernel reports them.
    fn limits(&self, team: &str, name: &str) -> Result<wire::Limits, CgroupFailure>;
    fn freeze(&self, team: &str, name: &str) -> Result<(), CgroupFailure>;
    fn thaw(&self, team: &str, name: &str) -> Result<(), CgroupFailure>;
    /// SIGKILLs every process in the cgroup.
    fn kill(&self, team: &str, name: &str) -> Result<(), CgroupFailure>;
    /// Removes the container's cgroup (and the team's when it is empty).
    fn remove(&self, team: &str, name: &str) -> Result<(), CgroupFailure>;
    /// Whether any of the container's cgroup directories exist.
    fn exists(&self, team: &str, name: &str) -> bool;
    /// The engine's handle on the container's group (for metering), if the driver is backed
    /// by the engine and the group exists.
    fn engine_group(&self, _team: &str, _name: &str) -> Option<crate::cgroup::Group> {
        None
    }
}

/// A cgroup operation that failed: `field` names the limit when the kernel or the validation
/// rejected a value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CgroupFailure {
    pub field: Option<String>,
    pub message: String,
}

impl CgroupFailure {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}

/// The driver backed by the cgroup engine (`crate::cgroup`). Containers live at
/// `<subtree>/<team>/<name>` in every hierarchy.
pub struct EngineCgroups {
    cg: std::sync::Arc<crate::cgroup::Cgroups>,
}

use crate::cgroup::{
    CgroupError, CgroupMode, Controller, CpuMax, GroupPath, IoMax, LimitsUpdate, Max,
};

pub fn failure(e: CgroupError) -> CgroupFailure {
    let field = match &e {
        CgroupError::Invalid { field, .. } | CgroupError::Unsupported { field, .. } => Some(*field),
        // cgroup v1 refuses a CFS quota above the parent's (the team's pool).
        CgroupError::Write { path, source, .. }
            if source.raw_os_error() == Some(libc::EINVAL)
                && path.file_name().is_some_and(|f| f == "cpu.cfs_quota_us") =>
        {
            Some("cpus")
        }
        _ => None,
    };
    let message = {
        let mut m = e.to_string();
        if field == Some("cpus") && matches!(e, CgroupError::Write { .. }) {
            m.push_str(" (cgroup v1 allows no CPU quota above the team's ceiling)");
        }
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            m.push_str(": ");
            m.push_str(&s.to_string());
            src = s.source();
        }
        m
    };
    match field {
        Some(f) => CgroupFailure::field(
            match f {
                "cpu_max" => "cpus",
                other => other,
            },
            message,
        ),
        None => CgroupFailure::new(message),
    }
}

impl EngineCgroups {
    pub fn new(cg: std::sync::Arc<crate::cgroup::Cgroups>) -> Self {
        Self { cg }
    }

    fn path(team: &str, name: &str) -> Result<GroupPath, CgroupFailure> {
        GroupPath::new([team, name]).map_err(failure)
    }

    fn group(&self, team: &str, name: &str) -> Result<crate::cgroup::Group, CgroupFailure> {
        self.cg.open(&Self::path(team, name)?).map_err(failure)
    }

    /// The engine's update for the wire limits: only the fields that are set.
    fn update_of(l: &Limits) -> Result<LimitsUpdate, CgroupFailure> {
        update_of(l).map_err(failure)
    }
}

/// The engine's update for wire limits: only the fields that are set (the same conversion for
/// containers and team pools).
pub fn update_of(l: &Limits) -> Result<LimitsUpdate, CgroupError> {
    let mut u = LimitsUpdate::default();
    if let Some(c) = l.cpus {
        u.cpu_max = Some(crate::cgroup::parse_cpus(&format!("{c}"))?);
    }
    u.cpu_weight = l.cpu_weight;
    u.cpuset_cpus = l.cpuset_cpus.clone();
    u.cpuset_mems = l.cpuset_mems.clone();
    u.memory_max = l.memory_max.map(Max::Limit);
    u.memory_high = l.memory_high.map(Max::Limit);
    u.memory_low = l.memory_low.map(Max::Limit);
    u.memory_min = l.memory_min.map(Max::Limit);
    u.swap_max = l.swap_max.map(Max::Limit);
    u.pids_max = l.pids_max.map(Max::Limit);
    u.io_weight = l.io_weight;
    u.io_max = l
        .io_max
        .iter()
        .map(|line| crate::cgroup::parse_io_max_line(line))
        .collect::<Result<_, _>>()?;
    Ok(u)
}

/// The engine update that takes a group from `old` to `new`: the changed fields only. A limit
/// `new` no longer has must be *written back to the kernel's default* (`max`, weight 100, the
/// parent's cpus, no memory protection, no device limit): leaving the file alone would keep
/// the old limit in force while the spec says there is none. `memory_v2`: the group's memory
/// controller is cgroup2, where "no protection" is `memory.low` 0 (v1's soft limit: max).
///
/// The same rule as the team pools' `teams::diff`, which predates it (a note there would
/// point here; the two should become one).
pub fn diff(old: &Limits, new: &Limits, memory_v2: bool) -> Result<LimitsUpdate, CgroupError> {
    let mut set = Limits::default();
    macro_rules! changed {
        ($($f:ident),*) => {$(
            if new.$f != old.$f { set.$f = new.$f.clone(); }
        )*};
    }
    changed!(
        cpus,
        cpuset_cpus,
        cpuset_mems,
        cpu_weight,
        memory_max,
        memory_high,
        memory_low,
        memory_min,
        swap_max,
        pids_max,
        io_weight,
        io_max
    );
    let mut u = update_of(&set)?;
    let cleared = |o: bool, n: bool| o && !n;
    if cleared(old.cpus.is_some(), new.cpus.is_some()) {
        u.cpu_max = Some(CpuMax {
            quota: Max::Unlimited,
            period: crate::cgroup::units::DEFAULT_CPU_PERIOD_US,
        });
    }
    for (o, n, f) in [
        (old.cpu_weight, new.cpu_weight, &mut u.cpu_weight),
        (old.io_weight, new.io_weight, &mut u.io_weight),
    ] {
        if cleared(o.is_some(), n.is_some()) {
            *f = Some(DEFAULT_WEIGHT);
        }
    }
    for (o, n, f) in [
        (&old.cpuset_cpus, &new.cpuset_cpus, &mut u.cpuset_cpus),
        (&old.cpuset_mems, &new.cpuset_mems, &mut u.cpuset_mems),
    ] {
        if cleared(o.is_some(), n.is_some()) {
            // Empty: the parent's list (the engine writes it out on v1).
            *f = Some(String::new());
        }
    }
    for (o, n, f) in [
        (old.memory_max, new.memory_max, &mut u.memory_max),
        (old.memory_high, new.memory_high, &mut u.memory_high),
        (old.swap_max, new.swap_max, &mut u.swap_max),
        (old.pids_max, new.pids_max, &mut u.pids_max),
    ] {
        if cleared(o.is_some(), n.is_some()) {
            *f = Some(Max::Unlimited);
        }
    }
    if cleared(old.memory_low.is_some(), new.memory_low.is_some()) {
        u.memory_low = Some(if memory_v2 {
            Max::Limit(0)
        } else {
            Max::Unlimited
        });
    }
    // memory.min exists on cgroup2 only, where its default is 0.
    if cleared(old.memory_min.is_some(), new.memory_min.is_some()) {
        u.memory_min = Some(Max::Limit(0));
    }
    if new.io_max != old.io_max {
        clear_io_devices(&mut u.io_max, &old.io_max);
    }
    Ok(u)
}

/// The engine's knobs a container's (and a team's) limits can set: the fields of
/// `wire::Limits`. Should the engine learn a knob the wire has no field for, it stays out of
/// this list: `GET /api/v1/host` and `corral info` must not call it available, since nothing
/// could set it.
pub const SETTABLE: [&str; 12] = [
    "cpus",
    "cpuset_cpus",
    "cpuset_mems",
    "cpu_weight",
    "memory_max",
    "memory_high",
    "memory_low",
    "memory_min",
    "swap_max",
    "pids_max",
    "io_weight",
    "io_max",
];

/// The kernel's default CPU and IO weight.
pub const DEFAULT_WEIGHT: u64 = 100;

/// A listed device gets exactly its line (keys it does not name: no limit); a device of `old`
/// no longer listed loses every limit.
fn clear_io_devices(new: &mut Vec<IoMax>, old: &[String]) {
    for m in new.iter_mut() {
        for f in [&mut m.rbps, &mut m.wbps, &mut m.riops, &mut m.wiops] {
            f.get_or_insert(Max::Unlimited);
        }
    }
    for line in old {
        let Ok(m) = crate::cgroup::parse_io_max_line(line) else {
            continue;
        };
        if !new.iter().any(|n| n.device == m.device) {
            new.push(IoMax {
                device: m.device,
                rbps: Some(Max::Unlimited),
                wbps: Some(Max::Unlimited),
                riops: Some(Max::Unlimited),
                wiops: Some(Max::Unlimited),
            });
        }
    }
}

/// The kernel's limits as wire limits: no limit (or the default) is an absent field.
pub fn wire_limits(l: crate::cgroup::Limits) -> Limits {
    Limits {
        cpus: l.cpu_max.and_then(|c| c.cpus()),
        cpuset_cpus: l.cpuset_cpus.filter(|s| !s.is_empty()),
        cpu_weight: l.cpu_weight,
        memory_max: limit(l.memory_max),
        memory_high: limit(l.memory_high),
        pids_max: limit(l.pids_max),
        cpuset_mems: l.cpuset_mems.filter(|s| !s.is_empty()),
        memory_low: limit(l.memory_low).filter(|&n| n > 0),
        memory_min: limit(l.memory_min).filter(|&n| n > 0),
        swap_max: limit(l.swap_max),
        io_weight: l.io_weight,
        io_max: l
            .io_max
            .iter()
            .filter(|m| {
                [m.rbps, m.wbps, m.riops, m.wiops]
                    .iter()
                    .any(|v| matches!(v, Some(Max::Limit(_))))
            })
            .map(crate::cgroup::render_io_max)
            .collect(),
    }
}

use wire::Limits;

fn limit(m: Option<Max>) -> Option<u64> {
    match m {
        Some(Max::Limit(n)) => Some(n),
        _ => None,
    }
}

impl CgroupDriver for EngineCgroups {
    fn mode(&self) -> String {
        match self.cg.mode() {
            CgroupMode::V2 => "v2".into(),
            CgroupMode::V1 => "v1".into(),
            CgroupMode::Hybrid => "hybrid".into(),
        }
    }

    fn pure_v2(&self) -> bool {
        self.cg.mode() == CgroupMode::V2
    }

    fn create(&self, team: &str, name: &str, limits: &Limits) -> Result<(), CgroupFailure> {
        let update = Self::update_of(limits)?;
        let group = self.cg.create(&Self::path(team, name)?).map_err(failure)?;
        // The device allowlist goes on before any process can join the group.
        if let Err(e) = self
            .cg
            .restrict_devices(&group)
            .and_then(|()| group.apply(&update))
        {
            let _ = group.remove();
            return Err(failure(e));
        }
        Ok(())
    }

    fn procs_files(&self, team: &str, name: &str) -> Vec<PathBuf> {
        self.group(team, name)
            .map(|g| g.dirs().map(|d| d.join("cgroup.procs")).collect())
            .unwrap_or_default()
    }

    fn procs(&self, team: &str, name: &str) -> Result<Vec<i32>, CgroupFailure> {
        self.group(team, name)?.procs().map_err(failure)
    }

    fn update(
        &self,
        team: &str,
        name: &str,
        old: &Limits,
        new: &Limits,
    ) -> Result<(), CgroupFailure> {
        let group = self.group(team, name)?;
        let v2 = group.place(Controller::Memory).is_some_and(|p| p.v2);
        let update = diff(old, new, v2).map_err(failure)?;
        if update.is_empty() {
            return Ok(());
        }
        group.apply(&update).map_err(failure)
    }

    fn limits(&self, team: &str, name: &str) -> Result<Limits, CgroupFailure> {
        Ok(wire_limits(self.group(team, name)?.limits()))
    }

    fn freeze(&self, team: &str, name: &str) -> Result<(), CgroupFailure> {
        self.group(team, name)?.freeze().map_err(failure)
    }

    fn thaw(&self, team: &str, name: &str) -> Result<(), CgroupFailure> {
        self.group(team, name)?.thaw().map_err(failure)
    }

    fn kill(&self, team: &str, name: &str) -> Result<(), CgroupFailure> {
        self.group(team, name)?.kill().map_err(failure)
    }

    fn remove(&self, team: &str, name: &str) -> Result<(), CgroupFailure> {
        match self.cg.open(&Self::path(team, name)?) {
            Ok(g) => g.remove().map_err(failure)?,
            Err(CgroupError::NotFound { .. }) => {}
            Err(e) => return Err(failure(e)),
        }
        // The team's group goes with its last container (never with processes or children),
        // unless a team pool keeps it.
        if !self.cg.is_pinned(team)
            && let Ok(path) = GroupPath::new([team])
            && let Ok(t) = self.cg.open(&path)
        {
            let empty = t.dirs().all(|d| {
                std::fs::read_dir(d)
                    .map(|rd| rd.flatten().all(|e| !e.path().is_dir()))
                    .unwrap_or(true)
            }) && t.procs().map(|p| p.is_empty()).unwrap_or(false);
            if empty {
                let _ = t.remove();
            }
        }
        Ok(())
    }

    fn exists(&self, team: &str, name: &str) -> bool {
        self.group(team, name).is_ok()
    }

    fn engine_group(&self, team: &str, name: &str) -> Option<crate::cgroup::Group> {
        self.group(team, name).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settable_names_the_wire_fields() {
        let full = Limits {
            cpus: Some(1.0),
            cpuset_cpus: Some("0".into()),
            cpuset_mems: Some("0".into()),
            cpu_weight: Some(1),
            memory_max: Some(1),
            memory_high: Some(1),
            memory_low: Some(1),
            memory_min: Some(1),
            swap_max: Some(1),
            pids_max: Some(1),
            io_weight: Some(1),
            io_max: vec!["8:0 rbps=1".into()],
        };
        let v = serde_json::to_value(&full).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut s = SETTABLE.to_vec();
        s.sort_unstable();
        assert_eq!(keys, s);
    }

    #[test]
    fn a_cleared_limit_goes_back_to_the_default() {
        let old = Limits {
            cpus: Some(0.5),
            cpu_weight: Some(50),
            cpuset_cpus: Some("0".into()),
            memory_max: Some(1 << 30),
            memory_low: Some(1 << 20),
            memory_min: Some(1 << 20),
            pids_max: Some(10),
            io_max: vec!["8:0 rbps=1000".into()],
            ..Limits::default()
        };
        let new = Limits {
            pids_max: Some(10),
            ..Limits::default()
        };
        let u = diff(&old, &new, true).unwrap();
        assert_eq!(u.cpu_max.unwrap().quota, Max::Unlimited);
        assert_eq!(u.cpu_weight, Some(100));
        assert_eq!(u.cpuset_cpus.as_deref(), Some(""));
        assert_eq!(u.memory_max, Some(Max::Unlimited));
        assert_eq!(u.memory_low, Some(Max::Limit(0)));
        assert_eq!(u.memory_min, Some(Max::Limit(0)));
        assert_eq!(u.pids_max, None, "unchanged: not written");
        assert_eq!(u.io_max.len(), 1);
        assert_eq!(u.io_max[0].rbps, Some(Max::Unlimited));
        assert_eq!(
            diff(&old, &new, false).unwrap().memory_low,
            Some(Max::Unlimited)
        );
        assert!(diff(&old, &old, true).unwrap().is_empty());
    }
}
