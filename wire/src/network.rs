//! Container networking (`GET /api/v1/network`).

use serde::{Deserialize, Serialize};

/// The bridge network and who is on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NetworkInfo {
    /// Bridge name (`--bridge`, default `corral0`).
    pub bridge: String,
    /// The bridge's subnet, once chosen (configured with `--subnet`, or the first free /24 of
    /// 10.88.0.0/16 when the first bridged container starts).
    pub subnet: Option<String>,
    /// Whether outbound NAT (`table ip corral`) is installed.
    pub nat: bool,
    /// Containers with a network namespace of their own (admins only; empty for others).
    pub endpoints: Vec<NetworkEndpoint>,
}

/// One container's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NetworkEndpoint {
    /// Container id.
    pub container: String,
    /// `bridge` or `none`.
    pub mode: String,
    /// IPv4 address on the bridge.
    pub address: Option<String>,
    /// Published ports as `IP:HOST:CONTAINER/PROTO`.
    pub ports: Vec<String>,
}
