//! Registry pull and registry credentials: `POST /api/v1/images/pull`,
//! `POST /api/v1/registries/login`, `POST /api/v1/registries/logout`.

use serde::{Deserialize, Serialize};

use crate::{ApiError, Image};

/// `POST /api/v1/images/pull`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullImage {
    /// An image reference as `docker pull` takes it: `busybox`, `busybox:1.36`,
    /// `ghcr.io/org/app:v2`, `127.0.0.1:5000/app@sha256:<hex>`. A name without a registry is
    /// on Docker Hub (`docker.io/library/NAME`); without a tag it is `:latest`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[a-z0-9][A-Za-z0-9._/:@-]{0,511}$")
    )]
    pub reference: String,
}

/// The answer of a finished pull.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pulled {
    /// The name the image is stored under (`busybox:latest`, `127.0.0.1:5000/app:v2`).
    pub name: String,
    /// `sha256:` of the manifest the registry served for the reference (of the index, when
    /// it served one).
    pub digest: String,
    /// Whether the store already had this image under this name (nothing was downloaded).
    pub up_to_date: bool,
    /// Blob bytes downloaded.
    pub downloaded: u64,
    /// The stored image.
    pub image: Image,
}

/// One line of `POST /api/v1/images/pull` when `Accept` asks for `application/x-ndjson`,
/// in `docker pull`'s words: `status` is `Pulling from REPO`, `Pulling fs layer`,
/// `Already exists`, `Downloading`, `Verifying Checksum`, `Download complete`,
/// `Extracting`, `Pull complete` (with the layer's short `id`), `Digest: sha256:…`,
/// `Status: Downloaded newer image for NAME` / `Status: Image is up to date for NAME`; the
/// last line is `done` (with `pulled`) or `error` (with `error`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    pub status: String,
    /// The layer's 12 first hex digits of its blob digest, or the tag for `Pulling from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Bytes so far (`Downloading`, `Extracting`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    /// Bytes in all (`Downloading`, `Extracting`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    /// The outcome (`done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<Pulled>,
    /// Why the pull failed (`error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PullProgress {
    pub fn new(status: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            id: None,
            current: 0,
            total: 0,
            pulled: None,
            error: None,
        }
    }

    /// The line as `docker pull` prints it: `ID: Status` or `Status`.
    pub fn line(&self) -> String {
        match &self.id {
            Some(id) => format!("{id}: {}", self.status),
            None => self.status.clone(),
        }
    }
}

/// `POST /api/v1/registries/login`: credentials the daemon checks against the registry, then
/// keeps (root-only) for pulls from it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    /// `HOST[:PORT]` of the registry (`docker.io` for Docker Hub).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$")
    )]
    pub registry: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub username: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 4096))]
    pub password: String,
}

/// `POST /api/v1/registries/logout`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogout {
    /// `HOST[:PORT]` of the registry.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$")
    )]
    pub registry: String,
}

/// The answer of a login or logout.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    /// The registry's key in the credentials file (`docker.io` for Docker Hub's aliases).
    pub registry: String,
    /// `Login Succeeded`, `Removed login credentials for …`, `Not logged in to …`.
    pub status: String,
}
