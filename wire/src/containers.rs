//! Wire types of containers and images (`/api/v1/containers`, `/api/v1/images`).

use serde::{Deserialize, Serialize};

/// Resource limits of a container. Every field is optional: absent means "unlimited" on create
/// and "unchanged" on update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// CPUs worth of time per period, e.g. `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// CPUs the container may run on, e.g. `0-1,3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// Relative CPU weight, 1..=10000 (cgroup v2 scale; default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u64>,
    /// Hard memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<u64>,
    /// Memory throttling threshold in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_high: Option<u64>,
    /// Most processes and threads at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
}

/// A bind mount or a tmpfs inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// `bind` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Host path of a bind mount; absent for tmpfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Absolute path inside the container.
    pub destination: String,
    #[serde(default)]
    pub readonly: bool,
}

/// `POST /api/v1/containers`: create (and with `start`, start) a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateContainer {
    /// Unique name: 1-64 of `[a-zA-Z0-9_.-]`, starting alphanumeric. Generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Team (a cgroup level), same rules as names; default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// An imported image (name:tag or id); exactly one of `image` and `rootfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// An absolute host directory used as the read-only lower layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    /// Command and arguments; the image's entrypoint+cmd when empty.
    #[serde(default)]
    pub command: Vec<String>,
    /// `KEY=VALUE` pairs.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `uid[:gid]`, numeric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// `none` (own network namespace with loopback) or `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `no`, `on-failure[:N]` or `always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Seconds between SIGTERM and SIGKILL on stop; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// Remove the container once it has exited.
    #[serde(default)]
    pub auto_remove: bool,
    /// Start it right away.
    #[serde(default)]
    pub start: bool,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A container as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub team: String,
    /// The image reference or `rootfs:<dir>`.
    pub image: String,
    pub command: Vec<String>,
    /// `created`, `running`, `paused`, `exited`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// PID of the container's init on the host, while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Unix seconds.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    pub restart_count: u32,
    pub limits: Limits,
    pub spec: CreateContainer,
}

/// `POST /api/v1/containers/{name}/stop`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopContainer {
    /// Seconds to wait after SIGTERM before SIGKILL; the container's own timeout when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// `POST /api/v1/containers/{name}/kill`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillContainer {
    /// A signal name (`TERM`, `SIGKILL`) or number; default `KILL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// `POST /api/v1/containers/{name}/exec`: runs a command to completion inside the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub command: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds before the command is killed; default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// The answer of an exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `POST /api/v1/images/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportImage {
    /// Path on the daemon's host of a `docker save` tarball or an OCI image layout (dir or tar).
    pub path: String,
    /// Extra name:tag to give the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<hex>` of the image config.
    pub id: String,
    pub tags: Vec<String>,
    pub layers: Vec<String>,
    /// Bytes of the unpacked layers.
    pub size: u64,
    pub created_at: i64,
}
