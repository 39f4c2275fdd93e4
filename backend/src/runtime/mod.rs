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

pub mod cgroups;
pub mod config;
pub mod init;
pub mod manager;
pub mod memfd;
pub mod seccomp;
pub mod shim;
pub mod state;

use std::path::PathBuf;

pub use manager::Manager;

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
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
