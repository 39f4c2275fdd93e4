//! Daemon configuration: the `corral serve` flags and their installed defaults.

use std::{net::SocketAddr, path::PathBuf};

/// Installed default for `--listen`: loopback only, reached remotely through `ssh -L`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
/// Installed default for `--socket`: the CLI's way in (0600, in a 0700 directory).
pub const DEFAULT_SOCKET: &str = "/run/corral/corral.sock";
/// Installed default for `--state-dir`: the SQLite database and per-container state.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/corral";
/// Installed default for `--cgroup-root`: the subtree Corral owns in every hierarchy.
pub const DEFAULT_CGROUP_ROOT: &str = "corral";
/// Installed default for `--sample-interval`, seconds.
pub const DEFAULT_SAMPLE_INTERVAL: &str = "5";

/// Everything `corral serve` needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP address of the HTTP API and dashboard.
    pub listen: SocketAddr,
    /// Path of the unix socket; `None` disables it.
    pub socket: Option<PathBuf>,
    /// Directory holding `corral.db` and container state (created 0700).
    pub state_dir: PathBuf,
    /// Name of Corral's own cgroup subtree.
    pub cgroup_root: String,
    /// Host allowlist and session timeouts.
    pub auth: crate::auth::AuthConfig,
    /// Time between metering samples (1 s to 1 h).
    pub sample_interval: std::time::Duration,
    /// How long each metering history tier is kept.
    pub retention: crate::metering::store::Retention,
}

impl Config {
    /// The path of the SQLite database inside the state directory.
    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join("corral.db")
    }
}
