//! Container networking (issue 8): modes `none`, `host` and `bridge`.
//!
//! - `bridge`: the `corral0` bridge (created on demand, removed with its last container) holds
//!   the subnet's first address; each container gets a named network namespace
//!   ([`netns`]), a veth pair whose host end sits on the bridge and whose peer is born inside
//!   the namespace as `eth0`, an address from [`ipam`] (SQLite), a default route via the bridge,
//!   outbound NAT and a forward filter that lets no new connection into the bridge ([`nat`],
//!   our own nftables table or iptables chains, after the admin's rules), forwarding turned on
//!   and later put back to the host's own value ([`forward`]), ports of different teams kept
//!   apart and each port held to its own addresses ([`l2`]), and published ports ([`ports`], a
//!   userland proxy in the daemon).
//! - `none`: a namespace of its own with loopback up, nothing else.
//! - `host`: the host's network; nothing to create.
//!
//! The runtime joins the container's init to [`Attachment::netns`] (setns) instead of creating
//! a fresh network namespace, so a restarted init finds its network as it was.
//!
//! Architecture invariant: only this module creates or deletes links, addresses, routes,
//! network namespaces and nftables rules; it never touches a table or link it did not name.

pub mod files;
pub mod forward;
pub mod ipam;
pub mod l2;
pub mod link;
pub mod nat;
pub mod netns;
pub mod ports;
pub mod subnet;

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    sync::Arc,
};

use serde::Serialize;
use tokio::sync::Mutex;

pub use ports::{PortSpec, Proto};
pub use subnet::{Subnet, Subnet6};

use crate::store::Store;

/// Errors of the networking module.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("netlink: cannot {op}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("network namespace {path}: cannot {op}: {source}")]
    Netns {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("link {0} does not exist")]
    LinkMissing(String),
    #[error("subnet {value:?} is invalid: {reason}")]
    InvalidSubnet { value: String, reason: String },
    #[error("subnet {subnet} overlaps the host's route to {route}{}", dev.as_ref().map(|d| format!(" on {d}")).unwrap_or_default())]
    SubnetConflict {
        subnet: Subnet,
        route: Subnet,
        dev: Option<String>,
    },
    #[error(
        "no free /24 in 10.88.0.0/16: every one overlaps a route of the host; configure a subnet"
    )]
    NoFreeSubnet,
    #[error("no free address left in {0}")]
    SubnetExhausted(Subnet),
    #[error("{field}: {value:?} is invalid: {reason}")]
    InvalidPort {
        field: String,
        value: String,
        reason: String,
    },
    #[error("host port {port}/{proto} on {ip} is already in use")]
    PortInUse { port: u16, proto: Proto, ip: IpAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("network: {value:?} must be none, host or bridge")]
    InvalidMode { value: String },
    #[error("ports: publishing ports needs network mode bridge, not {0}")]
    PortsNeedBridge(NetworkMode),
    #[error("name {0:?} must be 1-64 characters of a-z A-Z 0-9 _ . -")]
    InvalidOwner(String),
    #[error("{0} already has a network")]
    AlreadyAttached(String),
    #[error(
        "neither nft (apt package nftables) nor iptables is usable; outbound NAT is unavailable"
    )]
    NatMissing,
    #[error("{args} failed: {message}")]
    Nat { args: String, message: String },
    #[error("network state query failed")]
    Store(#[from] rusqlite::Error),
    #[error("a network worker thread died")]
    ThreadPanicked,
}

/// How a container is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Own namespace, loopback only.
    None,
    /// The host's namespace.
    Host,
    /// Own namespace on the Corral bridge, with NAT and published ports.
    Bridge,
}

impl FromStr for NetworkMode {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "host" => Ok(Self::Host),
            "bridge" => Ok(Self::Bridge),
            other => Err(NetworkError::InvalidMode {
                value: other.to_owned(),
            }),
        }
    }
}

impl NetworkMode {
    /// The mode of a container spec: as given, else `bridge` when ports are published, else
    /// `none` (an invalid value, refused at create, reads as the same default).
    pub fn of_spec(network: Option<&str>, publishes_ports: bool) -> Self {
        match network.map(str::parse::<Self>) {
            Some(Ok(m)) => m,
            _ if publishes_ports => Self::Bridge,
            _ => Self::None,
        }
    }
}

/// One container's network for the API; `ep` is its recorded endpoint (none for `host`, or
/// before its first start).
fn describe_one(
    mode: NetworkMode,
    ep: Option<&ipam::Endpoint>,
    subnet: Option<Subnet>,
    subnet6: Option<Subnet6>,
) -> wire::ContainerNetwork {
    let address = ep.and_then(|e| e.address);
    let on_bridge = address.is_some();
    wire::ContainerNetwork {
        mode: mode.to_string(),
        bridge: ep.and_then(|e| e.bridge.clone()),
        ip_address: address.map(|a| a.to_string()),
        ip_prefix_len: subnet.filter(|_| on_bridge).map(|s| s.prefix()),
        gateway: subnet
            .filter(|_| on_bridge)
            .map(|s| s.gateway().to_string()),
        ipv6_address: subnet6
            .zip(address)
            .map(|(n, a)| n.address_for(a).to_string()),
        ipv6_prefix_len: subnet6.filter(|_| on_bridge).map(|n| n.prefix()),
        ipv6_gateway: subnet6
            .filter(|_| on_bridge)
            .map(|n| n.gateway().to_string()),
        ports: ep
            .map(|e| {
                e.ports
                    .iter()
                    .map(|p| wire::PublishedPort {
                        host_ip: p.host_ip.to_string(),
                        host_port: p.host_port,
                        container_port: p.container_port,
                        proto: p.proto.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Host => "host",
            Self::Bridge => "bridge",
        })
    }
}

/// Settings of the networking module.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Bridge name (≤ 15 bytes), default `corral0`.
    pub bridge: String,
    /// Fixed subnet; `None` picks the first /24 of 10.88.0.0/16 that no host route overlaps.
    pub subnet: Option<Subnet>,
    /// IPv6 on the bridge: a /64 (a ULA); `None` leaves containers IPv4-only.
    pub subnet6: Option<Subnet6>,
    /// Where namespace files live (`ip netns` reads /run/netns).
    pub netns_dir: PathBuf,
    /// Prefix of namespace file names (`corral-<container>`).
    pub netns_prefix: String,
    /// Prefix of host-side veth names (`vc-` + 8 hex digits, ≤ 15 bytes in all).
    pub veth_prefix: String,
    /// Our nftables table (`table ip corral`); with iptables, the prefix of our chains
    /// (`corral-nat`, `corral-fwd`).
    pub nft_table: String,
    /// nftables or iptables for outbound NAT.
    pub nat: nat::NatChoice,
    /// The host resolv.conf the containers' one is made from.
    pub host_resolv: PathBuf,
    /// Where the forwarding values found before we turned it on are recorded (a tmpfs: a
    /// reboot resets the sysctl and the record together).
    pub run_dir: PathBuf,
    /// How bridge ports are kept apart (`Auto`: nftables bridge filter, else isolated ports).
    pub l2: l2::L2Mode,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            bridge: "corral0".into(),
            subnet: None,
            subnet6: None,
            netns_dir: PathBuf::from("/run/netns"),
            netns_prefix: "corral-".into(),
            veth_prefix: "vc-".into(),
            nft_table: "corral".into(),
            nat: nat::NatChoice::Auto,
            host_resolv: PathBuf::from("/etc/resolv.conf"),
            run_dir: PathBuf::from("/run/corral"),
            l2: l2::L2Mode::Auto,
        }
    }
}

/// The `corral serve` flags of the networking module.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkArgs {
    /// Name of the containers' bridge (created when the first bridged container starts).
    #[arg(long, default_value = "corral0", value_parser = parse_bridge_name, env = "CORRAL_BRIDGE")]
    pub bridge: String,
    /// Subnet of the bridge, e.g. 10.88.0.0/24 (default: the first /24 of 10.88.0.0/16 that no
    /// route of the host overlaps).
    #[arg(long, env = "CORRAL_SUBNET")]
    pub subnet: Option<Subnet>,
    /// IPv6 for bridged containers: a /64 such as fd42:c0a1:2::/64 (the bridge gets ::1, each
    /// container prefix::<its IPv4 address>, masqueraded like IPv4). Off when absent.
    #[arg(long, env = "CORRAL_SUBNET6")]
    pub subnet6: Option<Subnet6>,
    /// Prefix of host-side veth names (tests use their own, for the leak check).
    #[arg(long, default_value = "vc-", hide = true)]
    pub veth_prefix: String,
    /// Name of our nftables table (`table ip NAME`).
    #[arg(long, default_value = "corral", hide = true)]
    pub nft_table: String,
    /// Outbound NAT with nftables or iptables (`auto`: nftables when `nft` works, else the
    /// host's iptables).
    #[arg(long, value_enum, default_value = "auto", env = "CORRAL_NAT")]
    pub nat: nat::NatChoice,
    /// Caps of the published-port proxies (`--proxy-max-*`).
    #[command(flatten)]
    pub proxy: ports::ProxyLimits,
}

impl Default for NetworkArgs {
    fn default() -> Self {
        Self {
            bridge: "corral0".into(),
            subnet: None,
            subnet6: None,
            veth_prefix: "vc-".into(),
            nft_table: "corral".into(),
            nat: nat::NatChoice::Auto,
            proxy: ports::ProxyLimits::default(),
        }
    }
}

impl NetworkArgs {
    pub fn to_config(&self) -> NetworkConfig {
        NetworkConfig {
            bridge: self.bridge.clone(),
            subnet: self.subnet,
            subnet6: self.subnet6,
            veth_prefix: self.veth_prefix.clone(),
            nft_table: self.nft_table.clone(),
            nat: self.nat,
            ..NetworkConfig::default()
        }
    }
}

/// An interface name: 1-15 bytes, no `/`, `:` or whitespace (the kernel's IFNAMSIZ rules).
pub fn parse_bridge_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} must be 1-15 characters without / : or spaces"
        ))
    }
}

/// What the runtime needs to start a networked container.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    pub mode: NetworkMode,
    /// The namespace for the init to join (none for `host`).
    pub netns: Option<PathBuf>,
    pub address: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub subnet: Option<Subnet>,
    /// IPv6 address and gateway, with `--subnet6`.
    pub address6: Option<Ipv6Addr>,
    pub gateway6: Option<Ipv6Addr>,
    pub ports: Vec<PortSpec>,
    /// Content for the container's /etc/hosts.
    pub hosts: String,
    /// Content for the container's /etc/resolv.conf.
    pub resolv_conf: String,
}

#[derive(Default)]
struct State {
    /// The bridge's subnet once chosen in this daemon's life.
    subnet: Option<Subnet>,
    /// Whether we turned forwarding on in this daemon's life (its recorded value is put back
    /// with the NAT rules).
    forwarding: bool,
    /// The NAT implementation our rules are installed with.
    nat: Option<nat::Backend>,
    proxies: HashMap<String, ports::Proxies>,
    /// The layer-2 filter in force, once chosen.
    l2: Option<l2::L2Filter>,
    /// Every bridged container's port, by owner: what the layer-2 filter is built from.
    ports: HashMap<String, l2::Port>,
}

/// The networking manager of the daemon. Cheap to clone.
#[derive(Clone)]
pub struct Network {
    cfg: Arc<NetworkConfig>,
    store: Store,
    state: Arc<Mutex<State>>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| NetworkError::ThreadPanicked)?
}

fn validate_owner(owner: &str) -> Result<(), NetworkError> {
    let ok = !owner.is_empty()
        && owner.len() <= 64
        && !owner.starts_with('.')
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidOwner(owner.to_owned()))
    }
}

/// FNV-1a, for short stable interface names.
fn short_hash(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl Network {
    pub fn new(cfg: NetworkConfig, store: Store) -> Self {
        Self {
            cfg: Arc::new(cfg),
            store,
            state: Arc::default(),
        }
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// The namespace file of `owner`.
    pub fn netns_path(&self, owner: &str) -> PathBuf {
        self.cfg
            .netns_dir
            .join(format!("{}{owner}", self.cfg.netns_prefix))
    }

    /// The host-side veth name of `owner`.
    pub fn veth_name(&self, owner: &str) -> String {
        format!("{}{:08x}", self.cfg.veth_prefix, short_hash(owner))
    }

    fn host_resolv(&self) -> String {
        std::fs::read_to_string(&self.cfg.host_resolv).unwrap_or_default()
    }

    /// Gives `owner` (a container id of `team`) its network. Everything made is undone on
    /// failure. On the bridge, ports of different teams cannot reach each other.
    pub async fn attach(
        &self,
        owner: &str,
        team: &str,
        mode: NetworkMode,
        hostname: &str,
        ports: &[PortSpec],
    ) -> Result<Attachment, NetworkError> {
        validate_owner(owner)?;
        validate_owner(team)?;
        if mode != NetworkMode::Bridge && !ports.is_empty() {
            return Err(NetworkError::PortsNeedBridge(mode));
        }
        let host_resolv = self.host_resolv();
        if mode == NetworkMode::Host {
            return Ok(Attachment {
                mode,
                netns: None,
                address: None,
                gateway: None,
                subnet: None,
                address6: None,
                gateway6: None,
                ports: Vec::new(),
                hosts: files::hosts(hostname, None, None),
                resolv_conf: files::resolv_conf(&host_resolv, true),
            });
        }
        let mut st = self.state.lock().await;
        let ns = self.netns_path(owner);
        let bridged = mode == NetworkMode::Bridge;
        let subnet = if bridged {
            Some(self.ensure_bridge(&mut st).await?)
        } else {
            None
        };
        let ep = ipam::Endpoint {
            owner: owner.to_owned(),
            team: team.to_owned(),
            bridge: bridged.then(|| self.cfg.bridge.clone()),
            address: None,
            netns: ns.clone(),
            veth: bridged.then(|| self.veth_name(owner)),
            ports: ports.to_vec(),
        };
        let (store, ep2) = (self.store.clone(), ep.clone());
        let address = match blocking(move || ipam::insert(&store, &ep2, subnet)).await {
            Ok(a) => a,
            Err(e) => {
                self.cleanup_bridge_if_unused(&mut st, false).await;
                return Err(e);
            }
        };
        match self.plumb(&mut st, &ep, subnet, address).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(owner, error = %e, "network attach failed; undoing");
                self.undo(&mut st, &ep).await;
                return Err(e);
            }
        }
        Ok(Attachment {
            mode,
            netns: Some(ns),
            address,
            gateway: subnet.map(|s| s.gateway()),
            subnet,
            address6: self.address6(address),
            gateway6: address.and(self.cfg.subnet6).map(|n| n.gateway()),
            ports: ports.to_vec(),
            hosts: files::hosts(hostname, address, self.address6(address)),
            resolv_conf: files::resolv_conf(&host_resolv, false),
        })
    }

    /// The IPv6 address that goes with a bridge address (with `--subnet6`).
    fn address6(&self, v4: Option<Ipv4Addr>) -> Option<Ipv6Addr> {
        Some(self.cfg.subnet6?.address_for(v4?))
    }

    /// Namespace, veth, addresses, NAT and proxies for an endpoint already recorded.
    async fn plumb(
        &self,
        st: &mut State,
        ep: &ipam::Endpoint,
        subnet: Option<Subnet>,
        address: Option<Ipv4Addr>,
    ) -> Result<(), NetworkError> {
        netns::create(ep.netns.clone()).await?;
        let inside = match (subnet, address, &ep.veth) {
            (Some(net), Some(ip), Some(veth)) => {
                let h = link::connect()?;
                let bridge = link::index(&h, &self.cfg.bridge)
                    .await?
                    .ok_or_else(|| NetworkError::LinkMissing(self.cfg.bridge.clone()))?;
                let file = std::fs::File::open(&ep.netns).map_err(|source| NetworkError::Io {
                    path: ep.netns.clone(),
                    source,
                })?;
                link::create_veth(&h, veth, bridge, &file).await?;
                Some((ip, net.prefix(), net.gateway()))
            }
            _ => None,
        };
        let inside6 = self
            .address6(address)
            .zip(self.cfg.subnet6.map(|n| n.gateway()));
        netns::run_in(ep.netns.clone(), move |h| {
            link::configure_inside(h, inside, inside6)
        })
        .await?;
        if let (Some(net), Some(ip)) = (subnet, address) {
            self.add_port(st, ep, ip).await?;
            self.ensure_nat(st, net).await;
            if !ep.ports.is_empty() {
                let proxies = ports::publish(&ep.ports, IpAddr::V4(ip)).await?;
                st.proxies.insert(ep.owner.clone(), proxies);
            }
        }
        Ok(())
    }

    /// Puts the endpoint's port under the layer-2 filter: reads its MAC, rebuilds the bridge
    /// table (or sets the port isolated). Must succeed before the container runs.
    async fn add_port(
        &self,
        st: &mut State,
        ep: &ipam::Endpoint,
        ip: Ipv4Addr,
    ) -> Result<(), NetworkError> {
        let Some(veth) = ep.veth.clone() else {
            return Ok(());
        };
        let mac = netns::run_in(ep.netns.clone(), |h| async move {
            link::mac(&h, link::CONTAINER_IF).await
        })
        .await?;
        let filter = match &st.l2 {
            Some(f) => f.clone(),
            None => {
                let mode = self.cfg.l2;
                let f = blocking(move || Ok(l2::L2Filter::detect(mode))).await?;
                tracing::info!(filter = %f, "bridge ports kept apart");
                st.l2 = Some(f.clone());
                f
            }
        };
        st.ports.insert(
            ep.owner.clone(),
            l2::Port {
                veth: veth.clone(),
                mac,
                ip,
                ip6: self.address6(Some(ip)),
                team: ep.team.clone(),
            },
        );
        let applied = match filter {
            l2::L2Filter::Isolated => {
                let h = link::connect()?;
                link::set_isolated(&h, &veth).await
            }
            l2::L2Filter::Nft(_) => self.install_l2(st).await,
        };
        if applied.is_err() {
            st.ports.remove(&ep.owner);
        }
        applied
    }

    /// Rebuilds the bridge table from the ports (nftables filter only).
    async fn install_l2(&self, st: &State) -> Result<(), NetworkError> {
        let Some(filter @ l2::L2Filter::Nft(_)) = st.l2.clone() else {
            return Ok(());
        };
        let mut ports: Vec<l2::Port> = st.ports.values().cloned().collect();
        ports.sort_by(|a, b| a.veth.cmp(&b.veth));
        let table = self.cfg.nft_table.clone();
        blocking(move || l2::install(&filter, &table, &ports)).await
    }

    /// The layer-2 filter in force (`None` before the first bridged container).
    pub async fn l2_filter(&self) -> Option<String> {
        self.state.lock().await.l2.as_ref().map(ToString::to_string)
    }

    /// Removes everything of an endpoint (best effort, for rollback and detach).
    async fn undo(&self, st: &mut State, ep: &ipam::Endpoint) {
        st.proxies.remove(&ep.owner);
        if st.ports.remove(&ep.owner).is_some()
            && !st.ports.is_empty()
            && let Err(e) = self.install_l2(st).await
        {
            tracing::warn!(error = %e, "cannot update the bridge filter");
        }
        if let Some(veth) = &ep.veth
            && let Ok(h) = link::connect()
            && let Err(e) = link::delete(&h, veth).await
        {
            tracing::warn!(veth, error = %e, "cannot delete veth");
        }
        if let Err(e) = netns::remove(&ep.netns) {
            tracing::warn!(error = %e, "cannot remove network namespace");
        }
        let (store, owner) = (self.store.clone(), ep.owner.clone());
        if let Err(e) = blocking(move || ipam::remove(&store, &owner)).await {
            tracing::warn!(error = %e, "cannot release address");
        }
        self.cleanup_bridge_if_unused(st, false).await;
    }

    /// Undoes [`Network::attach`]: proxies, veth, namespace, address; the bridge and the NAT
    /// table go with the last bridged container. Unknown owners are fine (nothing to do).
    pub async fn detach(&self, owner: &str) -> Result<(), NetworkError> {
        let mut st = self.state.lock().await;
        let (store, o) = (self.store.clone(), owner.to_owned());
        if let Some(ep) = blocking(move || ipam::get(&store, &o)).await? {
            self.undo(&mut st, &ep).await;
        }
        Ok(())
    }

    /// The endpoint recorded for `owner`.
    pub async fn endpoint(&self, owner: &str) -> Result<Option<ipam::Endpoint>, NetworkError> {
        let (store, o) = (self.store.clone(), owner.to_owned());
        blocking(move || ipam::get(&store, &o)).await
    }

    /// The bridge's subnet (chosen in this daemon's life, or recorded) and whether NAT is on.
    pub async fn status(&self) -> Result<(Option<Subnet>, bool), NetworkError> {
        let st = self.state.lock().await;
        let subnet = match st.subnet {
            Some(s) => Some(s),
            None => {
                let (store, b) = (self.store.clone(), self.cfg.bridge.clone());
                blocking(move || ipam::stored_subnet(&store, &b)).await?
            }
        };
        Ok((subnet.or(self.cfg.subnet), st.nat.is_some()))
    }

    /// The NAT implementation in use (`nftables`, `iptables (legacy)`...), while installed.
    pub async fn nat_backend(&self) -> Option<String> {
        self.state
            .lock()
            .await
            .nat
            .as_ref()
            .map(ToString::to_string)
    }

    /// Every recorded endpoint.
    pub async fn endpoints(&self) -> Result<Vec<ipam::Endpoint>, NetworkError> {
        let store = self.store.clone();
        blocking(move || ipam::list(&store, None)).await
    }

    /// Fills in `network` (mode, address, gateway, published ports) of containers as the API
    /// shows them, from the recorded endpoints and subnet: one blocking job, reading only the
    /// store — never waiting on the network lock that attach and detach hold.
    pub async fn describe(&self, list: &mut [wire::Container]) -> Result<(), NetworkError> {
        let modes: Vec<NetworkMode> = list
            .iter()
            .map(|c| NetworkMode::of_spec(c.spec.network.as_deref(), !c.spec.ports.is_empty()))
            .collect();
        let one = match list {
            [c] => Some(c.id.clone()),
            _ => None,
        };
        let (subnet, eps) = self
            .recorded(modes.contains(&NetworkMode::Bridge), one)
            .await?;
        for (c, mode) in list.iter_mut().zip(modes) {
            c.network = Some(describe_one(mode, eps.get(&c.id), subnet, self.cfg.subnet6));
        }
        Ok(())
    }

    /// What describing containers needs from the store: the bridge's subnet (else the
    /// configured one) and the recorded endpoints by owner — `one`'s, or all. Read only when a
    /// container is `bridged`: an endpoint off the bridge (`none` mode) has no address and no
    /// ports, so such a container is described by its mode alone.
    async fn recorded(
        &self,
        bridged: bool,
        one: Option<String>,
    ) -> Result<(Option<Subnet>, HashMap<String, ipam::Endpoint>), NetworkError> {
        if !bridged {
            return Ok((self.cfg.subnet, HashMap::new()));
        }
        let (store, bridge) = (self.store.clone(), self.cfg.bridge.clone());
        let (subnet, eps) = blocking(move || {
            let eps = match one {
                Some(id) => ipam::get(&store, &id)?.into_iter().collect(),
                None => ipam::list(&store, None)?,
            };
            let eps: HashMap<String, ipam::Endpoint> =
                eps.into_iter().map(|e| (e.owner.clone(), e)).collect();
            Ok((ipam::stored_subnet(&store, &bridge)?, eps))
        })
        .await?;
        Ok((subnet.or(self.cfg.subnet), eps))
    }

    /// The body of `GET /containers`: a JSON array of `rows` (each a serialized
    /// `wire::Container`) with each one's `network` added, the same bytes as serializing the
    /// described list. The store is read only when a row is bridged ([`Network::recorded`]);
    /// a description without an endpoint depends on the mode alone and is serialized once per
    /// mode.
    pub async fn list_body(
        &self,
        rows: &[crate::runtime::manager::Listed],
    ) -> Result<Vec<u8>, NetworkError> {
        let bridged = rows.iter().any(|r| r.network == NetworkMode::Bridge);
        let (subnet, eps) = self.recorded(bridged, None).await?;
        let json = |n: &wire::ContainerNetwork| {
            serde_json::to_vec(n).expect("a wire::ContainerNetwork serializes")
        };
        let mut without_endpoint: HashMap<NetworkMode, Vec<u8>> = HashMap::new();
        let size: usize = rows.iter().map(|r| r.json.len() + 160).sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'[');
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // `network` is the field after `spec`, and a listed container has neither
            // `team_limits` nor `effective_limits`: the object's closing brace moves after it.
            let (close, fields) = r.json.split_last().expect("a serialized object");
            debug_assert_eq!(*close, b'}');
            out.extend_from_slice(fields);
            out.extend_from_slice(b",\"network\":");
            let mode = r.network;
            match eps.get(&r.id) {
                Some(ep) => out.extend_from_slice(&json(&describe_one(
                    mode,
                    Some(ep),
                    subnet,
                    self.cfg.subnet6,
                ))),
                None => {
                    out.extend_from_slice(without_endpoint.entry(mode).or_insert_with(|| {
                        json(&describe_one(mode, None, subnet, self.cfg.subnet6))
                    }))
                }
            }
            out.push(b'}');
        }
        out.push(b']');
        Ok(out)
    }

    /// At daemon start: bridged containers that survived get their bridge, NAT and published
    /// ports back. Endpoints whose namespace is gone are released.
    pub async fn restore(&self) -> Result<(), NetworkError> {
        let mut st = self.state.lock().await;
        let store = self.store.clone();
        let eps = blocking(move || ipam::list(&store, None)).await?;
        if !eps.iter().any(|e| e.bridge.is_some()) {
            // A daemon killed with bridged containers that are gone since: nothing to keep.
            let h = link::connect()?;
            let table = self.cfg.nft_table.clone();
            if link::index(&h, &self.cfg.bridge).await?.is_some()
                || blocking(move || Ok(nat::exists(&table) || l2::exists(&table))).await?
                || self.forwardings().iter().any(|f| f.record.exists())
            {
                self.cleanup_bridge_if_unused(&mut st, true).await;
            }
        }
        for ep in eps {
            if !ep.netns.exists() {
                self.undo(&mut st, &ep).await;
                continue;
            }
            if let (Some(ip), Some(_)) = (ep.address, &ep.bridge) {
                let net = self.ensure_bridge(&mut st).await?;
                if let Err(e) = self.add_port(&mut st, &ep, ip).await {
                    tracing::warn!(owner = ep.owner, error = %e, "cannot filter the bridge port");
                }
                self.ensure_nat(&mut st, net).await;
                // A container attached before `--subnet6` was set gets its IPv6 now.
                if let (Some(ip6), Some(net6)) = (self.address6(Some(ip)), self.cfg.subnet6) {
                    let gw6 = net6.gateway();
                    let done = netns::run_in(ep.netns.clone(), move |h| {
                        link::configure_inside_v6(h, ip6, gw6)
                    })
                    .await;
                    if let Err(e) = done {
                        tracing::warn!(owner = ep.owner, error = %e, "cannot configure IPv6");
                    }
                }
                if !ep.ports.is_empty() && !st.proxies.contains_key(&ep.owner) {
                    match ports::publish(&ep.ports, IpAddr::V4(ip)).await {
                        Ok(p) => {
                            st.proxies.insert(ep.owner.clone(), p);
                        }
                        Err(e) => {
                            tracing::warn!(owner = ep.owner, error = %e, "cannot republish ports")
                        }
                    }
                }
            }
        }
        // Rules an earlier daemon left in another backend (a kill -9, then another `--nat`).
        if let Some(used) = st.nat.clone() {
            let table = self.cfg.nft_table.clone();
            if let Err(e) = blocking(move || nat::remove_others(&table, &used)).await {
                tracing::warn!(error = %e, "cannot remove NAT rules left by an earlier daemon");
            }
        }
        Ok(())
    }

    /// At daemon stop: proxies closed, NAT table removed, forwarding put back; the bridge goes
    /// too when no container uses it (containers that keep running keep their links).
    pub async fn shutdown(&self) {
        let mut st = self.state.lock().await;
        st.proxies.clear();
        if st.nat.is_some() || st.forwarding {
            self.remove_nat(&mut st, false).await;
        }
        if st.subnet.is_some() {
            self.cleanup_bridge_if_unused(&mut st, false).await;
        }
    }

    /// Removes the rules of the backend in use and, with `sweep` (an earlier daemon's
    /// leftovers, at start), those of any backend that has rules of ours: probing every backend
    /// costs a few process runs, so a plain detach does not.
    async fn remove_nat(&self, st: &mut State, sweep: bool) {
        let (table, used) = (self.cfg.nft_table.clone(), st.nat.take());
        let removed = blocking(move || {
            used.map_or(Ok(()), |b| b.remove(&table))?;
            if sweep { nat::remove(&table) } else { Ok(()) }
        });
        if let Err(e) = removed.await {
            tracing::warn!(error = %e, "cannot remove the NAT rules");
        }
        // Back to the values recorded before we first turned forwarding on (also an earlier
        // daemon's record, at a start-up sweep).
        for f in self.forwardings() {
            if let Err(e) = f.restore() {
                tracing::warn!(error = %e, "cannot restore forwarding");
            }
        }
        st.forwarding = false;
    }

    fn forwardings(&self) -> [forward::Forwarding; 2] {
        let (dir, table) = (&self.cfg.run_dir, &self.cfg.nft_table);
        [
            forward::Forwarding::ipv4(dir, table),
            forward::Forwarding::ipv6(dir, table),
        ]
    }

    async fn ensure_nat(&self, st: &mut State, net: Subnet) {
        if st.nat.is_some() {
            return;
        }
        let [v4, v6] = self.forwardings();
        match v4.enable() {
            Ok(()) => st.forwarding = true,
            Err(e) => tracing::warn!(error = %e, "cannot enable ip_forward"),
        }
        if self.cfg.subnet6.is_some() {
            match v6.enable() {
                Ok(()) => st.forwarding = true,
                Err(e) => tracing::warn!(error = %e, "cannot enable IPv6 forwarding"),
            }
        }
        let (table, bridge, choice, net6) = (
            self.cfg.nft_table.clone(),
            self.cfg.bridge.clone(),
            self.cfg.nat,
            self.cfg.subnet6,
        );
        let installed = blocking(move || {
            let backend = nat::Backend::detect(choice).ok_or(NetworkError::NatMissing)?;
            backend.install(&table, &bridge, net, net6)?;
            Ok(backend)
        });
        match installed.await {
            Ok(b) => {
                tracing::info!(backend = %b, "outbound NAT installed");
                st.nat = Some(b);
            }
            // Containers still reach each other and published ports still work without NAT.
            Err(e) => tracing::warn!(error = %e, "outbound NAT not installed"),
        }
    }

    /// Chooses the subnet (configured, recorded, or the first free default), checks it against
    /// the host's routes, and creates the bridge with the gateway address.
    async fn ensure_bridge(&self, st: &mut State) -> Result<Subnet, NetworkError> {
        let h = link::connect()?;
        let name = self.cfg.bridge.clone();
        let existing = link::index(&h, &name).await?;
        let routes = link::routes(&h).await?;
        let foreign: Vec<&link::Route> = routes
            .iter()
            .filter(|r| existing.is_none() || r.oif != existing)
            .collect();
        let subnet = match st.subnet {
            Some(s) => s,
            None => {
                let (store, b) = (self.store.clone(), name.clone());
                let recorded = blocking(move || ipam::stored_subnet(&store, &b)).await?;
                let chosen = match self.cfg.subnet.or(recorded) {
                    Some(s) => s,
                    None => Subnet::default_candidates()
                        .find(|c| !foreign.iter().any(|r| r.dest.overlaps(c)))
                        .ok_or(NetworkError::NoFreeSubnet)?,
                };
                if let Some(r) = foreign.iter().find(|r| r.dest.overlaps(&chosen)) {
                    let dev = match r.oif {
                        Some(i) => link_name(&h, i).await,
                        None => None,
                    };
                    return Err(NetworkError::SubnetConflict {
                        subnet: chosen,
                        route: r.dest,
                        dev,
                    });
                }
                let (store, b) = (self.store.clone(), name.clone());
                blocking(move || ipam::store_subnet(&store, &b, chosen)).await?;
                chosen
            }
        };
        link::ensure_bridge6(&h, &name, subnet, self.cfg.subnet6).await?;
        st.subnet = Some(subnet);
        Ok(subnet)
    }

    /// Deletes the bridge, the NAT table and the recorded subnet when no endpoint uses them.
    /// `leftovers`: at start, for what an earlier daemon left (this one set up nothing yet).
    async fn cleanup_bridge_if_unused(&self, st: &mut State, leftovers: bool) {
        let set_up = st.nat.is_some() || st.subnet.is_some() || st.forwarding;
        if !leftovers && !set_up {
            // Nothing of this daemon's to take down (a `none`-mode container's detach).
            return;
        }
        let (store, b) = (self.store.clone(), self.cfg.bridge.clone());
        let left = blocking(move || ipam::list(&store, Some(&b))).await;
        if !matches!(&left, Ok(v) if v.is_empty()) {
            return;
        }
        self.remove_nat(st, leftovers).await;
        let table = self.cfg.nft_table.clone();
        if let Err(e) = blocking(move || l2::remove(&table)).await {
            tracing::warn!(error = %e, "cannot remove the bridge filter");
        }
        st.ports.clear();
        if let Ok(h) = link::connect()
            && let Err(e) = link::delete(&h, &self.cfg.bridge).await
        {
            tracing::warn!(bridge = self.cfg.bridge, error = %e, "cannot delete bridge");
        }
        st.subnet = None;
        let (store, b) = (self.store.clone(), self.cfg.bridge.clone());
        let _ = blocking(move || ipam::forget_subnet(&store, &b)).await;
    }
}

async fn link_name(h: &rtnetlink::Handle, index: u32) -> Option<String> {
    use futures::TryStreamExt;
    let m = h
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await
        .ok()??;
    m.attributes.into_iter().find_map(|a| match a {
        rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n),
        _ => None,
    })
}
