//! Port publishing: the `-p [IP:]HOST:CONTAINER[/tcp|/udp]` spec, and the userland proxy that
//! forwards the host port into the container.
//!
//! Why a proxy and not DNAT: connections that the host itself makes to 127.0.0.1 never pass
//! PREROUTING, and DNAT in OUTPUT to a bridge address needs `route_localnet=1` (which lets
//! martian 127/8 packets onto the bridge — the CVE-2020-8558 class). A listener in the daemon
//! works for local and remote clients alike, binds the exact address asked for, and turns a port
//! already in use into an immediate, precise error. Docker's default (`userland-proxy`) makes the
//! same choice for loopback. The cost is a copy through the daemon (see the benchmark).
//!
//! Any local user can reach a published port, so the proxy is bounded like the rest of the
//! daemon: connections and flows are capped per port and per source address ([`ProxyLimits`]),
//! all proxies together hold at most half of RLIMIT_NOFILE (the API, the store and metering
//! keep the other half), and nothing idle holds a buffer. docker-proxy and rootlesskit's
//! proxies have no caps at all; the kernel's conntrack, the model here, has a table size and
//! drops the oldest unanswered entries when it is full.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncWriteExt, ReadBuf},
    net::{
        TcpListener, TcpStream, UdpSocket,
        tcp::{ReadHalf, WriteHalf},
    },
    task::{AbortHandle, JoinSet, coop},
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

/// Default of `--proxy-max-conns`: TCP connections one published port carries at once.
pub const DEFAULT_MAX_CONNS: u32 = 4096;
/// Default of `--proxy-max-flows`: UDP flows one published port keeps at once.
pub const DEFAULT_MAX_FLOWS: u32 = 4096;
/// Default of `--proxy-max-per-source`: connections or flows of one client address on one port.
pub const DEFAULT_MAX_PER_SOURCE: u32 = 256;

/// The `corral serve` flags that cap the published-port proxies. On top of them all proxies
/// together hold at most half of the daemon's RLIMIT_NOFILE (at most [`MAX_FD_BUDGET`]), and
/// one published port at most half of that, so a flooded port leaves descriptors for the API,
/// metering and the other ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct ProxyLimits {
    /// TCP connections one published port carries at once (1-1000000); more are closed as
    /// they arrive.
    #[arg(long = "proxy-max-conns", value_name = "N", default_value_t = DEFAULT_MAX_CONNS,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "CORRAL_PROXY_MAX_CONNS")]
    pub max_conns: u32,
    /// UDP flows (client address and port) one published port keeps at once (1-1000000); a
    /// new client then replaces the least recently active flow.
    #[arg(long = "proxy-max-flows", value_name = "N", default_value_t = DEFAULT_MAX_FLOWS,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "CORRAL_PROXY_MAX_FLOWS")]
    pub max_flows: u32,
    /// TCP connections, and UDP flows, one client address (an IPv6 /64) holds on one published
    /// port (1-1000000).
    #[arg(long = "proxy-max-per-source", value_name = "N", default_value_t = DEFAULT_MAX_PER_SOURCE,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "CORRAL_PROXY_MAX_PER_SOURCE")]
    pub max_per_source: u32,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        Self {
            max_conns: DEFAULT_MAX_CONNS,
            max_flows: DEFAULT_MAX_FLOWS,
            max_per_source: DEFAULT_MAX_PER_SOURCE,
        }
    }
}

/// The most descriptors all proxies together hold, whatever RLIMIT_NOFILE allows.
pub const MAX_FD_BUDGET: usize = 65_536;

static LIMITS: OnceLock<ProxyLimits> = OnceLock::new();
static BUDGET: OnceLock<FdBudget> = OnceLock::new();

/// Sets the caps and sizes the descriptor budget from the current RLIMIT_NOFILE. The daemon
/// calls it once at start, after raising its open-file limit; without it (tests that use the
/// module directly) the defaults and the limit at first use apply.
pub fn configure(limits: ProxyLimits) {
    let _ = LIMITS.set(limits);
    let b = budget();
    b.follow_rlimit();
    tracing::info!(
        fd_budget = b.limit(),
        per_port_fds = b.limit() / 2,
        max_conns = limits.max_conns,
        max_flows = limits.max_flows,
        max_per_source = limits.max_per_source,
        "published-port proxy limits"
    );
}

fn limits() -> ProxyLimits {
    LIMITS.get().copied().unwrap_or_default()
}

fn budget() -> &'static FdBudget {
    BUDGET.get_or_init(|| FdBudget::new(nofile()))
}

/// The soft RLIMIT_NOFILE now (1024, the usual default, if it cannot be read).
fn nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft)
}

/// `n` descriptors from the budget, sized from RLIMIT_NOFILE as it is now (an admin may lower
/// the daemon's limit with `prlimit`), or `None`.
fn take_fds(n: usize) -> Option<Fds> {
    let b = budget();
    b.follow_rlimit();
    b.take(n)
}

/// The file descriptors all proxies of the daemon may hold: half of RLIMIT_NOFILE (at most
/// [`MAX_FD_BUDGET`]); the other half stays with the API, the store, metering's open files and
/// the runtime.
struct FdBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl FdBudget {
    fn new(nofile: u64) -> Self {
        FdBudget {
            limit: AtomicUsize::new(Self::share(nofile)),
            used: AtomicUsize::new(0),
        }
    }

    fn share(nofile: u64) -> usize {
        usize::try_from(nofile / 2)
            .unwrap_or(usize::MAX)
            .clamp(4, MAX_FD_BUDGET)
    }

    fn follow_rlimit(&self) {
        self.limit.store(Self::share(nofile()), Ordering::Relaxed);
    }

    fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// `n` descriptors, or `None` when the budget has no room.
    fn take(&'static self, n: usize) -> Option<Fds> {
        let limit = self.limit();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= limit).then_some(u + n)
            })
            .ok()?;
        Some(Fds { budget: self, n })
    }

    /// Three quarters or more in use.
    fn pressed(&self) -> bool {
        self.used.load(Ordering::Relaxed) * 4 >= self.limit() * 3
    }

    /// Half or less in use.
    fn relaxed(&self) -> bool {
        self.used.load(Ordering::Relaxed) * 2 <= self.limit()
    }
}

/// Descriptors taken from the budget, given back on drop.
struct Fds {
    budget: &'static FdBudget,
    n: usize,
}

impl Drop for Fds {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// What one published port may hold: its own cap, within its half of the budget.
#[derive(Debug, Clone, Copy)]
struct Caps {
    configured: usize,
    per_source: usize,
    /// Descriptors one connection (2: client and upstream) or flow (1) holds.
    fds_each: usize,
}

impl Caps {
    fn new(configured: u32, limits: ProxyLimits, fds_each: usize) -> Self {
        let configured = configured as usize;
        Caps {
            configured,
            per_source: (limits.max_per_source as usize).min(configured),
            fds_each,
        }
    }

    /// Connections or flows the port may hold now: its cap, or half the budget.
    fn per_port(&self, budget: &FdBudget) -> usize {
        self.configured
            .min(budget.limit() / 2 / self.fds_each)
            .max(1)
    }
}

/// Whom the per-source caps count: an IPv4 address, or the /64 of an IPv6 one (a single host
/// usually has a whole /64 to pick addresses from).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// A warning at most every [`WARN_EVERY`], with the number of times it was held back.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    held: u64,
}

const WARN_EVERY: Duration = Duration::from_secs(10);

impl Throttled {
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

/// Bytes moved per step, from a buffer each worker thread owns: no connection or flow keeps a
/// buffer of its own while it waits.
const CHUNK: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; CHUNK].into_boxed_slice());
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
        Tcp(TcpListener, PortSpec, SocketAddr),
        Udp(UdpSocket, PortSpec, SocketAddr),
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
                *p,
                to,
            ),
            Proto::Udp => Bound::Udp(
                UdpSocket::bind(addr)
                    .await
                    .map_err(|e| bind_err(addr, p.proto, e))?,
                *p,
                to,
            ),
        });
    }
    let limits = limits();
    let tasks = bound
        .into_iter()
        .map(|b| match b {
            Bound::Tcp(l, p, to) => {
                let caps = Caps::new(limits.max_conns, limits, 2);
                tokio::spawn(tcp_forward(l, p, to, caps)).abort_handle()
            }
            Bound::Udp(s, p, to) => {
                let caps = Caps::new(limits.max_flows, limits, 1);
                tokio::spawn(udp_forward(s, p, to, caps)).abort_handle()
            }
        })
        .collect();
    Ok(Proxies { tasks })
}

/// How long a connection to the container may take before the client is let go.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP: each accepted connection is carried while the port is under its caps and the budget
/// has two descriptors; otherwise it is closed at once (the client sees the connection end
/// rather than hang in the backlog). Connections are never cut to make room: they are real
/// sessions, and the caps bound how many an attacker holds.
async fn tcp_forward(listener: TcpListener, port: PortSpec, to: SocketAddr, caps: Caps) {
    // Connections live in this set: aborting the accept loop drops it and ends them all.
    let mut conns: JoinSet<IpAddr> = JoinSet::new();
    let mut from: HashMap<IpAddr, usize> = HashMap::new();
    let mut warn = Throttled::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let src = source_key(peer.ip());
                    let held = from.get(&src).copied().unwrap_or(0);
                    let per_port = caps.per_port(budget());
                    let refused = if conns.len() >= per_port {
                        Some(format!("{per_port} connections on this port"))
                    } else if held >= caps.per_source {
                        Some(format!("{} connections from one source", caps.per_source))
                    } else {
                        None
                    };
                    let fds = match refused {
                        Some(why) => Err(why),
                        None => take_fds(2)
                            .ok_or_else(|| "the descriptor budget of all published ports".into()),
                    };
                    match fds {
                        Ok(fds) => {
                            *from.entry(src).or_default() += 1;
                            conns.spawn(async move {
                                let _fds = fds;
                                carry(client, to).await;
                                src
                            });
                        }
                        Err(why) => {
                            drop(client);
                            if let Some(held) = warn.due() {
                                tracing::warn!(%port, source = %peer.ip(), limit = why, refused_since_last = held, "published port: connection refused at its cap");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(%port, error = %e, "published port: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Ok(src) = done
                    && let Some(n) = from.get_mut(&src)
                {
                    *n -= 1;
                    if *n == 0 {
                        from.remove(&src);
                    }
                }
            }
        }
    }
}

/// Carries one connection both ways until both sides finished or one failed.
async fn carry(mut client: TcpStream, to: SocketAddr) {
    let _ = client.set_nodelay(true);
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            tracing::debug!(%to, error = %e, "published port: upstream refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%to, "published port: upstream did not answer");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let (cr, cw) = client.split();
    let (ur, uw) = upstream.split();
    let _ = tokio::try_join!(pump(cr, uw), pump(ur, cw));
}

/// One step of [`pump`].
enum Step {
    Moved,
    Full,
    Eof,
    NotReady,
}

/// Moves bytes from `from` to `to` as fast as `to` takes them. Nothing is held between steps:
/// each step peeks at what `from` has into the thread's buffer, writes what `to` accepts and
/// only then consumes that much from `from`; what `to` cannot take yet stays in the kernel's
/// socket buffers. An end of `from` is passed on as a write shutdown of `to`.
async fn pump(mut from: ReadHalf<'_>, mut to: WriteHalf<'_>) -> io::Result<()> {
    loop {
        from.readable().await?;
        // Readiness alone never yields: a busy connection would keep its worker thread (and
        // the API's tasks queued there) to itself. The peek below also stops at the budget.
        coop::consume_budget().await;
        match step(&mut from, &to)? {
            Step::Eof => return to.shutdown().await,
            Step::Full => to.writable().await?,
            Step::Moved | Step::NotReady => {}
        }
    }
}

fn step(from: &mut ReadHalf<'_>, to: &WriteHalf<'_>) -> io::Result<Step> {
    BUF.with_borrow_mut(|buf| {
        let peeked = {
            let mut rb = ReadBuf::new(&mut buf[..]);
            let mut cx = Context::from_waker(Waker::noop());
            match from.poll_peek(&mut cx, &mut rb) {
                Poll::Pending => return Ok(Step::NotReady),
                Poll::Ready(r) => r?,
            }
        };
        if peeked == 0 {
            return Ok(Step::Eof);
        }
        let written = match to.try_write(&buf[..peeked]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Full),
            Err(e) => return Err(e),
        };
        // The bytes are queued (just peeked): this read returns them at once.
        from.try_read(&mut buf[..written])?;
        Ok(Step::Moved)
    })
}

/// A UDP flow idle this long is forgotten.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// ... and this long under pressure: from the moment the port holds three quarters of its cap
/// (or the proxies three quarters of their budget) until it is down to a quarter (and the
/// budget to half).
const UDP_IDLE_PRESSED: Duration = Duration::from_secs(10);
/// How often idle flows are looked for.
const UDP_SWEEP: Duration = Duration::from_secs(1);
/// Datagrams handled before the port's task yields (to the sweep, the API, other ports).
const UDP_BATCH: usize = 64;

/// A UDP flow: the socket that speaks to the container for one client (so replies find their
/// way back) and the task that carries the replies. Dropping it stops the task; the socket
/// closes, and its descriptor returns to the budget, when the task is gone (the budget counts
/// what is really open, also while a flood replaces flows faster than the runtime drops them).
struct Flow {
    upstream: Arc<UdpSocket>,
    replies: AbortHandle,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

/// Milliseconds since `epoch`, the flows' clock.
fn millis(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// UDP: one upstream socket per client address and port. At the port's cap a new client
/// replaces the least recently active flow (refusing it instead would let whoever filled the
/// table first — a flood of spoofed sources — keep every newcomer out); at the per-source cap
/// it replaces that source's own least recently active flow, so one address only competes with
/// itself. Idle flows are forgotten after [`UDP_IDLE`], [`UDP_IDLE_PRESSED`] under pressure.
async fn udp_forward(socket: UdpSocket, port: PortSpec, to: SocketAddr, caps: Caps) {
    let socket = Arc::new(socket);
    let epoch = Instant::now();
    let here = UdpPort {
        socket: socket.clone(),
        spec: port,
        to,
        epoch,
    };
    let mut table: FlowTable<Flow> = FlowTable::new(caps.per_port(budget()), caps.per_source);
    let mut sweep = tokio::time::interval(UDP_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut warn = Throttled::default();
    let mut pressed = false;
    loop {
        tokio::select! {
            ready = socket.readable() => {
                if ready.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            _ = sweep.tick() => {
                // Pressure starts at three quarters and lasts until a quarter of the port's cap
                // and half the budget, so the flows a flood left all go the short way.
                let b = budget();
                b.follow_rlimit();
                table.cap = caps.per_port(b);
                if table.len() * 4 >= table.cap * 3 || b.pressed() {
                    pressed = true;
                } else if table.len() * 4 <= table.cap && b.relaxed() {
                    pressed = false;
                }
                let idle = if pressed { UDP_IDLE_PRESSED } else { UDP_IDLE };
                let idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
                drop(table.expire(millis(epoch), idle));
                continue;
            }
        }
        let mut handled = 0;
        while handled < UDP_BATCH {
            handled += 1;
            let got = BUF.with_borrow_mut(|buf| {
                let (n, client) = socket.try_recv_from(buf)?;
                let now = millis(epoch);
                if let Some(flow) = table.touch(&client, now) {
                    let _ = flow.upstream.try_send(&buf[..n]);
                    return Ok(());
                }
                let made = new_flow(&mut table, &mut warn, &here, client, &buf[..n]);
                if let Some((flow, last)) = made {
                    table.insert(client, flow, last, now);
                }
                Ok::<_, io::Error>(())
            });
            if got.is_err() {
                break;
            }
        }
        if handled == UDP_BATCH {
            tokio::task::yield_now().await;
        }
    }
}

/// What a UDP port's flows share: the published socket replies leave from, the container's
/// address, the flows' clock.
struct UdpPort {
    socket: Arc<UdpSocket>,
    spec: PortSpec,
    to: SocketAddr,
    epoch: Instant,
}

/// Room and a socket for a new flow from `client`, which sends it `first`, or `None` (the
/// datagram is dropped).
fn new_flow(
    table: &mut FlowTable<Flow>,
    warn: &mut Throttled,
    here: &UdpPort,
    client: SocketAddr,
    first: &[u8],
) -> Option<(Flow, Arc<AtomicU64>)> {
    let port = here.spec;
    let mut note = |what: &str| {
        if let Some(held) = warn.due() {
            tracing::warn!(%port, source = %client.ip(), what, since_last = held, "published port: UDP flow cap reached");
        }
    };
    if let Some((old, full)) = table.make_room(&client) {
        drop(old);
        note(match full {
            Full::Source => "replaced the source's least recently active flow",
            Full::Port => "replaced the port's least recently active flow",
        });
    }
    let Some(fds) = take_fds(1) else {
        // All proxies' budget is spent: this port gives up its least recently active flow,
        // whose descriptor returns once its task is gone; this datagram is dropped (UDP
        // clients send again) and a later one finds the room.
        drop(table.pop_oldest());
        note("descriptor budget spent: replaced the port's least recently active flow");
        return None;
    };
    let last = Arc::new(AtomicU64::new(millis(here.epoch)));
    match open_flow(here, client, first, last.clone(), fds) {
        Ok(flow) => Some((flow, last)),
        Err(e) => {
            tracing::debug!(%port, error = %e, "published port: cannot open a UDP flow");
            None
        }
    }
}

fn open_flow(
    here: &UdpPort,
    client: SocketAddr,
    first: &[u8],
    last: Arc<AtomicU64>,
    fds: Fds,
) -> io::Result<Flow> {
    let (to, epoch, back) = (here.to, here.epoch, here.socket.clone());
    let bind: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let std = std::net::UdpSocket::bind(bind)?;
    std.connect(to)?;
    std.set_nonblocking(true)?;
    // Sent before tokio knows the socket: its first `try_send` would find no readiness yet
    // and drop the datagram.
    let _ = std.send(first);
    let upstream = Arc::new(UdpSocket::from_std(std)?);
    let u = upstream.clone();
    let replies = tokio::spawn(async move {
        let _fds = fds;
        while u.readable().await.is_ok() {
            coop::consume_budget().await;
            // Errors are ICMP reports (port unreachable): the next datagram may find a server.
            let _ = BUF.with_borrow_mut(|buf| {
                let n = u.try_recv(buf)?;
                last.store(millis(epoch), Ordering::Relaxed);
                back.try_send_to(&buf[..n], client)
            });
        }
    })
    .abort_handle();
    Ok(Flow { upstream, replies })
}

/// Which cap a new flow hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Source,
    Port,
}

struct Entry<F> {
    flow: F,
    /// Last activity (ms of the port's clock), either way; the reply task updates it too.
    last: Arc<AtomicU64>,
    /// Where the flow is filed in `order`: the activity it had then, and a tie-breaker.
    key: (u64, u64),
    source: IpAddr,
}

/// The flows of one UDP port, by client address, with the order of their last activity and
/// the flows of each source. Activity is recorded without reordering (one atomic store per
/// datagram); a flow found at the old end whose activity is newer than its place is filed
/// again (a second chance), so finding the least recently active flow stays cheap.
struct FlowTable<F> {
    flows: HashMap<SocketAddr, Entry<F>>,
    order: BTreeMap<(u64, u64), SocketAddr>,
    sources: HashMap<IpAddr, Vec<SocketAddr>>,
    seq: u64,
    cap: usize,
    per_source: usize,
}

impl<F> FlowTable<F> {
    fn new(cap: usize, per_source: usize) -> Self {
        FlowTable {
            flows: HashMap::new(),
            order: BTreeMap::new(),
            sources: HashMap::new(),
            seq: 0,
            cap: cap.max(1),
            per_source: per_source.max(1),
        }
    }

    fn len(&self) -> usize {
        self.flows.len()
    }

    /// The flow of `client`, marked active at `now`.
    fn touch(&self, client: &SocketAddr, now: u64) -> Option<&F> {
        let e = self.flows.get(client)?;
        e.last.fetch_max(now, Ordering::Relaxed);
        Some(&e.flow)
    }

    /// Makes room for a new flow of `client`: at the per-source cap that source's least
    /// recently active flow goes, else at the port's cap the port's least recently active one.
    fn make_room(&mut self, client: &SocketAddr) -> Option<(F, Full)> {
        let src = source_key(client.ip());
        if let Some(mine) = self.sources.get(&src)
            && mine.len() >= self.per_source
        {
            let oldest = *mine.iter().min_by_key(|a| {
                self.flows
                    .get(a)
                    .map_or(0, |e| e.last.load(Ordering::Relaxed))
            })?;
            return self.remove(&oldest).map(|f| (f, Full::Source));
        }
        if self.flows.len() >= self.cap {
            return self.pop_oldest().map(|f| (f, Full::Port));
        }
        None
    }

    /// Adds the flow of `client` (after [`FlowTable::make_room`]).
    fn insert(&mut self, client: SocketAddr, flow: F, last: Arc<AtomicU64>, now: u64) {
        self.seq += 1;
        let key = (now, self.seq);
        let source = source_key(client.ip());
        if let Some(old) = self.flows.insert(
            client,
            Entry {
                flow,
                last,
                key,
                source,
            },
        ) {
            self.order.remove(&old.key);
            self.forget_source(&old.source, &client);
        }
        self.order.insert(key, client);
        self.sources.entry(source).or_default().push(client);
    }

    fn remove(&mut self, client: &SocketAddr) -> Option<F> {
        let e = self.flows.remove(client)?;
        self.order.remove(&e.key);
        self.forget_source(&e.source, client);
        Some(e.flow)
    }

    fn forget_source(&mut self, source: &IpAddr, client: &SocketAddr) {
        if let Some(list) = self.sources.get_mut(source) {
            if let Some(i) = list.iter().position(|a| a == client) {
                list.swap_remove(i);
            }
            if list.is_empty() {
                self.sources.remove(source);
            }
        }
    }

    /// The least recently active flow, if its last activity is before `before` (any, for
    /// `None`); flows active since they were filed are filed again on the way.
    fn oldest(&mut self, before: Option<u64>) -> Option<SocketAddr> {
        loop {
            let (&key, &client) = self.order.first_key_value()?;
            if before.is_some_and(|t| key.0 >= t) {
                return None;
            }
            let last = self.flows.get(&client)?.last.load(Ordering::Relaxed);
            if last <= key.0 {
                return Some(client);
            }
            self.order.pop_first();
            self.seq += 1;
            let again = (last, self.seq);
            self.order.insert(again, client);
            if let Some(e) = self.flows.get_mut(&client) {
                e.key = again;
            }
        }
    }

    /// Removes the least recently active flow.
    fn pop_oldest(&mut self) -> Option<F> {
        let client = self.oldest(None)?;
        self.remove(&client)
    }

    /// Removes the flows idle for `idle` ms or more at `now`.
    fn expire(&mut self, now: u64, idle: u64) -> Vec<F> {
        let Some(before) = now.checked_sub(idle) else {
            return Vec::new();
        };
        let mut gone = Vec::new();
        while let Some(client) = self.oldest(Some(before.saturating_add(1))) {
            gone.extend(self.remove(&client));
        }
        gone
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

    fn table(cap: usize, per_source: usize) -> FlowTable<u32> {
        FlowTable::new(cap, per_source)
    }

    fn add(t: &mut FlowTable<u32>, client: &str, id: u32, now: u64) -> Option<(u32, Full)> {
        let client: SocketAddr = client.parse().unwrap();
        let out = t.make_room(&client);
        t.insert(client, id, Arc::new(AtomicU64::new(now)), now);
        out
    }

    #[test]
    fn udp_table_replaces_the_least_recently_active_flow_at_the_port_cap() {
        let mut t = table(3, 10);
        assert_eq!(add(&mut t, "10.0.0.1:1", 1, 0), None);
        assert_eq!(add(&mut t, "10.0.0.2:1", 2, 1), None);
        assert_eq!(add(&mut t, "10.0.0.3:1", 3, 2), None);
        // Flow 1 is active again (a datagram, or a reply): 2 is now the least recently active.
        t.touch(&"10.0.0.1:1".parse().unwrap(), 5);
        assert_eq!(add(&mut t, "10.0.0.4:1", 4, 6), Some((2, Full::Port)));
        assert_eq!(add(&mut t, "10.0.0.5:1", 5, 7), Some((3, Full::Port)));
        assert_eq!(add(&mut t, "10.0.0.6:1", 6, 8), Some((1, Full::Port)));
        assert_eq!(t.len(), 3);
        assert_eq!(t.order.len(), 3);
    }

    #[test]
    fn udp_table_one_source_replaces_only_its_own_flows() {
        let mut t = table(100, 2);
        add(&mut t, "10.0.0.9:1", 9, 0);
        assert_eq!(add(&mut t, "10.0.0.1:1", 1, 1), None);
        assert_eq!(add(&mut t, "10.0.0.1:2", 2, 2), None);
        assert_eq!(add(&mut t, "10.0.0.1:3", 3, 3), Some((1, Full::Source)));
        assert_eq!(add(&mut t, "10.0.0.1:4", 4, 4), Some((2, Full::Source)));
        // IPv6 sources count per /64; an IPv4-mapped address as the IPv4 one.
        assert_eq!(add(&mut t, "[2001:db8::1]:1", 10, 5), None);
        assert_eq!(add(&mut t, "[2001:db8::2]:1", 11, 6), None);
        assert_eq!(
            add(&mut t, "[2001:db8::3]:1", 12, 7),
            Some((10, Full::Source))
        );
        assert_eq!(
            add(&mut t, "[::ffff:10.0.0.1]:5", 5, 8),
            Some((3, Full::Source))
        );
        assert!(t.touch(&"10.0.0.9:1".parse().unwrap(), 9).is_some());
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn udp_table_expires_idle_flows_only() {
        let mut t = table(10, 10);
        add(&mut t, "10.0.0.1:1", 1, 0);
        add(&mut t, "10.0.0.2:1", 2, 0);
        add(&mut t, "10.0.0.3:1", 3, 50);
        t.touch(&"10.0.0.1:1".parse().unwrap(), 90);
        assert!(t.expire(50, 100).is_empty(), "nothing idle yet");
        let mut gone = t.expire(120, 100);
        gone.sort_unstable();
        assert_eq!(gone, [2]);
        let mut gone = t.expire(200, 100);
        gone.sort_unstable();
        assert_eq!(gone, [1, 3]);
        assert_eq!((t.len(), t.order.len(), t.sources.len()), (0, 0, 0));
    }

    #[test]
    fn fd_budget_gives_proxies_half_the_limit_and_one_port_half_of_that() {
        let b: &'static FdBudget = Box::leak(Box::new(FdBudget::new(4096)));
        assert_eq!(b.limit(), 2048);
        let l = ProxyLimits::default();
        let udp = Caps::new(l.max_flows, l, 1);
        let tcp = Caps::new(l.max_conns, l, 2);
        assert_eq!((udp.per_port(b), udp.per_source), (1024, 256));
        assert_eq!((tcp.per_port(b), tcp.per_source), (512, 256));
        let big = FdBudget::new(1 << 20);
        assert_eq!(big.limit(), MAX_FD_BUDGET);
        assert_eq!(udp.per_port(&big), 4096);
        let held: Vec<Fds> = (0..1024).map(|_| b.take(2).unwrap()).collect();
        assert!(b.take(1).is_none(), "budget spent");
        assert!(b.pressed());
        drop(held);
        assert_eq!(b.used.load(Ordering::Relaxed), 0);
        assert!(b.take(2048).is_some());
    }

    #[test]
    fn proxy_flags_parse_with_defaults_and_refuse_zero() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            l: ProxyLimits,
        }
        use clap::Parser;
        let c = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(c.l, ProxyLimits::default());
        let c = Cli::try_parse_from([
            "x",
            "--proxy-max-flows",
            "10",
            "--proxy-max-per-source",
            "2",
        ])
        .unwrap();
        assert_eq!(
            (c.l.max_flows, c.l.max_per_source, c.l.max_conns),
            (10, 2, 4096)
        );
        let e = Cli::try_parse_from(["x", "--proxy-max-conns", "0"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("--proxy-max-conns") && e.contains("1..=1000000"),
            "{e}"
        );
    }
}
