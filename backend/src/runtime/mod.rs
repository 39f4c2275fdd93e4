//! The container runtime (issue 4).
//!
//! Process model: the daemon never forks, clones, unshares or setns on a tokio thread. Each
//! container has a monitor, `corral __shim DIR`, started from a sealed memfd copy of the corral
//! binary ([`memfd`]). The monitor leaves the daemon's session, clones the container init into
//! new namespaces ([`init`]), drains its output into size-capped logs and records the exit in
//! `DIR/state.json` ([`state`]). `corral __exec DIR -- CMD` enters a running container the same
//! way. The daemon side ([`manager`]) keeps the records in SQLite and finds monitors again after
//! a restart.
//!
//! Architecture invariant: only `runtime::init` and `runtime::shim` change namespaces, and they
//! run only in freshly exec'd single-threaded processes.

pub mod attach;
pub mod cgroups;
pub mod checkpoint;
pub mod config;
pub mod console;
pub mod disk;
pub mod exec;
pub mod init;
pub mod manager;
pub mod memfd;
mod registry;
pub mod relay;
pub mod seccomp;
pub mod shim;
pub mod state;
pub mod status;
pub mod top;
mod watch;
pub mod zygote;

use std::{path::PathBuf, sync::OnceLock};

use nix::sys::resource::{Resource, getrlimit, setrlimit};

pub use manager::Manager;

/// The soft open-file limit the daemon started with. `corral serve` raises its own (the
/// sampler keeps about 16 cgroup files open per container); the monitor and exec helpers it
/// starts for containers get this one back, so containers see what the admin configured.
static STARTING_NOFILE: OnceLock<u64> = OnceLock::new();

/// Raises the soft open-file limit to the hard one, as Go's runtime does for dockerd: under
/// systemd's default soft limit of 1024, the kept-open files of about 60 containers would
/// exhaust it (and a counter file that cannot be opened is not metered).
pub fn raise_open_file_limit() {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            let _ = STARTING_NOFILE.set(soft);
            if soft < hard
                && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            {
                tracing::warn!(error = %e, soft, "cannot raise the open-file limit");
            }
            if hard < 65_536 {
                tracing::warn!(
                    limit = hard,
                    "the open-file limit is low: metering keeps about 16 files open per container"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

/// Carries the daemon's starting soft open-file limit to the helpers it starts.
const NOFILE_ENV: &str = "CORRAL_NOFILE";

/// Passes the daemon's starting soft open-file limit to a helper (`__shim`, `__exec`).
pub(crate) fn pass_open_file_limit<C>(set_env: impl FnOnce(&'static str, String) -> C) {
    if let Some(soft) = STARTING_NOFILE.get() {
        set_env(NOFILE_ENV, soft.to_string());
    }
}

/// First thing in a helper: the soft open-file limit the daemon started with, so the
/// container (and the helper itself) do not keep the daemon's raised one.
pub(crate) fn restore_open_file_limit() {
    let Some(soft) = std::env::var(NOFILE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard);
    }
}

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The request needs a privilege the caller lacks (checked on the validated spec).
    #[error("{field}: {message}")]
    Forbidden { field: String, message: String },
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container name already in use: {0}")]
    NameInUse(String),
    #[error("container {name} is {status}: {message}")]
    Conflict {
        name: String,
        status: String,
        message: String,
    },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{action} failed")]
    Sys { action: String, source: nix::Error },
    #[error("cannot start container {name}: {message}")]
    Start { name: String, message: String },
    #[error("cgroup operation failed: {0}")]
    Cgroup(String),
    #[error("bad state file {path}")]
    State {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// criu could not checkpoint or restore (its own words).
    #[error("{0}")]
    Checkpoint(String),
    #[error("no checkpoint of {0}")]
    NoCheckpoint(String),
}

impl RuntimeError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

impl From<rusqlite::Error> for RuntimeError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(crate::store::StoreError::Sql(e))
    }
}
