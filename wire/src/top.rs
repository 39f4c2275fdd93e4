//! `GET /api/v1/containers/{name}/top`: the processes of a running container.

use serde::{Deserialize, Serialize};

/// One process of a container, as the host sees it (`ps -ef`'s columns, typed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContainerProcess {
    /// PID on the host.
    pub pid: i32,
    /// Parent PID on the host (the container's init has its monitor as parent).
    pub ppid: i32,
    /// Real user id on the host (a user-namespaced container's root is a high uid).
    pub uid: u32,
    /// The host's name of `uid` (`/etc/passwd`), or the number.
    pub user: String,
    /// CPU time over the process's lifetime, in percent of one core (`ps`'s `C`).
    pub cpu_percent: u32,
    /// Start time, Unix seconds.
    pub started_at: i64,
    /// Controlling terminal (`pts/3`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<String>,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// The command line; `[comm]` when it has none (a kernel thread or a zombie).
    pub command: String,
}
