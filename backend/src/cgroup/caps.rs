//! The capability matrix: which knobs this host has for Corral's groups, which can change while
//! processes run, where each controller lives, and whether PSI is there. Probed once on
//! Corral's own subtree at start; the API and `corral info` show it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    Controller, Group, Place, cpu, cpuset, detect::CgroupMode, detect::Layout, freezer, io, memory,
    pids,
};

/// What this host's cgroups can do for Corral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub mode: CgroupMode,
    /// Controllers the kernel has (`/proc/cgroups`).
    pub kernel_controllers: Vec<String>,
    /// Where each of Corral's controllers lives for its groups.
    pub controllers: Vec<ControllerPlace>,
    /// Every limit Corral knows, and whether it works here.
    pub knobs: Vec<Knob>,
    /// Pressure stall information readable per group.
    pub psi: bool,
    /// How a group is frozen: `cgroup.freeze`, `freezer.state`, or `None`.
    pub freeze: Option<String>,
    /// How a group is killed: `cgroup.kill` or `signal` (freeze, SIGKILL each pid, thaw).
    pub kill: String,
    /// How the device allowlist is enforced (filled in by `Cgroups::detect`).
    pub devices: super::devices::Enforcement,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            mode: CgroupMode::V2,
            kernel_controllers: Vec::new(),
            controllers: Vec::new(),
            knobs: Vec::new(),
            psi: false,
            freeze: None,
            kill: "signal".into(),
            devices: Default::default(),
        }
    }
}

/// One controller and where Corral's groups find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerPlace {
    /// Corral's name for it: `cpu`, `cpuacct`, `cpuset`, `memory`, `pids`, `io`, `freezer`.
    pub name: String,
    /// `v1` or `v2`; `None` when this host lacks it.
    pub version: Option<String>,
    /// The hierarchy it is mounted in (v1) or the cgroup2 mount.
    pub hierarchy: Option<PathBuf>,
}

/// One limit Corral can set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knob {
    /// The `Limits` field, e.g. `memory_max`.
    pub name: String,
    /// The controller that provides it.
    pub controller: String,
    /// The kernel files it is written to on this host.
    pub files: Vec<String>,
    /// The files exist for Corral's groups.
    pub available: bool,
    /// It can change while the group's processes run.
    pub live: bool,
    /// How this host differs from the plain v2 meaning, if it does.
    pub note: Option<String>,
}

impl Knob {
    /// A knob that is available when all `files` exist in the controller's directory.
    pub(crate) fn probe(
        name: &str,
        controller: &str,
        place: Option<Place<'_>>,
        files: &[&str],
        note: Option<&str>,
    ) -> Knob {
        let available = place.is_some_and(|p| files.iter().all(|f| p.dir.join(f).exists()));
        Knob {
            name: name.to_owned(),
            controller: controller.to_owned(),
            files: files.iter().map(|f| (*f).to_owned()).collect(),
            available,
            live: available,
            note: note.map(str::to_owned),
        }
    }

    /// A knob this host cannot have at all.
    pub(crate) fn missing(name: &str, controller: &str, note: &str) -> Knob {
        Knob {
            name: name.to_owned(),
            controller: controller.to_owned(),
            files: Vec::new(),
            available: false,
            live: false,
            note: Some(note.to_owned()),
        }
    }
}

/// Probes the matrix on `top` (Corral's subtree, which exists in every hierarchy).
pub(crate) fn probe(layout: &Layout, top: &Group, proc: &Path) -> Capabilities {
    let controllers = Controller::ALL
        .iter()
        .map(|c| {
            let name = match c {
                Controller::Io => "io",
                other => other.v1_name(),
            };
            let place = top.place(*c);
            ControllerPlace {
                name: name.to_owned(),
                version: place.map(|p| if p.v2 { "v2" } else { "v1" }.to_owned()),
                hierarchy: place.and_then(|p| {
                    p.dir
                        .ancestors()
                        .nth(top.path().parts().len() + 1)
                        .map(Path::to_owned)
                }),
            }
        })
        .collect();
    let mut knobs = Vec::new();
    cpu::knobs(top, &mut knobs);
    cpuset::knobs(top, &mut knobs);
    memory::knobs(top, &mut knobs);
    pids::knobs(top, &mut knobs);
    io::knobs(top, &mut knobs);
    let psi = proc.join("pressure/cpu").exists()
        && top
            .v2_dir()
            .and_then(|d| std::fs::read_to_string(d.join("cpu.pressure")).ok())
            .is_some();
    let kill = if top.v2_dir().is_some_and(|d| d.join("cgroup.kill").exists()) {
        "cgroup.kill"
    } else {
        "signal"
    };
    Capabilities {
        mode: layout.mode,
        kernel_controllers: layout.kernel_controllers.clone(),
        controllers,
        knobs,
        psi,
        freeze: freezer::method(top).map(str::to_owned),
        kill: kill.to_owned(),
        devices: Default::default(),
    }
}
