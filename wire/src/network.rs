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
    /// Whether outbound NAT (`table ip corral`, or iptables chains `corral-nat`/`corral-fwd`) is
    /// installed.
    pub nat: bool,
    /// How: `nftables`, `iptables (nf_tables)` or `iptables (legacy)`, while installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_backend: Option<String>,
    /// How bridge ports are kept apart, once the first bridged container started:
    /// `nftables bridge filter (anti-spoofing, teams apart)` or, where `nft` is missing,
    /// `isolated bridge ports`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2_filter: Option<String>,
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

/// A container's network as `GET /api/v1/containers/{name}` shows it (like `docker inspect`'s
/// `NetworkSettings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContainerNetwork {
    /// `none`, `host` or `bridge`.
    pub mode: String,
    /// Bridge name, for `bridge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// IPv4 address on the bridge, e.g. `10.88.0.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// Prefix length of the bridge's subnet, e.g. `24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_prefix_len: Option<u8>,
    /// The default gateway (the bridge's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// IPv6 address on the bridge (when the daemon runs with `--subnet6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    /// `64`, with an IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_prefix_len: Option<u8>,
    /// The IPv6 default gateway (the bridge's `::1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_gateway: Option<String>,
    /// Published ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PublishedPort>,
}

/// A published port: `host_ip:host_port` on the host forwards to `container_port/proto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishedPort {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

impl std::fmt::Display for PublishedPort {
    /// As `docker ps` shows it: `127.0.0.1:8080->80/tcp` (`[::1]:8080->80/tcp` for IPv6).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host_ip.contains(':') {
            write!(f, "[{}]", self.host_ip)?;
        } else {
            f.write_str(&self.host_ip)?;
        }
        write!(
            f,
            ":{}->{}/{}",
            self.host_port, self.container_port, self.proto
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_print_like_docker_ps() {
        let p = |ip: &str| PublishedPort {
            host_ip: ip.into(),
            host_port: 8080,
            container_port: 80,
            proto: "tcp".into(),
        };
        assert_eq!(p("127.0.0.1").to_string(), "127.0.0.1:8080->80/tcp");
        assert_eq!(p("::1").to_string(), "[::1]:8080->80/tcp");
    }
}
