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

/// A minimal driver used until the cgroup engine (backend/src/cgroup) is merged: pids, memory,
/// cpu and freezer on v1/hybrid, the same plus cgroup.kill/freeze on v2. Mount points come from
/// mountinfo.
pub struct BareCgroups {
    subtree: String,
    v2: Option<PathBuf>,
    v1: Vec<(String, PathBuf)>,
}

const V1_CONTROLLERS: &[&str] = &["pids", "memory", "cpu", "freezer"];

impl BareCgroups {
    pub fn detect(mountinfo: &std::path::Path, subtree: &str) -> Result<Self, CgroupFailure> {
        let text = std::fs::read_to_string(mountinfo)
            .map_err(|e| CgroupFailure::new(format!("read {}: {e}", mountinfo.display())))?;
        let mut v2 = None;
        let mut v1 = Vec::new();
        for line in text.lines() {
            let Some((pre, post)) = line.split_once(" - ") else { continue };
            let mount_point = pre.split_whitespace().nth(4).unwrap_or("");
            let mut post = post.split_whitespace();
            let fstype = post.next().unwrap_or("");
            let _src = post.next();
            let opts = post.next().unwrap_or("");
            match fstype {
                "cgroup2" => v2 = Some(PathBuf::from(mount_point)),
                "cgroup" => {
                    for c in V1_CONTROLLERS {
                        if opts.split(',').any(|o| o == *c) {
                            v1.push(((*c).to_owned(), PathBuf::from(mount_point)));
                        }
                    }
                }
                _ => {}
            }
        }
        if v2.is_none() && v1.is_empty() {
            return Err(CgroupFailure::new("no cgroup filesystem mounted"));
        }
        Ok(Self {
            subtree: subtree.to_owned(),
            v2,
            v1,
        })
    }

    fn v1_dir(&self, ctl: &str, team: &str, name: &str) -> Option<PathBuf> {
        self.v1
            .iter()
            .find(|(c, _)| c == ctl)
            .map(|(_, m)| m.join(&self.subtree).join(team).join(name))
    }

    fn v2_dir(&self, team: &str, name: &str) -> Option<PathBuf> {
        self.v2.as_ref().map(|m| m.join(&self.subtree).join(team).join(name))
    }

    fn dirs(&self, team: &str, name: &str) -> Vec<PathBuf> {
        let mut d: Vec<PathBuf> = self
            .v1
            .iter()
            .map(|(_, m)| m.join(&self.subtree).join(team).join(name))
            .collect();
        d.extend(self.v2_dir(team, name));
        d
    }

    /// The directory holding `file` for this container (v1 controller dir, or the v2 dir).
    fn file(&self, ctl: &str, file: &str, team: &str, name: &str) -> Option<PathBuf> {
        if self.pure_v2() {
            self.v2_dir(team, name).map(|d| d.join(file))
        } else {
            self.v1_dir(ctl, team, name).map(|d| d.join(file))
        }
    }

    fn write(path: &std::path::Path, value: &str, field: &str) -> Result<(), CgroupFailure> {
        std::fs::write(path, value)
            .map_err(|e| CgroupFailure::field(field, format!("write {value:?} to {}: {e}", path.display())))
    }

    fn apply(&self, team: &str, name: &str, l: &Limits) -> Result<(), CgroupFailure> {
        let v2 = self.pure_v2();
        if l.cpuset_cpus.is_some() {
            return Err(CgroupFailure::field("cpuset_cpus", "cpuset is not supported until the cgroup engine is merged"));
        }
        if let Some(f) = self.file("pids", "pids.max", team, name) {
            let v = l.pids_max.map_or("max".to_owned(), |v| v.to_string());
            Self::write(&f, &v, "pids_max")?;
        }
        if v2 {
            if let Some(f) = self.file("memory", "memory.max", team, name) {
                Self::write(&f, &l.memory_max.map_or("max".into(), |v| v.to_string()), "memory_max")?;
            }
            if let Some(f) = self.file("memory", "memory.high", team, name) {
                Self::write(&f, &l.memory_high.map_or("max".into(), |v| v.to_string()), "memory_high")?;
            }
            if let Some(f) = self.file("cpu", "cpu.max", team, name) {
                let v = l.cpus.map_or("max 100000".into(), |c| format!("{} 100000", (c * 100000.0) as u64));
                Self::write(&f, &v, "cpus")?;
            }
            if let Some(f) = self.file("cpu", "cpu.weight", team, name) {
                Self::write(&f, &l.cpu_weight.unwrap_or(100).to_string(), "cpu_weight")?;
            }
        } else {
            if let Some(f) = self.file("memory", "memory.limit_in_bytes", team, name) {
                Self::write(&f, &l.memory_max.map_or("-1".into(), |v| v.to_string()), "memory_max")?;
            }
            if let Some(f) = self.file("memory", "memory.soft_limit_in_bytes", team, name) {
                Self::write(&f, &l.memory_high.map_or("-1".into(), |v| v.to_string()), "memory_high")?;
            }
            if let Some(f) = self.file("cpu", "cpu.cfs_period_us", team, name) {
                Self::write(&f, "100000", "cpus")?;
            }
            if let Some(f) = self.file("cpu", "cpu.cfs_quota_us", team, name) {
                let v = l.cpus.map_or("-1".into(), |c| ((c * 100000.0) as u64).to_string());
                Self::write(&f, &v, "cpus")?;
            }
            if let Some(f) = self.file("cpu", "cpu.shares", team, name) {
                let shares = l.cpu_weight.map_or(1024, |w| (w * 1024 / 100).max(2));
                Self::write(&f, &shares.to_string(), "cpu_weight")?;
            }
        }
        Ok(())
    }

    fn read(path: Option<PathBuf>) -> Option<String> {
        path.and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_owned())
    }

    fn wait_for(path: &std::path::Path, want: impl Fn(&str) -> bool) -> Result<(), CgroupFailure> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let s = std::fs::read_to_string(path).unwrap_or_default();
            if want(&s) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(CgroupFailure::new(format!("{} did not settle: {s}", path.display())));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

use wire::Limits;

impl CgroupDriver for BareCgroups {
    fn mode(&self) -> String {
        match (self.v2.is_some(), self.v1.is_empty()) {
            (true, true) => "v2".into(),
            (true, false) => "hybrid".into(),
            _ => "v1".into(),
        }
    }

    fn pure_v2(&self) -> bool {
        self.v2.is_some() && self.v1.is_empty()
    }

    fn create(&self, team: &str, name: &str, limits: &Limits) -> Result<(), CgroupFailure> {
        if self.pure_v2() {
            if let Some(m) = &self.v2 {
                let ctls = std::fs::read_to_string(m.join("cgroup.controllers")).unwrap_or_default();
                let enable: String = ["cpu", "memory", "pids"]
                    .iter()
                    .filter(|c| ctls.split_whitespace().any(|x| x == **c))
                    .map(|c| format!("+{c} "))
                    .collect();
                for d in [m.to_owned(), m.join(&self.subtree), m.join(&self.subtree).join(team)] {
                    std::fs::create_dir_all(&d).map_err(|e| CgroupFailure::new(format!("mkdir {}: {e}", d.display())))?;
                    let _ = std::fs::write(d.join("cgroup.subtree_control"), enable.trim());
                }
            }
        }
        for d in self.dirs(team, name) {
            std::fs::create_dir_all(&d).map_err(|e| CgroupFailure::new(format!("mkdir {}: {e}", d.display())))?;
        }
        if let Err(e) = self.apply(team, name, limits) {
            let _ = self.remove(team, name);
            return Err(e);
        }
        Ok(())
    }

    fn procs_files(&self, team: &str, name: &str) -> Vec<PathBuf> {
        self.dirs(team, name).into_iter().map(|d| d.join("cgroup.procs")).collect()
    }

    fn update(&self, team: &str, name: &str, limits: &Limits) -> Result<(), CgroupFailure> {
        let old = self.limits(team, name)?;
        if let Err(e) = self.apply(team, name, limits) {
            let _ = self.apply(team, name, &old);
            return Err(e);
        }
        Ok(())
    }

    fn limits(&self, team: &str, name: &str) -> Result<Limits, CgroupFailure> {
        let num = |s: Option<String>| s.and_then(|v| v.parse::<u64>().ok());
        let mut l = Limits {
            pids_max: num(Self::read(self.file("pids", "pids.max", team, name))),
            ..Default::default()
        };
        if self.pure_v2() {
            l.memory_max = num(Self::read(self.file("memory", "memory.max", team, name)));
            l.memory_high = num(Self::read(self.file("memory", "memory.high", team, name)));
            if let Some(s) = Self::read(self.file("cpu", "cpu.max", team, name)) {
                let mut it = s.split_whitespace();
                if let (Some(q), Some(p)) = (it.next().and_then(|q| q.parse::<f64>().ok()), it.next().and_then(|p| p.parse::<f64>().ok())) {
                    l.cpus = Some(q / p);
                }
            }
            l.cpu_weight = num(Self::read(self.file("cpu", "cpu.weight", team, name)));
        } else {
            l.memory_max = num(Self::read(self.file("memory", "memory.limit_in_bytes", team, name))).filter(|v| *v < (1 << 62));
            let q = Self::read(self.file("cpu", "cpu.cfs_quota_us", team, name)).and_then(|v| v.parse::<i64>().ok());
            let p = num(Self::read(self.file("cpu", "cpu.cfs_period_us", team, name)));
            if let (Some(q), Some(p)) = (q, p) {
                if q > 0 {
                    l.cpus = Some(q as f64 / p as f64);
                }
            }
        }
        Ok(l)
    }

    fn freeze(&self, team: &str, name: &str) -> Result<(), CgroupFailure> {
        if let Some(d) = self.v2_dir(team, name) {
            Self::write(&d.join("cgroup.freeze"), "1", "freeze")?;
            return Self::wait_for(&d.join("cgroup.events"), |s| s.lines().any(|l| l == "frozen 1"));
        }
        let d = self.v1_dir("freezer", team, name).ok_or_else(|| CgroupFailure::new("no freezer"))?;
        Self::write(&d.join("freezer.state"), "FROZEN", "freeze")?;
        Self::wait_for(&d.join("freezer.state"), |s| s.trim() == "FROZEN")
    }

    fn thaw(&self, team: &str, name: &str) -> Result<(), CgroupFailure> {
        if let Some(d) = self.v2_dir(team, name) {
            Self::write(&d.join("cgroup.freeze"), "0", "thaw")?;
            return Self::wait_for(&d.join("cgroup.events"), |s| s.lines().any(|l| l == "frozen 0"));
        }
        let d = self.v1_dir("freezer", team, name).ok_or_else(|| CgroupFailure::new("no freezer"))?;
        Self::write(&d.join("freezer.state"), "THAWED", "thaw")?;
        Self::wait_for(&d.join("freezer.state"), |s| s.trim() == "THAWED")
    }

    fn kill(&self, team: &str, name: &str) -> Result<(), CgroupFailure> {
        if let Some(d) = self.v2_dir(team, name) {
            if d.join("cgroup.kill").exists() {
                return Self::write(&d.join("cgroup.kill"), "1", "kill");
            }
        }
        for f in self.procs_files(team, name) {
            for pid in std::fs::read_to_string(&f).unwrap_or_default().lines() {
                if let Ok(p) = pid.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        Ok(())
    }

    fn remove(&self, team: &str, name: &str) -> Result<(), CgroupFailure> {
        for d in self.dirs(team, name) {
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) => return Err(CgroupFailure::new(format!("rmdir {}: {e}", d.display()))),
                }
            }
            if let Some(team_dir) = d.parent() {
                let _ = std::fs::remove_dir(team_dir);
                if let Some(root) = team_dir.parent() {
                    let _ = std::fs::remove_dir(root);
                }
            }
        }
        Ok(())
    }

    fn exists(&self, team: &str, name: &str) -> bool {
        self.dirs(team, name).iter().any(|d| d.exists())
    }
}
