//! Read-only browsing of every cgroup on the host (systemd services, other runtimes'
//! containers, Corral's own), with per-node usage. Never writes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{cpu, detect::CgroupMode, detect::Layout, fs, memory, pids};

/// At most this many nodes per hierarchy are listed.
pub const MAX_NODES: usize = 5000;

/// The cgroup trees of the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CgroupTree {
    pub mode: CgroupMode,
    /// cgroup2 first (v2 and hybrid); on v1 and hybrid also the `cpuacct` and `memory` trees,
    /// which is where v1 usage lives.
    pub hierarchies: Vec<BrowseHierarchy>,
}

/// One hierarchy, depth-first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrowseHierarchy {
    /// `unified`, or the v1 controllers (`cpu,cpuacct`, `memory`).
    pub name: String,
    pub mount: PathBuf,
    pub nodes: Vec<BrowseNode>,
    /// More than [`MAX_NODES`] groups: the rest are left out.
    pub truncated: bool,
}

/// One cgroup and its usage (whatever this hierarchy reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrowseNode {
    /// Path inside the hierarchy, `/` for the root.
    pub path: String,
    pub depth: u32,
    /// Inside Corral's own subtree.
    pub corral: bool,
    pub cpu_usage_usec: Option<u64>,
    pub memory_current: Option<u64>,
    pub pids_current: Option<u64>,
    /// Processes directly in this group.
    pub procs: Option<u64>,
}

pub(crate) fn walk(layout: &Layout, subtree: &str) -> CgroupTree {
    let mut hierarchies = Vec::new();
    if let Some(u) = &layout.unified {
        hierarchies.push(walk_one("unified".into(), u, subtree));
    }
    if layout.mode != CgroupMode::V2 {
        let mut seen: Vec<&Path> = Vec::new();
        for c in ["cpuacct", "memory"] {
            if let Some(m) = layout.v1_mount(c)
                && !seen.contains(&m)
            {
                seen.push(m);
                let name = layout
                    .v1
                    .iter()
                    .find(|h| h.mount_point == m)
                    .map(|h| h.controllers.join(","))
                    .unwrap_or_else(|| c.to_owned());
                hierarchies.push(walk_one(name, m, subtree));
            }
        }
    }
    CgroupTree {
        mode: layout.mode,
        hierarchies,
    }
}

fn walk_one(name: String, mount: &Path, subtree: &str) -> BrowseHierarchy {
    let mut nodes = Vec::new();
    let mut truncated = false;
    let mut stack: Vec<(PathBuf, u32)> = vec![(mount.to_owned(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        if nodes.len() >= MAX_NODES {
            truncated = true;
            break;
        }
        let rel = dir.strip_prefix(mount).unwrap_or(Path::new(""));
        let path = format!("/{}", rel.display());
        let corral = rel.iter().next().is_some_and(|first| first == subtree);
        nodes.push(node(&dir, path, depth, corral));
        let mut kids = fs::children(&dir);
        kids.reverse();
        stack.extend(kids.into_iter().map(|k| (k, depth + 1)));
    }
    BrowseHierarchy {
        name,
        mount: mount.to_owned(),
        nodes,
        truncated,
    }
}

fn node(dir: &Path, path: String, depth: u32, corral: bool) -> BrowseNode {
    let cpu = fs::read_opt(&dir.join(cpu::STAT))
        .and_then(|t| fs::flat_get(&t, "usage_usec"))
        .or_else(|| fs::read_u64(&dir.join(cpu::V1_USAGE)).map(|ns| ns / 1000));
    let mem = fs::read_u64(&dir.join(memory::CURRENT))
        .or_else(|| fs::read_u64(&dir.join(memory::V1_USAGE)));
    let procs = fs::read_opt(&dir.join("cgroup.procs")).map(|t| t.lines().count() as u64);
    BrowseNode {
        path,
        depth,
        corral,
        cpu_usage_usec: cpu,
        memory_current: mem,
        pids_current: fs::read_u64(&dir.join(pids::CURRENT)),
        procs,
    }
}
