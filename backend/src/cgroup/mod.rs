//! The cgroup engine: the only code that reads or writes under the cgroup filesystem.
//!
//! - [`Cgroups::detect`] parses `/proc/self/mountinfo` and `/proc/cgroups` (under injected
//!   [`Roots`]), decides the [`CgroupMode`] (v2, v1, hybrid), creates Corral's own subtree in every
//!   hierarchy and probes the [`Capabilities`] matrix.
//! - [`Group`] is one node of that subtree (host subtree → team → container): attach pids,
//!   [`Group::apply`] limits (validated, all-or-nothing), read them back with [`Group::limits`],
//!   freeze/thaw/kill/remove, and read [`Stats`] (or keep files open with [`StatsReader`]).
//! - [`Cgroups::browse`] walks ANY cgroup of the host read-only.
//!
//! One file per controller (`cpu`, `cpuset`, `memory`, `pids`, `io`, `freezer`), each with its
//! file names as constants, a `plan` (validate + the writes), a `read` (limits) and its stats
//! sources. [`APPLY_ORDER`] is the one list of the order limits are written in.
//!
//! Architecture invariant: only this module writes under the cgroup root, and only inside
//! Corral's subtree (plus enabling controllers in the cgroup2 root's `cgroup.subtree_control`,
//! which v2 needs before any child can use them).

mod browse;
mod caps;
mod cpu;
mod cpuset;
pub mod detect;
pub mod devices;
mod freezer;
mod fs;
mod io;
mod limits;
mod memory;
mod pids;
mod stats;
pub mod units;
mod usage;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub use browse::{BrowseHierarchy, BrowseNode, CgroupTree};
pub use caps::{Capabilities, ControllerPlace, Knob};
pub use detect::{CgroupMode, Layout};
pub use io::{parse_io_max_line, render_io_max};
pub use limits::{IoMax, Limits, LimitsUpdate};
pub use stats::{IoDeviceStats, MemoryEvents, Pressure, PsiLine, Stats, StatsReader};
pub use units::{CpuMax, Device, Max, parse_cpus, parse_device, parse_size};
pub use usage::{UsageReader, UsageSample};

/// The host's cgroup filesystem root: the one place this literal appears.
const HOST_CGROUP_FS: &str = "/sys/fs/cgroup";

/// Errors of the cgroup engine. Messages name the file, value or field involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup filesystem is mounted under {root}")]
    NotMounted { root: PathBuf },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("cannot create cgroup {path}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove cgroup {path}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot enable the {controller} controller in {path}{hint}")]
    EnableController {
        controller: String,
        path: PathBuf,
        hint: &'static str,
        source: std::io::Error,
    },
    /// A value outside what is allowed; `allowed` says what is.
    #[error("invalid {field} {value:?}: allowed is {allowed}")]
    Invalid {
        field: &'static str,
        value: String,
        allowed: String,
    },
    /// A knob this host cannot set (controller missing, or no v1 equivalent).
    #[error("{field} is not supported on this host: {reason}")]
    Unsupported { field: &'static str, reason: String },
    #[error("no such cgroup {path}")]
    NotFound { path: PathBuf },
    #[error("timed out after {waited:?} waiting for {path} to report {what}")]
    Timeout {
        path: PathBuf,
        what: &'static str,
        waited: Duration,
    },
    #[error("cannot restrict devices of {path}: {what}")]
    Devices {
        path: PathBuf,
        what: String,
        source: std::io::Error,
    },
    #[error("cannot signal pid {pid}")]
    Signal { pid: i32, source: nix::Error },
    #[error("processes {pids:?} are still in {path} after kill")]
    StillPopulated { path: PathBuf, pids: Vec<i32> },
}

/// Where the engine finds the kernel's files. Tests point these at captured copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// Where cgroup filesystems are mounted (only mounts at or under it count).
    pub cgroup_fs: PathBuf,
    /// procfs (`self/mountinfo`, `cgroups`, `pressure/`, `meminfo`).
    pub proc: PathBuf,
    /// sysfs (`dev/block/MAJ:MIN` to check devices).
    pub sys: PathBuf,
}

impl Roots {
    /// The real host.
    pub fn host() -> Self {
        Roots {
            cgroup_fs: PathBuf::from(HOST_CGROUP_FS),
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
        }
    }
}

/// The controllers Corral manages, by what they do (v1 and v2 spell some differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Cpuset,
    Cpu,
    /// CPU usage accounting: `cpuacct` in v1, core `cpu.stat` in v2.
    Cpuacct,
    Memory,
    Pids,
    /// `io` in v2, `blkio` in v1.
    Io,
    /// `freezer` in v1, core `cgroup.freeze` in v2.
    Freezer,
}

impl Controller {
    pub const ALL: [Controller; 7] = [
        Controller::Cpuset,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Memory,
        Controller::Pids,
        Controller::Io,
        Controller::Freezer,
    ];

    /// The v1 subsystem name.
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Cpuset => "cpuset",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Io => "blkio",
            Controller::Freezer => "freezer",
        }
    }

    /// The v2 controller name; `None` for what cgroup2 has built in (accounting, freezer).
    pub fn v2_name(self) -> Option<&'static str> {
        match self {
            Controller::Cpuset => Some("cpuset"),
            Controller::Cpu => Some("cpu"),
            Controller::Memory => Some("memory"),
            Controller::Pids => Some("pids"),
            Controller::Io => Some("io"),
            Controller::Cpuacct | Controller::Freezer => None,
        }
    }
}

/// The order limits are written in (runc and youki agree): cpuset before cpu, memory (and swap
/// right after it) before pids and io.
pub const APPLY_ORDER: [Controller; 5] = [
    Controller::Cpuset,
    Controller::Cpu,
    Controller::Memory,
    Controller::Pids,
    Controller::Io,
];

/// The v2 controllers Corral enables down its subtree.
const V2_ENABLE: [&str; 5] = ["cpuset", "cpu", "io", "memory", "pids"];

/// A group's place for one controller: its directory there and whether it speaks v2.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub dir: &'a Path,
    pub v2: bool,
}

const NAME_ALLOWED: &str = "1 to 64 characters of a-z, A-Z, 0-9, '_', '-', '.', starting with a letter or digit (no '/', '..' or NUL)";

/// Checks one cgroup name component against an allowlist: 1 to 64 of `[A-Za-z0-9_.-]`,
/// starting with a letter or digit. So a name can never be `.`/`..`, contain `/` or NUL, or
/// collide with a kernel file such as `cgroup.procs` or `cpu.max` (kernel prefixes are refused).
pub fn validate_name(field: &'static str, name: &str) -> Result<(), CgroupError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let kernel_prefix = [
        "cgroup.",
        "cpu.",
        "cpuset.",
        "cpuacct.",
        "memory.",
        "io.",
        "pids.",
        "blkio.",
        "freezer.",
        "hugetlb.",
        "rdma.",
        "misc.",
        "devices.",
        "net_cls.",
        "net_prio.",
        "notify_on_release",
        "release_agent",
        "tasks",
    ]
    .iter()
    .any(|p| name.starts_with(p));
    if name.is_empty() || name.len() > 64 || !ok_chars || !first_ok || kernel_prefix {
        return Err(CgroupError::Invalid {
            field,
            value: name.to_owned(),
            allowed: NAME_ALLOWED.to_owned(),
        });
    }
    Ok(())
}

/// A path of validated names inside Corral's subtree, e.g. `["team-a", "web"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct GroupPath(Vec<String>);

impl GroupPath {
    /// Validates every component (see [`validate_name`]). Depth is limited to 8.
    pub fn new<I, S>(parts: I) -> Result<Self, CgroupError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let parts: Vec<String> = parts.into_iter().map(Into::into).collect();
        if parts.len() > 8 {
            return Err(CgroupError::Invalid {
                field: "group",
                value: parts.join("/"),
                allowed: "at most 8 levels".to_owned(),
            });
        }
        for p in &parts {
            validate_name("group", p)?;
        }
        Ok(GroupPath(parts))
    }

    /// Parses `team-a/web` (slashes separate levels; empty components are rejected).
    pub fn parse(s: &str) -> Result<Self, CgroupError> {
        if s.is_empty() {
            return Ok(GroupPath(Vec::new()));
        }
        GroupPath::new(s.split('/'))
    }

    pub fn parts(&self) -> &[String] {
        &self.0
    }

    /// The parent path; the root has none.
    pub fn parent(&self) -> Option<GroupPath> {
        let (_, rest) = self.0.split_last()?;
        Some(GroupPath(rest.to_vec()))
    }
}

impl std::fmt::Display for GroupPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.0.join("/"))
    }
}

/// The cgroup engine of one host with Corral's subtree.
#[derive(Debug)]
pub struct Cgroups {
    roots: Roots,
    layout: Layout,
    subtree: String,
    caps: Capabilities,
    /// Teams whose group stays while it has no containers (a team pool exists as long as its
    /// team does); see [`Cgroups::pin_team`].
    pinned: std::sync::Mutex<BTreeSet<String>>,
}

impl Cgroups {
    /// [`Cgroups::detect`] on the real host.
    pub fn host(subtree: &str) -> Result<Self, CgroupError> {
        Self::detect(&Roots::host(), subtree)
    }

    /// Detects the layout under `roots`, creates Corral's subtree `subtree` in every hierarchy
    /// (enabling the v2 controllers on the way), and probes the capability matrix.
    pub fn detect(roots: &Roots, subtree: &str) -> Result<Self, CgroupError> {
        validate_name("cgroup_root", subtree)?;
        let layout = Self::layout(roots)?;
        let mut cg = Cgroups {
            roots: roots.clone(),
            layout,
            subtree: subtree.to_owned(),
            caps: Capabilities::default(),
            pinned: std::sync::Mutex::default(),
        };
        let top = cg.create(&GroupPath::default())?;
        cg.caps = caps::probe(&cg.layout, &top, &roots.proc);
        cg.caps.devices = devices::probe(
            cg.layout.v1_mount("devices").is_some(),
            cg.layout.unified.is_some(),
        );
        Ok(cg)
    }

    /// Reads and classifies the mounts under `roots` without touching anything.
    pub fn layout(roots: &Roots) -> Result<Layout, CgroupError> {
        let mountinfo = fs::read(&roots.proc.join("self/mountinfo"))?;
        let subsystems = fs::read_opt(&roots.proc.join("cgroups")).unwrap_or_default();
        let mounts = detect::parse_mountinfo(&mountinfo, &roots.cgroup_fs);
        let v2_ctl = mounts
            .iter()
            .find(|m| m.v2)
            .and_then(|m| fs::read_opt(&m.mount_point.join("cgroup.controllers")))
            .unwrap_or_default();
        Layout::classify(&mounts, &detect::parse_proc_cgroups(&subsystems), &v2_ctl).ok_or_else(
            || CgroupError::NotMounted {
                root: roots.cgroup_fs.clone(),
            },
        )
    }

    pub fn mode(&self) -> CgroupMode {
        self.layout.mode
    }

    pub fn layout_info(&self) -> &Layout {
        &self.layout
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// Keeps the team's group when its last container goes (the team pool owns it now).
    pub fn pin_team(&self, team: &str) {
        self.pins().insert(team.to_owned());
    }

    /// The team's group goes with its last container again (its team was removed).
    pub fn unpin_team(&self, team: &str) {
        self.pins().remove(team);
    }

    /// Whether the team's group is kept while empty.
    pub fn is_pinned(&self, team: &str) -> bool {
        self.pins().contains(team)
    }

    fn pins(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.pinned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The name of Corral's subtree (`--cgroup-root`).
    pub fn subtree(&self) -> &str {
        &self.subtree
    }

    /// The group's directories: its cgroup2 dir and one per v1 hierarchy.
    fn dirs(&self, path: &GroupPath) -> (Option<PathBuf>, Vec<PathBuf>) {
        let join = |base: &Path| {
            let mut p = base.join(&self.subtree);
            for part in path.parts() {
                p.push(part);
            }
            p
        };
        let v2 = self.layout.unified.as_deref().map(join);
        let v1 = self
            .layout
            .v1
            .iter()
            .map(|m| join(&m.mount_point))
            .collect();
        (v2, v1)
    }

    /// Creates `path` (and every missing level above it) in every hierarchy. On cgroup2 each
    /// parent first gets Corral's controllers in its `cgroup.subtree_control`; on v1 a new cpuset
    /// inherits its parent's cpus and mems (else it could hold no task).
    pub fn create(&self, path: &GroupPath) -> Result<Group, CgroupError> {
        for depth in 0..=path.parts().len() {
            let level = GroupPath(path.parts()[..depth].to_vec());
            let (v2, v1) = self.dirs(&level);
            if let Some(dir) = v2 {
                if let Some(parent) = dir.parent() {
                    enable_controllers(parent)?;
                }
                fs::mkdir(&dir)?;
            }
            for dir in v1 {
                let created = fs::mkdir(&dir)?;
                if created && dir.join(cpuset::CPUS).exists() {
                    cpuset::inherit_v1(&dir)?;
                }
            }
        }
        self.open(path)
    }

    /// Puts the device allowlist ([`devices::ALLOWED`]) on `group` with every mechanism the
    /// host has (v1 `devices`, cgroup2 BPF program); safe to repeat (a restart replaces it).
    pub fn restrict_devices(&self, group: &Group) -> Result<(), CgroupError> {
        let how = self.caps.devices;
        if how.v1
            && let Some(i) = self
                .layout
                .v1
                .iter()
                .position(|m| m.controllers.iter().any(|c| c == "devices"))
            && let Some(dir) = group.v1.get(i)
        {
            devices::apply_v1(dir, devices::ALLOWED)?;
        }
        if how.bpf
            && let Some(dir) = group.v2_dir()
        {
            devices::apply_bpf(dir, devices::ALLOWED)?;
        }
        Ok(())
    }

    /// Opens an existing group.
    pub fn open(&self, path: &GroupPath) -> Result<Group, CgroupError> {
        let (v2, v1) = self.dirs(path);
        let probe =
            v2.clone()
                .or_else(|| v1.first().cloned())
                .ok_or_else(|| CgroupError::NotMounted {
                    root: self.roots.cgroup_fs.clone(),
                })?;
        if !probe.is_dir() {
            return Err(CgroupError::NotFound { path: probe });
        }
        Ok(Group::new(path.clone(), v2, v1, &self.layout, &self.roots))
    }

    /// Kills every process in Corral's subtree and removes all of it (tests and uninstall).
    pub fn remove_subtree(&self) -> Result<(), CgroupError> {
        self.open(&GroupPath::default())?.remove()
    }

    /// Removes Corral's subtree if nothing lives in it (daemon shutdown); `Ok(false)` if it
    /// still holds groups or processes, which are left alone.
    pub fn remove_subtree_if_empty(&self) -> Result<bool, CgroupError> {
        let top = self.open(&GroupPath::default())?;
        if top.dirs().any(|d| !fs::children(d).is_empty()) || !top.procs()?.is_empty() {
            return Ok(false);
        }
        top.remove()?;
        Ok(true)
    }

    /// The read-only tree of every cgroup on the host with per-node usage.
    pub fn browse(&self) -> CgroupTree {
        browse::walk(&self.layout, &self.subtree)
    }
}

/// Enables Corral's v2 controllers that `dir` offers but has not enabled for its children.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let Some(offered) = fs::read_opt(&dir.join("cgroup.controllers")) else {
        return Ok(());
    };
    let file = dir.join("cgroup.subtree_control");
    let enabled = fs::read_opt(&file).unwrap_or_default();
    let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
    for c in offered.split_whitespace() {
        if !V2_ENABLE.contains(&c) || enabled.contains(c) {
            continue;
        }
        let value = format!("+{c}");
        fs::write(&file, &value).map_err(|e| match e {
            CgroupError::Write { source, .. } => CgroupError::EnableController {
                controller: c.to_owned(),
                path: file.clone(),
                hint: if source.raw_os_error() == Some(libc::EBUSY) {
                    " (the group has processes; cgroup v2 lets only leaf groups hold them)"
                } else {
                    ""
                },
                source,
            },
            other => other,
        })?;
    }
    Ok(())
}

/// One cgroup of Corral's subtree, present in every hierarchy of the host.
#[derive(Debug, Clone)]
pub struct Group {
    path: GroupPath,
    v2: Option<PathBuf>,
    v1: Vec<PathBuf>,
    /// Where each controller lives for this group.
    places: BTreeMap<Controller, (PathBuf, bool)>,
    parent_places: BTreeMap<Controller, PathBuf>,
    sys: PathBuf,
    mode: CgroupMode,
}

impl Group {
    fn new(
        path: GroupPath,
        v2: Option<PathBuf>,
        v1: Vec<PathBuf>,
        layout: &Layout,
        roots: &Roots,
    ) -> Group {
        let v2_available: BTreeSet<String> = v2
            .as_deref()
            .and_then(|d| fs::read_opt(&d.join("cgroup.controllers")))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let mut places = BTreeMap::new();
        for c in Controller::ALL {
            // cgroup2's built-in freezer waits properly and also works on hybrid hosts.
            if c == Controller::Freezer
                && let Some(d) = &v2
                && d.join(freezer::V2_FREEZE).exists()
            {
                places.insert(c, (d.clone(), true));
                continue;
            }
            if let Some(mount) = layout.v1_mount(c.v1_name())
                && let Some(i) = layout.v1.iter().position(|m| m.mount_point == mount)
            {
                places.insert(c, (v1[i].clone(), false));
                continue;
            }
            if let Some(d) = &v2 {
                let here = match c.v2_name() {
                    Some(n) => v2_available.contains(n),
                    None => c == Controller::Cpuacct,
                };
                if here {
                    places.insert(c, (d.clone(), true));
                }
            }
        }
        let parent_places = places
            .iter()
            .filter_map(|(c, (d, _))| Some((*c, d.parent()?.to_owned())))
            .collect();
        Group {
            path,
            v2,
            v1,
            places,
            parent_places,
            sys: roots.sys.clone(),
            mode: layout.mode,
        }
    }

    /// The group's path inside Corral's subtree.
    pub fn path(&self) -> &GroupPath {
        &self.path
    }

    /// The cgroup2 directory (for `clone3(CLONE_INTO_CGROUP)`), if the host has cgroup2.
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// Every directory of this group, cgroup2 first.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v2.iter().chain(self.v1.iter()).map(PathBuf::as_path)
    }

    pub(crate) fn place(&self, c: Controller) -> Option<Place<'_>> {
        self.places.get(&c).map(|(dir, v2)| Place { dir, v2: *v2 })
    }

    pub(crate) fn parent_dir(&self, c: Controller) -> Option<&Path> {
        self.parent_places.get(&c).map(PathBuf::as_path)
    }

    pub(crate) fn sys(&self) -> &Path {
        &self.sys
    }

    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// Moves `pid` into this group in every hierarchy (`echo PID > cgroup.procs`).
    pub fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in self.v1.iter().chain(self.v2.iter()) {
            fs::write_retry(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in this group (not its children), from every hierarchy.
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let mut all = BTreeSet::new();
        for dir in self.dirs() {
            let file = dir.join("cgroup.procs");
            match std::fs::read_to_string(&file) {
                Ok(text) => all.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(CgroupError::Read { path: file, source }),
            }
        }
        Ok(all.into_iter().collect())
    }

    /// The processes in this group and all groups below it.
    pub fn procs_recursive(&self) -> Vec<i32> {
        let mut all = BTreeSet::new();
        let mut stack: Vec<PathBuf> = self.dirs().map(Path::to_owned).collect();
        while let Some(dir) = stack.pop() {
            if let Some(text) = fs::read_opt(&dir.join("cgroup.procs")) {
                all.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            stack.extend(fs::children(&dir));
        }
        all.into_iter().collect()
    }

    /// Validates the whole update against this host and the group's current state, then writes
    /// it in [`APPLY_ORDER`]. A rejected update writes nothing; if the kernel refuses a write
    /// half-way, the files already written get their old values back.
    pub fn apply(&self, update: &LimitsUpdate) -> Result<(), CgroupError> {
        let mut plan = limits::Plan::default();
        for c in APPLY_ORDER {
            match c {
                Controller::Cpuset => cpuset::plan(self, update, &mut plan)?,
                Controller::Cpu => cpu::plan(self, update, &mut plan)?,
                Controller::Memory => memory::plan(self, update, &mut plan)?,
                Controller::Pids => pids::plan(self, update, &mut plan)?,
                Controller::Io => io::plan(self, update, &mut plan)?,
                Controller::Cpuacct | Controller::Freezer => {}
            }
        }
        plan.execute()
    }

    /// Reads every limit back from the kernel; fields this host cannot express stay `None`.
    pub fn limits(&self) -> Limits {
        let mut l = Limits::default();
        cpuset::read(self, &mut l);
        cpu::read(self, &mut l);
        memory::read(self, &mut l);
        pids::read(self, &mut l);
        io::read(self, &mut l);
        l
    }

    /// The same group, but frozen through the v1 `freezer` hierarchy even where cgroup2's
    /// `cgroup.freeze` is preferred (hybrid hosts); `None` without a v1 freezer. Lets the v1
    /// path be exercised on hybrid hosts.
    pub fn with_v1_freezer(&self) -> Option<Group> {
        let i = self
            .v1
            .iter()
            .position(|d| d.join(freezer::V1_STATE).exists())?;
        let mut g = self.clone();
        g.places
            .insert(Controller::Freezer, (self.v1[i].clone(), false));
        Some(g)
    }

    /// Freezes every process of the group (and below) and waits until the kernel reports it
    /// frozen (`cgroup.events` `frozen 1`, v1 `freezer.state` `FROZEN`).
    pub fn freeze(&self) -> Result<(), CgroupError> {
        freezer::freeze(self)
    }

    /// Thaws the group and waits until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        freezer::thaw(self)
    }

    /// `Some(true)` when the kernel reports the group frozen; `None` without a freezer.
    pub fn is_frozen(&self) -> Option<bool> {
        freezer::is_frozen(self)
    }

    /// Kills every process in the group and below: `cgroup.kill` where cgroup2 has it, else
    /// freeze, SIGKILL each pid, thaw. Waits until the group is empty.
    pub fn kill(&self) -> Result<(), CgroupError> {
        if let Some(v2) = &self.v2 {
            let file = v2.join("cgroup.kill");
            if file.exists() {
                fs::write(&file, "1")?;
                if self.wait_empty(Duration::from_secs(1)).is_ok() {
                    return Ok(());
                }
            }
        }
        self.kill_with_signals()
    }

    /// The v1 way, used where `cgroup.kill` is missing: freeze so nothing forks meanwhile,
    /// SIGKILL every pid, thaw so the signals are delivered, wait until the group is empty.
    pub fn kill_with_signals(&self) -> Result<(), CgroupError> {
        let frozen = self.place(Controller::Freezer).is_some() && self.freeze().is_ok();
        let mut result = Ok(());
        for pid in self.procs_recursive() {
            match nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            ) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(source) => result = Err(CgroupError::Signal { pid, source }),
            }
        }
        if frozen {
            self.thaw()?;
        }
        result?;
        self.wait_empty(Duration::from_secs(5))
    }

    fn wait_empty(&self, timeout: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(1);
        loop {
            let pids = self.procs_recursive();
            if pids.is_empty() {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(CgroupError::StillPopulated {
                    path: self.dirs().next().map(Path::to_owned).unwrap_or_default(),
                    pids,
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// Kills what is left, then removes the group and every group below it in every hierarchy.
    pub fn remove(&self) -> Result<(), CgroupError> {
        if !self.procs_recursive().is_empty() {
            self.kill()?;
        }
        for dir in self.dirs() {
            remove_tree(dir)?;
        }
        Ok(())
    }

    /// Reads every statistic this host offers, opening each file (see [`StatsReader`] for the
    /// hot path). A missing or unreadable file leaves its fields `None`.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for src in stats::sources(self) {
            if let Some(text) = fs::read_opt(&src.path) {
                stats::parse(src.kind, &text, &mut s);
            }
        }
        s
    }

    /// A reader that keeps this group's stat files open and re-reads them with `pread`.
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader::open(stats::sources(self))
    }
}

fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    for child in fs::children(dir) {
        remove_tree(&child)?;
    }
    fs::rmdir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["web", "team-a", "a.b", "A_1", "x".repeat(64).as_str()] {
            validate_name("group", ok).unwrap();
        }
        for bad in [
            "",
            "..",
            ".",
            "a/b",
            "a\0b",
            "-x",
            ".hidden",
            "cgroup.procs",
            "cpu.max",
            "tasks",
            "x".repeat(65).as_str(),
            "é",
        ] {
            let e = validate_name("group", bad).unwrap_err().to_string();
            assert!(e.contains("group") && e.contains("'/'"), "{bad:?}: {e}");
        }
        assert_eq!(
            GroupPath::parse("team-a/web").unwrap().to_string(),
            "/team-a/web"
        );
        assert!(GroupPath::parse("team-a//web").is_err());
        assert!(GroupPath::parse("team-a/../x").is_err());
        assert_eq!(
            GroupPath::parse("a/b").unwrap().parent(),
            Some(GroupPath::new(["a"]).unwrap())
        );
    }
}
