//! Checkpoint and restore through CRIU (issue 18): whether the host can, and the bodies of
//! `POST /api/v1/containers/{name}/checkpoint` and `…/restore`.

use serde::{Deserialize, Serialize};

/// Whether this host can checkpoint containers (`GET /api/v1/host`'s `checkpoint`, `corral
/// info`): `criu` found on the daemon's PATH and `criu check` passed on this kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckpointSupport {
    /// Checkpoint and restore work here.
    pub available: bool,
    /// Why not, in criu's own words when `criu check` failed (empty when available).
    pub reason: String,
    /// criu's version (`criu --version`), when it was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where criu was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `POST /api/v1/containers/{name}/checkpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckpointRequest {
    /// Keep the container running after the checkpoint (default: it is stopped, as by the
    /// checkpoint's end).
    #[serde(default)]
    pub leave_running: bool,
    /// Also write the checkpoint as one tarball to this absolute path on the daemon's host
    /// (admins; the file must not exist yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
}

/// `POST /api/v1/containers/{name}/restore`: `{name}` names the checkpoint (the container it
/// was taken of, which may have been removed since).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Restore from this tarball (absolute path on the daemon's host, written by a checkpoint's
    /// `export`; admins) instead of the stored checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<String>,
    /// The restored container's name (default: the checkpointed container's).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::formats::Name>))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The answer of a checkpoint: what was written and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The checkpointed container.
    pub container: String,
    /// The container's status after the checkpoint (`running` with `leave_running`, else
    /// `exited`).
    pub status: String,
    /// Bytes of the checkpoint: criu's images plus the container's writable layer.
    pub size_bytes: u64,
    /// Milliseconds the dump took (the container's processes were frozen for this long).
    pub took_ms: u64,
    /// The tarball written, when `export` asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
}

/// A stored checkpoint (`GET /api/v1/checkpoints`): restorable by its name, also after its
/// container was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StoredCheckpoint {
    /// The checkpointed container's name (the checkpoint's name).
    pub name: String,
    /// The checkpointed container's id.
    pub container_id: String,
    pub team: String,
    /// The container's image (or `rootfs:PATH`).
    pub image: String,
    /// When the checkpoint was taken (unix seconds).
    pub created_at: i64,
    /// criu's images plus the writable layer.
    pub size_bytes: u64,
    /// The criu that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criu_version: Option<String>,
}
