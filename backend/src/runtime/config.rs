//! `DIR/config.json`: everything the monitor needs to build the container, written by the daemon
//! before the monitor starts and never changed while it runs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Docker's default capabilities (the 14 of moby's `oci/caps/defaults.go`).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Largest size of one log file before it is rotated to `console.log.1`.
pub const DEFAULT_LOG_MAX: u64 = 8 << 20;
/// PATH used to find the command when the container's env has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A mount the monitor sets up inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountConfig {
    Bind {
        source: PathBuf,
        destination: String,
        readonly: bool,
    },
    Tmpfs {
        destination: String,
    },
}

/// When the monitor starts the container again after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    /// Restart after a non-zero exit, at most `max` times (0 = unbounded).
    OnFailure {
        max: u32,
    },
    Always,
}

impl RestartPolicy {
    /// Parses `no`, `on-failure`, `on-failure:N` or `always`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "no" | "" => Some(Self::No),
            "always" => Some(Self::Always),
            "on-failure" => Some(Self::OnFailure { max: 0 }),
            _ => s
                .strip_prefix("on-failure:")
                .and_then(|n| n.parse().ok())
                .map(|max| Self::OnFailure { max }),
        }
    }

    /// Whether a container that exited with `code` after `restarts` restarts goes again.
    pub fn should_restart(self, code: i32, restarts: u32) -> bool {
        match self {
            Self::No => false,
            Self::Always => true,
            Self::OnFailure { max } => code != 0 && (max == 0 || restarts < max),
        }
    }
}

/// The container as the monitor builds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    pub id: String,
    pub name: String,
    /// Read-only lower layers, topmost first.
    pub lower: Vec<PathBuf>,
    /// Command and arguments (never empty).
    pub args: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Absolute working directory inside the container.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    pub mounts: Vec<MountConfig>,
    /// Own network namespace with loopback up (`false`: the host's network).
    pub net_ns: bool,
    /// The `cgroup.procs` files the init is written into before it runs anything.
    pub cgroup_procs: Vec<PathBuf>,
    /// Mount the (namespaced) cgroup2 hierarchy read-only at /sys/fs/cgroup.
    pub cgroup2_mount: bool,
    pub restart: RestartPolicy,
    pub log_max: u64,
    /// Capability names kept in bounding/permitted/effective.
    pub caps: Vec<String>,
}

/// Files of one container's directory.
#[derive(Debug, Clone)]
pub struct ContainerDir(pub PathBuf);

impl ContainerDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    pub fn state(&self) -> PathBuf {
        self.0.join("state.json")
    }
    /// Present while a stop was asked for: the monitor does not restart the container.
    pub fn stop_marker(&self) -> PathBuf {
        self.0.join("stopping")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("console.log")
    }
    pub fn log_rotated(&self) -> PathBuf {
        self.0.join("console.log.1")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.0.join("shim.log")
    }
    pub fn upper(&self) -> PathBuf {
        self.0.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.0.join("work")
    }
    pub fn merged(&self) -> PathBuf {
        self.0.join("rootfs")
    }

    pub fn read_config(&self) -> Result<ShimConfig, String> {
        let path = self.config();
        let data = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        serde_json::from_slice(&data).map_err(|e| format!("parse {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        assert_eq!(RestartPolicy::parse("no"), Some(RestartPolicy::No));
        assert_eq!(
            RestartPolicy::parse("on-failure:3"),
            Some(RestartPolicy::OnFailure { max: 3 })
        );
        assert_eq!(RestartPolicy::parse("on-failure:x"), None);
        assert_eq!(RestartPolicy::parse("sometimes"), None);
        let p = RestartPolicy::OnFailure { max: 2 };
        assert!(p.should_restart(1, 0));
        assert!(p.should_restart(1, 1));
        assert!(!p.should_restart(1, 2));
        assert!(!p.should_restart(0, 0));
        assert!(RestartPolicy::Always.should_restart(0, 100));
    }
}
