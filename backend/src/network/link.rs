//! Links, addresses and routes through rtnetlink (no `ip` binary).

use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
};

use futures::TryStreamExt;
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        link::{InfoData, InfoVeth, LinkAttribute},
        route::{RouteAddress, RouteAttribute},
    },
};

use super::{
    NetworkError,
    subnet::{Subnet, Subnet6},
};

/// Name the container's interface gets.
pub const CONTAINER_IF: &str = "eth0";

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let op = op.into();
    move |source| NetworkError::Netlink { op, source }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// Opens a netlink connection in the calling thread's network namespace and drives it on the
/// current tokio runtime.
pub fn connect() -> Result<Handle, NetworkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetworkError::Io {
        path: "netlink".into(),
        source,
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The index of the link called `name`, if there is one.
pub async fn index(h: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    match h
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
    {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("look up link {name}"))(e)),
    }
}

/// Deletes the link `name` if it exists (deleting one end of a veth pair deletes both).
pub async fn delete(h: &Handle, name: &str) -> Result<(), NetworkError> {
    if let Some(i) = index(h, name).await? {
        match h.link().del(i).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::ENODEV) => {}
            Err(e) => return Err(nl(format!("delete link {name}"))(e)),
        }
    }
    Ok(())
}

/// The IPv4 subnets of the links called `name` (the bridge's address, if it has one).
pub async fn addresses(h: &Handle, link: u32) -> Result<Vec<Subnet>, NetworkError> {
    let mut out = Vec::new();
    let mut s = h.address().get().set_link_index_filter(link).execute();
    while let Some(m) = s.try_next().await.map_err(nl("list addresses"))? {
        for a in &m.attributes {
            if let rtnetlink::packet_route::address::AddressAttribute::Address(
                std::net::IpAddr::V4(ip),
            ) = a
                && let Some(n) = Subnet::new(*ip, m.header.prefix_len)
            {
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// An IPv4 route of the host: destination network and output link.
#[derive(Debug, Clone)]
pub struct Route {
    pub dest: Subnet,
    pub oif: Option<u32>,
}

/// Every IPv4 route with a destination prefix (the default route is left out), in all tables.
pub async fn routes(h: &Handle) -> Result<Vec<Route>, NetworkError> {
    let mut out = Vec::new();
    let mut s = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(m) = s.try_next().await.map_err(nl("list routes"))? {
        let len = m.header.destination_prefix_length;
        if len == 0 {
            continue;
        }
        let mut dest = None;
        let mut oif = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dest = Some(*ip),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        // Local/broadcast routes of the `local` table describe addresses, not networks.
        if m.header.table == 255 {
            continue;
        }
        if let Some(d) = dest.and_then(|ip| Subnet::new(ip, len)) {
            out.push(Route { dest: d, oif });
        }
    }
    Ok(out)
}

/// Creates the bridge `name` with `gateway/prefix` unless it exists, and brings it up.
/// Returns its index.
pub async fn ensure_bridge(h: &Handle, name: &str, subnet: Subnet) -> Result<u32, NetworkError> {
    ensure_bridge6(h, name, subnet, None).await
}

/// [`ensure_bridge`], with `subnet6`'s gateway address on the bridge too.
pub async fn ensure_bridge6(
    h: &Handle,
    name: &str,
    subnet: Subnet,
    subnet6: Option<Subnet6>,
) -> Result<u32, NetworkError> {
    let idx = match index(h, name).await? {
        Some(i) => i,
        None => {
            match h.link().add(LinkBridge::new(name).build()).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(nl(format!("create bridge {name}"))(e)),
            }
            index(h, name)
                .await?
                .ok_or_else(|| NetworkError::LinkMissing(name.to_owned()))?
        }
    };
    let have = addresses(h, idx).await?;
    let gw = subnet.gateway();
    if !have.contains(&subnet) {
        match h
            .address()
            .add(idx, gw.into(), subnet.prefix())
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(nl(format!("add {gw}/{} to {name}", subnet.prefix()))(e)),
        }
    }
    if let Some(net6) = subnet6 {
        add_ipv6(h, idx, net6.gateway(), name).await?;
    }
    h.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(nl(format!("bring {name} up")))?;
    Ok(idx)
}

/// Adds `ip/64` to the link `idx` without duplicate address detection (the address is ours
/// alone on this link, and DAD would leave it unusable for a second); an existing one is fine.
pub async fn add_ipv6(h: &Handle, idx: u32, ip: Ipv6Addr, what: &str) -> Result<(), NetworkError> {
    use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
    let mut req = h.address().add(idx, ip.into(), 64);
    let m = req.message_mut();
    m.header.flags = AddressHeaderFlags::Nodad;
    m.attributes
        .push(AddressAttribute::Flags(AddressFlags::Nodad));
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(nl(format!("add {ip}/64 to {what}"))(e)),
    }
}

/// The IPv6 default route inside a container: `::/0 via gw dev eth0`.
async fn add_ipv6_default(h: &Handle, eth: u32, gw: Ipv6Addr) -> Result<(), NetworkError> {
    match h
        .route()
        .add(
            RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(eth)
                .build(),
        )
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(nl(format!("default route via {gw}"))(e)),
    }
}

/// Inside a container's namespace: `eth0` gets `ip/64` and a default route via `gw` (for a
/// container attached before IPv6 was configured, at daemon start, as well as at attach).
pub async fn configure_inside_v6(
    h: Handle,
    ip: Ipv6Addr,
    gw: Ipv6Addr,
) -> Result<(), NetworkError> {
    let eth = index(&h, CONTAINER_IF)
        .await?
        .ok_or_else(|| NetworkError::LinkMissing(CONTAINER_IF.into()))?;
    add_ipv6(&h, eth, ip, CONTAINER_IF).await?;
    add_ipv6_default(&h, eth, gw).await
}

/// Creates a veth pair: `host_name` on the host, attached to `bridge` and up; its peer is born
/// inside the namespace `netns` as `eth0` (so no temporary name ever appears on the host).
pub async fn create_veth(
    h: &Handle,
    host_name: &str,
    bridge: u32,
    netns: &File,
) -> Result<(), NetworkError> {
    veth(h, host_name, Some(bridge), netns).await
}

/// A veth pair on no bridge: `host_name` here (up), `eth0` inside `netns` (tests use it to
/// link a peer namespace to the host).
pub async fn create_veth_pair(
    h: &Handle,
    host_name: &str,
    netns: &File,
) -> Result<(), NetworkError> {
    veth(h, host_name, None, netns).await
}

async fn veth(
    h: &Handle,
    host_name: &str,
    bridge: Option<u32>,
    netns: &File,
) -> Result<(), NetworkError> {
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(CONTAINER_IF.to_owned())
        .setns_by_fd(netns.as_raw_fd())
        .build();
    let mut msg =
        LinkVeth::new(host_name, CONTAINER_IF).set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
    if let Some(b) = bridge {
        msg = msg.controller(b);
    }
    h.link()
        .add(msg.up().build())
        .execute()
        .await
        .map_err(nl(format!("create veth {host_name}")))
}

/// Adds `ip/prefix` to link `idx` (an existing one is fine).
pub async fn add_address(
    h: &Handle,
    idx: u32,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), NetworkError> {
    match h.address().add(idx, ip.into(), prefix).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(nl(format!("add {ip}/{prefix}"))(e)),
    }
}

/// The link `name`'s message (attributes), or `LinkMissing`.
async fn by_name(
    h: &Handle,
    name: &str,
) -> Result<rtnetlink::packet_route::link::LinkMessage, NetworkError> {
    h.link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
        .map_err(nl(format!("look up link {name}")))?
        .ok_or_else(|| NetworkError::LinkMissing(name.to_owned()))
}

/// The MAC address of the link `name`.
pub async fn mac(h: &Handle, name: &str) -> Result<[u8; 6], NetworkError> {
    let m = by_name(h, name).await?;
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(a) => <[u8; 6]>::try_from(a.as_slice()).ok(),
            _ => None,
        })
        .ok_or_else(|| NetworkError::LinkMissing(format!("{name} (no MAC address)")))
}

/// Sets the bridge port `name` `isolated on`: it can no longer send to other isolated ports,
/// only to the bridge itself and non-isolated ports.
pub async fn set_isolated(h: &Handle, name: &str) -> Result<(), NetworkError> {
    let idx = index(h, name)
        .await?
        .ok_or_else(|| NetworkError::LinkMissing(name.to_owned()))?;
    h.link()
        .set_port(LinkBridgePort::new(idx).isolated(true).build())
        .execute()
        .await
        .map_err(nl(format!("set {name} isolated")))
}

/// Whether the bridge port `name` is `isolated on`.
pub async fn is_isolated(h: &Handle, name: &str) -> Result<bool, NetworkError> {
    use rtnetlink::packet_route::link::{InfoBridgePort, InfoPortData, LinkInfo};
    let m = by_name(h, name).await?;
    Ok(m.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| {
            matches!(i, LinkInfo::PortData(InfoPortData::BridgePort(p))
                if p.contains(&InfoBridgePort::Isolated(true)))
        }),
        _ => false,
    }))
}

/// Inside a container's namespace: loopback up and, when given, `eth0` with `ip/prefix` and a
/// default route via `gateway`.
pub async fn configure_inside(
    h: Handle,
    addr: Option<(Ipv4Addr, u8, Ipv4Addr)>,
    addr6: Option<(Ipv6Addr, Ipv6Addr)>,
) -> Result<(), NetworkError> {
    let lo = index(&h, "lo")
        .await?
        .ok_or_else(|| NetworkError::LinkMissing("lo".into()))?;
    h.link()
        .set(LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await
        .map_err(nl("bring lo up"))?;
    let Some((ip, prefix, gw)) = addr else {
        return Ok(());
    };
    let eth = index(&h, CONTAINER_IF)
        .await?
        .ok_or_else(|| NetworkError::LinkMissing(CONTAINER_IF.into()))?;
    h.address()
        .add(eth, ip.into(), prefix)
        .execute()
        .await
        .map_err(nl(format!("add {ip}/{prefix} to {CONTAINER_IF}")))?;
    h.link()
        .set(LinkUnspec::new_with_index(eth).up().build())
        .execute()
        .await
        .map_err(nl(format!("bring {CONTAINER_IF} up")))?;
    h.route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(eth)
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("default route via {gw}")))?;
    if let Some((ip6, gw6)) = addr6 {
        add_ipv6(&h, eth, ip6, CONTAINER_IF).await?;
        add_ipv6_default(&h, eth, gw6).await?;
    }
    Ok(())
}

/// The names of all links (tests and the leak check use it).
pub async fn names(h: &Handle) -> Result<Vec<String>, NetworkError> {
    let mut out = Vec::new();
    let mut s = h.link().get().execute();
    while let Some(m) = s.try_next().await.map_err(nl("list links"))? {
        for a in &m.attributes {
            if let LinkAttribute::IfName(n) = a {
                out.push(n.clone());
            }
        }
    }
    Ok(out)
}

/// Whether the namespace has any IPv4 route besides loopback's (tests: mode `none`).
pub async fn default_route(h: &Handle) -> Result<bool, NetworkError> {
    let mut s = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(m) = s.try_next().await.map_err(nl("list routes"))? {
        if m.header.destination_prefix_length == 0
            && m.header.address_family == AddressFamily::Inet
            && m.header.table != 255
        {
            return Ok(true);
        }
    }
    Ok(false)
}
