//! Finding the cgroup layout of a host: which filesystems are mounted where (from
//! `/proc/self/mountinfo`), which controllers the kernel has (from `/proc/cgroups`), and from
//! those the mode (v2, v1 or hybrid). The parsers are pure functions over file contents.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// One cgroup2 hierarchy with the controllers (modern distributions).
    V2,
    /// Only v1 hierarchies, one per controller (or co-mounted group).
    V1,
    /// v1 controller hierarchies plus a cgroup2 tree (usually without controllers).
    Hybrid,
}

impl CgroupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMode::V2 => "v2",
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "hybrid",
        }
    }
}

impl std::fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One cgroup filesystem mount from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The cgroup of the hierarchy that is mounted there (`/` unless in a cgroup namespace or a
    /// bind mount of a sub-group).
    pub root: String,
    /// `true` for cgroup2.
    pub v2: bool,
    /// For v1: the controllers of this hierarchy (`cpu`, `cpuacct`...); named hierarchies
    /// (`name=systemd`) have none.
    pub controllers: Vec<String>,
}

/// One line of `/proc/cgroups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subsystem {
    pub name: String,
    /// The v1 hierarchy id; 0 when the controller is not bound to a v1 hierarchy (so it is
    /// either on cgroup2 or unused).
    pub hierarchy: u32,
    pub num_cgroups: u64,
    pub enabled: bool,
}

/// Unescapes the octal escapes mountinfo uses for spaces, tabs, newlines and backslashes.
fn unescape(s: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(s)).into_owned()
}

/// A mountinfo path field as a path (its bytes, not necessarily UTF-8).
pub(crate) fn unescape_path(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(unescape_bytes(s)))
}

fn unescape_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && let Ok(oct) = std::str::from_utf8(oct)
            && let Ok(v) = u8::from_str_radix(oct, 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Parses `/proc/self/mountinfo` and returns the cgroup and cgroup2 mounts at or under
/// `cgroup_root` (normally the host cgroup mount, see `Roots::host`), in file order. Malformed lines are skipped.
///
/// A line is `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`.
pub fn parse_mountinfo(text: &str, cgroup_root: &Path) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 6 || r.len() < 3 {
            continue;
        }
        let fstype = r[0];
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let mount_point = unescape_path(l[4]);
        if !mount_point.starts_with(cgroup_root) {
            continue;
        }
        let v2 = fstype == "cgroup2";
        let controllers = if v2 {
            Vec::new()
        } else {
            r[2].split(',')
                .filter(|o| {
                    !o.contains('=')
                        && !matches!(
                            *o,
                            "rw" | "ro"
                                | "noprefix"
                                | "clone_children"
                                | "xattr"
                                | "cpuset_v2_mode"
                                | "favordynmods"
                        )
                })
                .map(str::to_owned)
                .collect()
        };
        // A later mount over the same point hides the earlier one.
        out.retain(|m: &CgroupMount| m.mount_point != mount_point);
        out.push(CgroupMount {
            mount_point,
            root: unescape(l[3]),
            v2,
            controllers,
        });
    }
    out
}

/// Parses `/proc/cgroups` (`#subsys_name hierarchy num_cgroups enabled`).
pub fn parse_proc_cgroups(text: &str) -> Vec<Subsystem> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 {
                return None;
            }
            Some(Subsystem {
                name: f[0].to_owned(),
                hierarchy: f[1].parse().ok()?,
                num_cgroups: f[2].parse().ok()?,
                enabled: f[3] == "1",
            })
        })
        .collect()
}

/// The cgroup layout of a host: the facts detection found, before any probing of files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub mode: CgroupMode,
    /// The cgroup2 mount, if any.
    pub unified: Option<PathBuf>,
    /// Controllers the cgroup2 root offers (its `cgroup.controllers`).
    pub v2_controllers: Vec<String>,
    /// v1 controller hierarchies (named ones such as `name=systemd` are left out).
    pub v1: Vec<CgroupMount>,
    /// Controllers the kernel has, from `/proc/cgroups` (enabled ones only).
    pub kernel_controllers: Vec<String>,
}

impl Layout {
    /// Decides the mode from the parsed mounts. `v2_root_controllers` is the content of the
    /// cgroup2 root's `cgroup.controllers` (empty when there is no cgroup2 mount). `None` when
    /// no cgroup filesystem is mounted.
    pub fn classify(
        mounts: &[CgroupMount],
        subsystems: &[Subsystem],
        v2_root_controllers: &str,
    ) -> Option<Layout> {
        let unified = mounts.iter().find(|m| m.v2).map(|m| m.mount_point.clone());
        let v1: Vec<CgroupMount> = mounts
            .iter()
            .filter(|m| !m.v2 && !m.controllers.is_empty())
            .cloned()
            .collect();
        let mode = match (unified.is_some(), v1.is_empty()) {
            (true, true) => CgroupMode::V2,
            (true, false) => CgroupMode::Hybrid,
            (false, false) => CgroupMode::V1,
            (false, true) => return None,
        };
        Some(Layout {
            mode,
            unified,
            v2_controllers: v2_root_controllers
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            v1,
            kernel_controllers: subsystems
                .iter()
                .filter(|s| s.enabled)
                .map(|s| s.name.clone())
                .collect(),
        })
    }

    /// The v1 hierarchy a controller is mounted in (`blkio`, `cpu`...).
    pub fn v1_mount(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))
            .map(|m| m.mount_point.as_path())
    }

    /// Whether the cgroup2 root offers a controller (`cpu`, `io`...).
    pub fn v2_has(&self, controller: &str) -> bool {
        self.v2_controllers.iter().any(|c| c == controller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The captured files were taken on hosts that mount cgroups at the usual place.
    const ROOT: &str = super::super::HOST_CGROUP_FS;

    fn at(rel: &str) -> PathBuf {
        Path::new(ROOT).join(rel)
    }

    fn layout(mountinfo: &str, cgroups: &str, v2_ctl: &str) -> Layout {
        Layout::classify(
            &parse_mountinfo(mountinfo, Path::new(ROOT)),
            &parse_proc_cgroups(cgroups),
            v2_ctl,
        )
        .unwrap()
    }

    #[test]
    fn hybrid_host_captured() {
        let mounts = parse_mountinfo(include_str!("testdata/hybrid.mountinfo"), Path::new(ROOT));
        assert_eq!(mounts.len(), 10, "{mounts:?}");
        let l = layout(
            include_str!("testdata/hybrid.mountinfo"),
            include_str!("testdata/hybrid.cgroups"),
            "",
        );
        assert_eq!(l.mode, CgroupMode::Hybrid);
        assert_eq!(l.unified.as_deref(), Some(at("unified").as_path()));
        assert_eq!(l.v1_mount("cpu"), Some(at("cpu").as_path()));
        assert_eq!(l.v1_mount("cpuacct"), Some(at("cpuacct").as_path()));
        assert_eq!(l.v1_mount("blkio"), Some(at("blkio").as_path()));
        assert_eq!(
            l.v1_mount("systemd"),
            None,
            "named hierarchies are not controllers"
        );
        assert_eq!(l.v1.len(), 8);
        assert!(l.v2_controllers.is_empty());
        assert!(l.kernel_controllers.contains(&"pids".to_owned()));
        let subs = parse_proc_cgroups(include_str!("testdata/hybrid.cgroups"));
        let mem = subs.iter().find(|s| s.name == "memory").unwrap();
        assert_eq!((mem.hierarchy, mem.enabled), (4, true));
    }

    #[test]
    fn pure_v2() {
        let l = layout(
            include_str!("testdata/v2.mountinfo"),
            include_str!("testdata/v2.cgroups"),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        );
        assert_eq!(l.mode, CgroupMode::V2);
        assert_eq!(l.unified.as_deref(), Some(Path::new(ROOT)));
        assert!(l.v1.is_empty());
        assert!(l.v2_has("io") && l.v2_has("memory") && !l.v2_has("freezer"));
        let subs = parse_proc_cgroups(include_str!("testdata/v2.cgroups"));
        assert!(subs.iter().all(|s| s.hierarchy == 0));
    }

    #[test]
    fn pure_v1_with_comounts() {
        let l = layout(
            include_str!("testdata/v1.mountinfo"),
            include_str!("testdata/v1.cgroups"),
            "",
        );
        assert_eq!(l.mode, CgroupMode::V1);
        assert_eq!(l.unified, None);
        assert_eq!(l.v1_mount("cpu"), Some(at("cpu,cpuacct").as_path()));
        assert_eq!(l.v1_mount("cpuacct"), Some(at("cpu,cpuacct").as_path()));
        assert_eq!(
            l.v1_mount("net_prio"),
            Some(at("net_cls,net_prio").as_path())
        );
        assert_eq!(l.v1_mount("memory"), Some(at("memory").as_path()));
    }

    #[test]
    fn nothing_mounted_and_other_roots() {
        let text = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
        assert!(Layout::classify(&parse_mountinfo(text, Path::new(ROOT)), &[], "").is_none());
        // cgroup mounts outside the root (e.g. a container's) are ignored.
        let text = "41 31 0:38 / /run/x/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
        assert!(parse_mountinfo(text, Path::new(ROOT)).is_empty());
        // Escaped spaces and optional fields.
        let text =
            format!("41 31 0:38 / {ROOT}/a\\040b rw shared:4 master:1 - cgroup2 cgroup2 rw\n");
        let m = parse_mountinfo(&text, Path::new(ROOT));
        assert_eq!(m[0].mount_point, at("a b"));
        assert!(m[0].v2);
    }
}
