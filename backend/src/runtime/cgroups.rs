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
    /// Applies the complete (already merged) `limits`; on error the old limits stay in force.
    fn update(&self, team: &str, name: &str, limits: &wire::Limits) -> Result<(), CgroupFailure>;
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

use crate::cgroup::{CgroupError, CgroupMode, GroupPath, LimitsUpdate, Max};

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

    fn update(&self, team: &str, name: &str, limits: &Limits) -> Result<(), CgroupFailure> {
        let update = Self::update_of(limits)?;
        self.group(team, name)?.apply(&update).map_err(failure)
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
