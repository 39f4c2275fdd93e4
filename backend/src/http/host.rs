//! `GET /api/v1/host`: the host's kernel facts and the cgroup capability matrix;
//! `GET /api/v1/host/cgroups`: every cgroup of the host with its usage, read-only.

use axum::{Json, Router, extract::State, routing::get};

use super::{AppError, AppState};
use crate::cgroup::{self, Cgroups};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/host", get(host_get))
        .route("/host/cgroups", get(host_cgroups))
}

async fn host_get(State(state): State<AppState>) -> Result<Json<wire::HostInfo>, AppError> {
    let cg = state.cgroups().clone();
    let info = tokio::task::spawn_blocking(move || host_info(&cg))
        .await
        .map_err(|e| AppError::internal("reading host facts", e))?;
    Ok(Json(info))
}

async fn host_cgroups(State(state): State<AppState>) -> Result<Json<wire::CgroupTree>, AppError> {
    let cg = state.cgroups().clone();
    let tree = tokio::task::spawn_blocking(move || cg.browse())
        .await
        .map_err(|e| AppError::internal("walking the cgroup tree", e))?;
    Ok(Json(tree_to_wire(tree)))
}

fn host_info(cg: &Cgroups) -> wire::HostInfo {
    let caps = cg.capabilities();
    let proc = &cg.roots().proc;
    let kernel = std::fs::read_to_string(proc.join("sys/kernel/osrelease"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let memory_bytes = std::fs::read_to_string(proc.join("meminfo"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    let cpus = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .map(|n| n as u32)
        .unwrap_or(1);
    wire::HostInfo {
        cgroup_mode: caps.mode.to_string(),
        cgroup_root: cg.subtree().to_owned(),
        kernel,
        cpus,
        memory_bytes,
        kernel_controllers: caps.kernel_controllers.clone(),
        controllers: caps
            .controllers
            .iter()
            .map(|c| wire::ControllerPlace {
                name: c.name.clone(),
                version: c.version.clone(),
                hierarchy: c.hierarchy.as_ref().map(|p| p.display().to_string()),
            })
            .collect(),
        knobs: caps
            .knobs
            .iter()
            .map(|k| wire::Knob {
                name: k.name.clone(),
                controller: k.controller.clone(),
                files: k.files.clone(),
                available: k.available,
                live: k.live,
                note: k.note.clone(),
            })
            .collect(),
        psi: caps.psi,
        freeze: caps.freeze.clone(),
        kill: caps.kill.clone(),
        devices: wire::DevicePolicy {
            enforcement: caps.devices.describe(),
            allowed: cgroup::devices::ALLOWED
                .iter()
                .map(|r| format!("{} {}", r.v1_line(), r.name))
                .collect(),
            nodev: true,
        },
    }
}

fn tree_to_wire(tree: cgroup::CgroupTree) -> wire::CgroupTree {
    wire::CgroupTree {
        cgroup_mode: tree.mode.to_string(),
        hierarchies: tree
            .hierarchies
            .into_iter()
            .map(|h| wire::CgroupHierarchy {
                name: h.name,
                mount: h.mount.display().to_string(),
                truncated: h.truncated,
                nodes: h
                    .nodes
                    .into_iter()
                    .map(|n| wire::CgroupNode {
                        path: n.path,
                        depth: n.depth,
                        corral: n.corral,
                        cpu_usage_usec: n.cpu_usage_usec,
                        memory_current: n.memory_current,
                        pids_current: n.pids_current,
                        procs: n.procs,
                    })
                    .collect(),
            })
            .collect(),
    }
}
