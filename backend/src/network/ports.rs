//! Port publishing: the `-p [IP:]HOST:CONTAINER[/tcp|/udp]` spec, and the userland proxy that
//! forwards the host port into the container.
//!
//! Why a proxy and not DNAT: connections that the host itself makes to 127.0.0.1 never pass
//! PREROUTING, and DNAT in OUTPUT to a bridge address needs `route_localnet=1` (which lets
//! martian 127/8 packets onto the bridge — the CVE-2020-8558 class). A listener in the daemon
//! works for local and remote clients alike, binds the exact address asked for, and turns a port
//! already in use into an immediate, precise error. Docker's default (`userland-proxy`) makes the
//! same choice for loopback. The cost is a copy through the daemon (see the benchmark).

use std::{
    collections::HashMap,
    fmt, io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Mutex,
    task::{AbortHandle, JoinSet},
};

use super::NetworkError;

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One published port: `host_ip:host_port` on the host forwards to `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            IpAddr::V6(ip) => write!(f, "[{ip}]")?,
            IpAddr::V4(ip) => write!(f, "{ip}")?,
        }
        write!(
            f,
            ":{}:{}/{}",
            self.host_port, self.container_port, self.proto
        )
    }
}

impl PortSpec {
    /// Parses `[IP:]HOST:CONTAINER[/tcp|/udp]`; `field` names the input in errors (`ports[0]`).
    /// The address defaults to 127.0.0.1 (reachable from this host only, e.g. through
    /// `ssh -L`); ports are 1-65535; an IPv6 address is written in brackets.
    pub fn parse(field: &str, s: &str) -> Result<Self, NetworkError> {
        let invalid = |reason: String| NetworkError::InvalidPort {
            field: field.to_owned(),
            value: s.to_owned(),
            reason,
        };
        let (rest, proto) = match s.rsplit_once('/') {
            None => (s, Proto::Tcp),
            Some((rest, "tcp")) => (rest, Proto::Tcp),
            Some((rest, "udp")) => (rest, Proto::Udp),
            Some((_, other)) => {
                return Err(invalid(format!("protocol {other:?} must be tcp or udp")));
            }
        };
        let (addr, ports) = if let Some(v6) = rest.strip_prefix('[') {
            let (ip, after) = v6.split_once("]:").ok_or_else(|| {
                invalid("an IPv6 address must look like [::1]:HOST:CONTAINER".into())
            })?;
            (Some(ip), after)
        } else {
            match rest.split(':').count() {
                2 => (None, rest),
                3 => {
                    let (ip, after) = rest.split_once(':').unwrap_or((rest, ""));
                    (Some(ip), after)
                }
                _ => {
                    return Err(invalid(
                        "must be [IP:]HOST:CONTAINER[/tcp|/udp], e.g. 8080:80".into(),
                    ));
                }
            }
        };
        let host_ip = match addr {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(ip) => ip
                .parse()
                .map_err(|_| invalid(format!("address {ip:?} must be an IP address")))?,
        };
        let (host, container) = ports.split_once(':').ok_or_else(|| {
            invalid("must be [IP:]HOST:CONTAINER[/tcp|/udp], e.g. 8080:80".into())
        })?;
        let port = |what: &str, p: &str| -> Result<u16, NetworkError> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(invalid(format!("{what} port {p:?} must be 1-65535"))),
            }
        };
        Ok(PortSpec {
            host_ip,
            host_port: port("host", host)?,
            container_port: port("container", container)?,
            proto,
        })
    }

    /// Parses a list, naming each entry `ports[i]`, and refuses the same host port twice.
    pub fn parse_all(specs: &[String]) -> Result<Vec<PortSpec>, NetworkError> {
        let mut out: Vec<PortSpec> = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            let field = format!("ports[{i}]");
            let p = PortSpec::parse(&field, s)?;
            if out
                .iter()
                .any(|q| q.host_port == p.host_port && q.proto == p.proto && q.host_ip == p.host_ip)
            {
                return Err(NetworkError::InvalidPort {
                    field,
                    value: s.clone(),
                    reason: format!("host port {}/{} is listed twice", p.host_port, p.proto),
                });
            }
            out.push(p);
        }
        Ok(out)
    }

    fn host_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host_ip, self.host_port)
    }
}

impl FromStr for PortSpec {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PortSpec::parse("port", s)
    }
}

/// The listeners of one container's published ports; dropping it stops them and every
/// connection they carry.
pub struct Proxies {
    tasks: Vec<AbortHandle>,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn bind_err(addr: SocketAddr, proto: Proto, source: io::Error) -> NetworkError {
    if source.kind() == io::ErrorKind::AddrInUse {
        NetworkError::PortInUse {
            port: addr.port(),
            proto,
            ip: addr.ip(),
        }
    } else {
        NetworkError::Bind { addr, source }
    }
}

/// Binds every host port first (so a port in use fails the whole set, nothing half-open), then
/// starts forwarding to `target`.
pub async fn publish(ports: &[PortSpec], target: IpAddr) -> Result<Proxies, NetworkError> {
    enum Bound {
        Tcp(TcpListener, SocketAddr),
        Udp(UdpSocket, SocketAddr),
    }
    let mut bound = Vec::new();
    for p in ports {
        let addr = p.host_addr();
        let to = SocketAddr::new(target, p.container_port);
        bound.push(match p.proto {
            Proto::Tcp => Bound::Tcp(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| bind_err(addr, p.proto, e))?,
                to,
            ),
            Proto::Udp => Bound::Udp(
                UdpSocket::bind(addr)
                    .await
                    .map_err(|e| bind_err(addr, p.proto, e))?,
                to,
            ),
        });
    }
    let tasks = bound
        .into_iter()
        .map(|b| match b {
            Bound::Tcp(l, to) => tokio::spawn(tcp_forward(l, to)).abort_handle(),
            Bound::Udp(s, to) => tokio::spawn(udp_forward(s, to)).abort_handle(),
        })
        .collect();
    Ok(Proxies { tasks })
}

async fn tcp_forward(listener: TcpListener, to: SocketAddr) {
    // Connections live in this set: aborting the accept loop drops it and ends them all.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut client, _)) => {
                    conns.spawn(async move {
                        let _ = client.set_nodelay(true);
                        match TcpStream::connect(to).await {
                            Ok(mut upstream) => {
                                let _ = upstream.set_nodelay(true);
                                let _ = tokio::io::copy_bidirectional_with_sizes(
                                    &mut client, &mut upstream, 64 * 1024, 64 * 1024,
                                ).await;
                            }
                            Err(e) => tracing::debug!(%to, error = %e, "published port: upstream refused"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "published port: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// UDP: one upstream socket per client address, so replies find their way back; a flow idle for
/// [`UDP_IDLE`] is forgotten.
const UDP_IDLE: Duration = Duration::from_secs(60);

async fn udp_forward(socket: UdpSocket, to: SocketAddr) {
    let socket = Arc::new(socket);
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // Finished flows are reaped as they end, so the set stays as small as the live flows.
        let (n, client) = tokio::select! {
            got = socket.recv_from(&mut buf) => match got {
                Ok(x) => x,
                Err(_) => continue,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let existing = flows.lock().await.get(&client).cloned();
        let upstream = match existing {
            Some(u) => u,
            None => {
                let bind: SocketAddr = if to.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let Ok(u) = UdpSocket::bind(bind).await else {
                    continue;
                };
                if u.connect(to).await.is_err() {
                    continue;
                }
                let u = Arc::new(u);
                flows.lock().await.insert(client, u.clone());
                let (back, u2, flows2) = (socket.clone(), u.clone(), flows.clone());
                tasks.spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, u2.recv(&mut buf)).await {
                        let _ = back.send_to(&buf[..n], client).await;
                    }
                    flows2.lock().await.remove(&client);
                });
                u
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok = [
            ("8080:80", "127.0.0.1:8080:80/tcp"),
            ("8080:80/udp", "127.0.0.1:8080:80/udp"),
            ("0.0.0.0:8080:80/tcp", "0.0.0.0:8080:80/tcp"),
            ("[::1]:8080:80", "[::1]:8080:80/tcp"),
        ];
        for (input, want) in ok {
            assert_eq!(PortSpec::parse("p", input).unwrap().to_string(), want);
        }
        let bad = [
            ("80", "HOST:CONTAINER"),
            ("0:80", "host port \"0\""),
            ("8080:70000", "container port \"70000\""),
            ("8080:80/sctp", "tcp or udp"),
            ("300.1.1.1:1:2", "must be an IP address"),
            ("a:b:c:d", "HOST:CONTAINER"),
        ];
        for (input, want) in bad {
            let e = PortSpec::parse("ports[3]", input).unwrap_err().to_string();
            assert!(e.contains("ports[3]") && e.contains(want), "{input}: {e}");
        }
        let e = PortSpec::parse_all(&["1:2".into(), "1:3".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ports[1]") && e.contains("twice"), "{e}");
    }
}
