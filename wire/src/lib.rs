//! Wire types: the JSON the daemon's API speaks, shared by the backend and the dashboard.
//!
//! Architecture invariant: this crate depends on serde only, so it builds for
//! `wasm32-unknown-unknown`. Domain types live in the backend and are converted at the HTTP edge.

mod containers;
pub use containers::*;
pub mod billing;
pub mod events;
pub mod fleet;
pub mod term;

use serde::{Deserialize, Serialize};

mod auth;
pub use auth::*;
mod network;
pub use network::*;
mod teams;
pub use teams::*;
mod recommend;
pub use recommend::*;
mod top;
pub use top::*;
mod registry;
pub use registry::*;
mod checkpoint;
pub use checkpoint::*;

/// `GET /api/v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Always `"ok"` when the daemon answers.
    pub status: String,
    /// The daemon's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// `"v2"`, `"v1"` or `"hybrid"`; `None` until the cgroup engine has looked at the host.
    pub cgroup_mode: Option<String>,
}

/// `GET /api/v1/host`: what this host's kernel offers Corral (the cgroup capability matrix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    /// `"v2"`, `"v1"` or `"hybrid"`.
    pub cgroup_mode: String,
    /// Name of Corral's own cgroup subtree (`--cgroup-root`).
    pub cgroup_root: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Online CPUs.
    pub cpus: u32,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Controllers the kernel has (`/proc/cgroups`).
    pub kernel_controllers: Vec<String>,
    /// Where each of Corral's controllers lives.
    pub controllers: Vec<ControllerPlace>,
    /// Every limit Corral knows and whether it works on this host.
    pub knobs: Vec<Knob>,
    /// Pressure stall information is readable per group.
    pub psi: bool,
    /// How groups are frozen (`cgroup.freeze`, `freezer.state`), if they can be.
    pub freeze: Option<String>,
    /// How groups are killed: `cgroup.kill` or `signal`.
    pub kill: String,
    /// The device allowlist every container gets, and how it is enforced.
    pub devices: DevicePolicy,
    /// The memory limit (bytes) a container created without one gets (`corral serve
    /// --default-memory`); `None`: no default, such a container is limited by the host only.
    #[serde(default)]
    pub default_memory: Option<u64>,
    /// Whether containers can be checkpointed and restored here (criu), and why not.
    #[serde(default)]
    pub checkpoint: CheckpointSupport,
    /// This host's name in a fleet (`corral serve --host-id`): the `host` label of its
    /// `/metrics` series. Absent when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// Shipping to the fleet's shared ledger (`corral serve --ledger`); absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<fleet::LedgerState>,
}

/// The device allowlist of every container (`GET /api/v1/host`, `corral info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DevicePolicy {
    /// The mechanisms in force: `cgroup2 BPF_CGROUP_DEVICE program`, `cgroup v1
    /// devices.deny/devices.allow`; empty when the host has neither (then only the nodev flag
    /// on every writable mount keeps device nodes unusable).
    pub enforcement: Vec<String>,
    /// What a container may create and open, as v1 rules with the device's name, e.g.
    /// `c 1:3 rwm /dev/null`; everything else is denied.
    pub allowed: Vec<String>,
    /// The container's `/dev` and every writable mount are `nodev`.
    pub nodev: bool,
}

/// One controller of the capability matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ControllerPlace {
    /// `cpu`, `cpuacct`, `cpuset`, `memory`, `pids`, `io`, `freezer`.
    pub name: String,
    /// `"v1"` or `"v2"`; `None` when the host lacks it.
    pub version: Option<String>,
    /// The hierarchy's mount point.
    pub hierarchy: Option<String>,
}

/// One limit of the capability matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Knob {
    /// The limit's field name, e.g. `memory_max`.
    pub name: String,
    pub controller: String,
    /// Kernel files it is written to on this host.
    pub files: Vec<String>,
    pub available: bool,
    /// Can change while the container runs.
    pub live: bool,
    /// How this host differs from the plain cgroup v2 meaning.
    pub note: Option<String>,
}

/// `GET /api/v1/host/cgroups`: the host's cgroups, read-only. Admins get every cgroup of the
/// host; other users the hierarchy roots and Corral's root as bare navigation nodes (no usage)
/// and the subtrees of their own teams, nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CgroupTree {
    pub cgroup_mode: String,
    pub hierarchies: Vec<CgroupHierarchy>,
}

/// One hierarchy of the tree (`unified`, or a v1 one such as `memory`), depth-first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CgroupHierarchy {
    pub name: String,
    pub mount: String,
    pub nodes: Vec<CgroupNode>,
    /// Too many groups: the rest are left out.
    pub truncated: bool,
}

/// One cgroup with its usage, as far as its hierarchy reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CgroupNode {
    /// Path inside the hierarchy, `/` for the root.
    pub path: String,
    pub depth: u32,
    /// Part of Corral's own subtree.
    pub corral: bool,
    pub cpu_usage_usec: Option<u64>,
    pub memory_current: Option<u64>,
    pub pids_current: Option<u64>,
    pub procs: Option<u64>,
}

/// Every error the API returns: the UI shows `message` next to `field` when one is named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    /// A stable machine-readable code, e.g. `invalid_value`, `not_found`.
    pub code: String,
    /// A human-readable message, lowercase, naming the value and what is allowed.
    pub message: String,
    /// The request field the error is about, when there is one (e.g. `limits.memory_max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_omits_absent_field() {
        let e = ApiError {
            code: "not_found".into(),
            message: "no such container".into(),
            field: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"code":"not_found","message":"no such container"}"#
        );
    }

    #[test]
    fn token_days_accept_whole_floats_only() {
        let parse = |s: &str| serde_json::from_str::<TokenCreate>(s).map(|t| t.expires_in_days);
        assert_eq!(parse(r#"{"name":"a"}"#).unwrap(), None);
        assert_eq!(
            parse(r#"{"name":"a","expires_in_days":null}"#).unwrap(),
            None
        );
        assert_eq!(
            parse(r#"{"name":"a","expires_in_days":30}"#).unwrap(),
            Some(30)
        );
        assert_eq!(
            parse(r#"{"name":"a","expires_in_days":30.0}"#).unwrap(),
            Some(30)
        );
        for bad in ["30.5", "-1", "1e10", "\"30\"", "true"] {
            assert!(
                parse(&format!(r#"{{"name":"a","expires_in_days":{bad}}}"#)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn health_rejects_unknown_fields() {
        let r: Result<Health, _> =
            serde_json::from_str(r#"{"status":"ok","version":"1","cgroup_mode":null,"x":1}"#);
        assert!(r.is_err());
    }
}

/// Schema-only types that document a string format once, for the OpenAPI document
/// (`#[param(value_type = wire::formats::Time)]`).
#[cfg(feature = "openapi")]
pub mod formats {
    /// A container or team name: a letter or digit, then up to 63 letters, digits, `_`, `.`, `-`.
    #[derive(utoipa::ToSchema)]
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    pub struct Name(pub String);

    /// A point in time, UTC: YYYY-MM, YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS]Z or Unix seconds.
    #[derive(utoipa::ToSchema)]
    #[schema(
        pattern = r"^([0-9]{8,11}|[1-9][0-9]{3}-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?Z)?)?)$"
    )]
    pub struct Time(pub String);

    /// Free text: at most 1000 characters, no control characters but newline.
    #[derive(utoipa::ToSchema)]
    #[schema(
        max_length = 1000,
        pattern = r"^[^\u0000-\u0009\u000b-\u001f\u007f-\u009f]*$"
    )]
    pub struct Description(pub String);

    /// One device's IO limits as `io.max` writes them: `MAJ:MIN` then `rbps=`, `wbps=`,
    /// `riops=` or `wiops=` a positive number or `max`.
    #[derive(utoipa::ToSchema)]
    #[schema(
        pattern = r"^[0-9]{1,10}:[0-9]{1,10}( (rbps|wbps|riops|wiops)=([1-9][0-9]{0,18}|max))+$"
    )]
    pub struct IoMaxLine(pub String);
}
