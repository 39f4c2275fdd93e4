//! `GET /api/v1/host`: the host's kernel facts and the cgroup capability matrix;
//! `GET /api/v1/host/cgroups`: the host's cgroups with their usage, read-only, scoped to the
//! caller: admins see every cgroup of the host; anyone else sees each hierarchy's root and
//! Corral's root as bare navigation nodes (their usage — the host's and all teams' together —
//! left out) and the subtrees of their own teams under Corral's root. Nothing else of the host
//! (systemd services, other runtimes, other teams' containers) reaches a non-admin.

use axum::{Json, extract::State};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppError, AppState};
use crate::auth::{Actor, TeamScope};
use crate::cgroup::{self, Cgroups};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(host_get))
        .routes(routes!(host_cgroups))
}

/// The host's kernel facts, the cgroup capability matrix and the daemon's container defaults.
#[utoipa::path(get, path = "/host", tag = "host",
    responses(
        (status = 200, description = "Host facts", body = wire::HostInfo),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn host_get(State(state): State<AppState>) -> Result<Json<wire::HostInfo>, AppError> {
    Ok(Json(host_info_of(&state).await?))
}

/// The host facts of `GET /api/v1/host` (also the Docker API's `/info` and `/version`).
pub async fn host_info_of(state: &AppState) -> Result<wire::HostInfo, AppError> {
    let cg = state.cgroups().clone();
    let default_memory = state.config().default_memory;
    let host_id = state.config().host_id.clone();
    let mut info = tokio::task::spawn_blocking(move || host_info(&cg, default_memory))
        .await
        .map_err(|e| AppError::internal("reading host facts", e))?;
    info.host_id = host_id;
    info.ledger = state.ledger().map(super::fleet::ledger_state);
    Ok(info)
}

/// The host's cgroup tree with per-node usage, read-only, scoped to the caller. Admins get
/// every cgroup of the host. Operators and viewers get, per hierarchy, the root and Corral's
/// root (`--cgroup-root`) as navigation nodes without usage numbers, and below Corral's root
/// only the subtrees of their own teams (`/<cgroup-root>/<team>/...`); no other cgroup of the
/// host, and no other team's containers or usage.
#[utoipa::path(get, path = "/host/cgroups", tag = "host",
    responses(
        (status = 200, description = "The cgroup tree the caller may see (all of it for admins; roots and the caller's teams otherwise)", body = wire::CgroupTree),
        (status = 401, description = "No credentials", body = wire::ApiError),
        (status = 403, description = "Foreign Host", body = wire::ApiError),
    ))]
async fn host_cgroups(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Json<wire::CgroupTree>, AppError> {
    let cg = state.cgroups().clone();
    let tree = tokio::task::spawn_blocking(move || cg.browse())
        .await
        .map_err(|e| AppError::internal("walking the cgroup tree", e))?;
    let mut tree = tree_to_wire(tree);
    scope_tree(&mut tree, state.cgroups().subtree(), actor.team_scope());
    Ok(Json(tree))
}

/// Keeps what `scope` may see (see the module docs): everything for [`TeamScope::All`];
/// otherwise the hierarchy roots and Corral's root without their usage, and the subtrees of
/// the scope's teams under Corral's root.
fn scope_tree(tree: &mut wire::CgroupTree, subtree: &str, scope: TeamScope<'_>) {
    if scope == TeamScope::All {
        return;
    }
    let top = format!("/{subtree}");
    for h in &mut tree.hierarchies {
        h.nodes.retain_mut(|n| {
            if n.path == "/" || n.path == top {
                n.cpu_usage_usec = None;
                n.memory_current = None;
                n.pids_current = None;
                n.procs = None;
                return true;
            }
            n.path
                .strip_prefix(&top)
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|rest| rest.split('/').next())
                .is_some_and(|team| scope.contains(team))
        });
    }
}

fn host_info(cg: &Cgroups, default_memory: Option<u64>) -> wire::HostInfo {
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
                available: k.available && settable(&k.name),
                live: k.live && settable(&k.name),
                note: if settable(&k.name) {
                    k.note.clone()
                } else {
                    Some("the kernel has it, but Corral's limits cannot set it yet".to_owned())
                },
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
        default_memory,
        checkpoint: crate::runtime::checkpoint::support().to_wire(),
        host_id: None,
        ledger: None,
    }
}

/// Whether a container's limits can set the engine's knob `name` (only those are available).
fn settable(name: &str) -> bool {
    // The engine names CPU bandwidth by its file (`cpu.max`), the limits by its unit.
    let field = if name == "cpu_max" { "cpus" } else { name };
    crate::runtime::cgroups::SETTABLE.contains(&field)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str) -> wire::CgroupNode {
        wire::CgroupNode {
            path: path.into(),
            depth: path.matches('/').count() as u32 - u32::from(path == "/"),
            corral: path.starts_with("/corral"),
            cpu_usage_usec: Some(1),
            memory_current: Some(2),
            pids_current: Some(3),
            procs: Some(4),
        }
    }

    fn tree() -> wire::CgroupTree {
        let paths = [
            "/",
            "/system.slice",
            "/system.slice/sshd.service",
            "/corral",
            "/corral/team-a",
            "/corral/team-a/web",
            "/corral/team-ab",
            "/corral/team-b",
            "/corral/team-b/db",
            "/corralx/team-a",
        ];
        wire::CgroupTree {
            cgroup_mode: "v2".into(),
            hierarchies: vec![wire::CgroupHierarchy {
                name: "unified".into(),
                mount: "/sys/fs/cgroup".into(),
                nodes: paths.iter().map(|p| node(p)).collect(),
                truncated: false,
            }],
        }
    }

    #[test]
    fn a_member_sees_the_roots_bare_and_its_teams_whole() {
        let mut t = tree();
        let teams = ["team-a".to_owned()];
        scope_tree(&mut t, "corral", TeamScope::Only(&teams));
        let nodes = &t.hierarchies[0].nodes;
        let paths: Vec<&str> = nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/", "/corral", "/corral/team-a", "/corral/team-a/web"]
        );
        assert_eq!(
            nodes[0].cpu_usage_usec, None,
            "the host's total is not shown"
        );
        assert_eq!(nodes[1].memory_current, None, "nor all teams' together");
        assert_eq!(
            nodes[3].cpu_usage_usec,
            Some(1),
            "its own containers in full"
        );
    }

    #[test]
    fn admins_see_everything_and_teamless_users_only_roots() {
        let mut t = tree();
        scope_tree(&mut t, "corral", TeamScope::All);
        assert_eq!(t, tree());
        let mut t = tree();
        scope_tree(&mut t, "corral", TeamScope::Only(&[]));
        assert_eq!(t.hierarchies[0].nodes.len(), 2);
    }
}
