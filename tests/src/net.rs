//! Bridged test daemons: each gets a bridge (`corral-it…`), subnet, veth prefix (`vc-it`) and
//! NAT table (`corral_it_…`) of its own, and a [`NetGuard`] removes them after a failed test.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::Daemon;

static N: AtomicU32 = AtomicU32::new(0);

/// A daemon on a network of its own (IPv6 too when `ipv6`), with more `corral serve` flags;
/// returns (daemon, bridge, NAT table).
pub fn bridged_daemon(ipv6: bool, extra: &[&str]) -> (Daemon, String, String) {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let bridge = format!(
        "corral-it{:x}",
        (pid.wrapping_mul(16).wrapping_add(8 + n)) & 0xfffff
    );
    let table = format!("corral_it_{pid}_c{n}");
    let subnet = format!("10.214.{}.0/24", (pid % 16) * 16 + n % 16);
    let subnet6 = format!("fd42:{:x}:c{n:x}::/64", pid & 0xffff);
    let mut args = vec![
        "--bridge",
        &bridge,
        "--subnet",
        &subnet,
        "--veth-prefix",
        "vc-it",
        "--nft-table",
        &table,
    ];
    if ipv6 {
        args.extend(["--subnet6", &subnet6]);
    }
    args.extend_from_slice(extra);
    let d = Daemon::start_with(&args);
    (d, bridge, table)
}

/// The network namespace of container `id`.
pub fn netns(id: &str) -> PathBuf {
    Path::new("/run/netns").join(format!("corral-{id}"))
}

/// Whether a network link named `name` exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Removes what a failed test left: the containers' namespaces, the bridge, the NAT rules.
/// Declare it after the daemon and before the `Reaper`, so it runs once the processes are dead.
pub struct NetGuard {
    containers: PathBuf,
    bridge: String,
    table: String,
}

impl NetGuard {
    pub fn new(d: &Daemon, bridge: &str, table: &str) -> Self {
        NetGuard {
            containers: d.state.path().join("state/containers"),
            bridge: bridge.to_owned(),
            table: table.to_owned(),
        }
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        if let Ok(rd) = fs::read_dir(&self.containers) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = backend::network::netns::remove(&netns(&id));
            }
        }
        if link_exists(&self.bridge) {
            // Over netlink on a thread of its own (this may run inside a tokio test).
            let bridge = self.bridge.clone();
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    if let Ok(h) = backend::network::link::connect() {
                        let _ = backend::network::link::delete(&h, &bridge).await;
                    }
                });
            })
            .join();
        }
        let _ = backend::network::nat::remove(&self.table);
        let _ = backend::network::nat::remove_user_chain(&self.table);
        let _ = backend::network::l2::remove(&self.table);
    }
}

/// Runs `job` on a current-thread runtime of its own (netlink jobs from sync code).
fn block_on<T>(job: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(job)
}

/// A network namespace standing in for the host (`/run/netns/corral-it-PID-sbN`, loopback
/// up): a daemon started from [`Sandbox::run`] lives in it, with its bridge, NAT, forward
/// filter and `ip_forward` — so tests can change forwarding, add admin rules and link LAN
/// peers without touching the real host's network. Everything in it (links, rules) goes away
/// with it; drop the daemon inside `run` first.
pub struct Sandbox {
    pub path: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = Path::new("/run/netns").join(format!("corral-it-{}-sb{n}", std::process::id()));
        block_on(backend::network::netns::create(path.clone())).expect("sandbox netns");
        let sb = Sandbox { path };
        block_on(backend::network::netns::run_in(
            sb.path.clone(),
            |h| async move { backend::network::link::configure_inside(h, None, None).await },
        ))
        .expect("loopback up in the sandbox");
        sb
    }

    /// Runs `f` on a thread inside the sandbox (processes it spawns are born there); a panic
    /// in `f` is the caller's panic.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path.clone();
        let t = std::thread::spawn(move || {
            let file = fs::File::open(&path).expect("open sandbox netns");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        });
        match t.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = backend::network::netns::remove(&self.path);
    }
}

/// The calling thread's `ip_forward` (its network namespace's).
pub fn ip_forward() -> String {
    fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .expect("read ip_forward")
        .trim()
        .to_owned()
}

/// Sets the calling thread's `ip_forward`.
pub fn set_ip_forward(v: &str) {
    fs::write("/proc/sys/net/ipv4/ip_forward", v).expect("write ip_forward");
}

/// A LAN peer: a namespace of its own (`/run/netns/corral-it-PID-peerN`) linked by a veth pair
/// to the calling thread's namespace, `host` ↔ `addr` on a 10.216.x.0/30 no host route uses,
/// with its default route via `host` — so it routes the containers' subnet via the host, as a
/// neighbour on the LAN could. Create it from inside a [`Sandbox`].
pub struct Peer {
    pub ns: PathBuf,
    pub addr: std::net::Ipv4Addr,
    pub host: std::net::Ipv4Addr,
    /// IPv6 on the link too (`fd43:PID:N::2`, the host `::1`).
    pub addr6: std::net::Ipv6Addr,
    pub host6: std::net::Ipv6Addr,
}

impl Peer {
    pub fn new() -> Self {
        use backend::network::{link, netns};
        use std::net::Ipv4Addr;
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let ns = Path::new("/run/netns").join(format!("corral-it-{pid}-peer{n}"));
        let x = ((pid % 64) * 4 + n % 4) as u8;
        let (host, addr) = (Ipv4Addr::new(10, 216, x, 1), Ipv4Addr::new(10, 216, x, 2));
        let veth = format!(
            "pe-it{:x}",
            (pid.wrapping_mul(16).wrapping_add(n)) & 0xfffff
        );
        let net6 = |last: u16| {
            std::net::Ipv6Addr::new(0xfd43, (pid & 0xffff) as u16, n as u16, 0, 0, 0, 0, last)
        };
        let (host6, addr6) = (net6(1), net6(2));
        block_on(async {
            netns::create(ns.clone()).await?;
            let h = link::connect()?;
            let file =
                fs::File::open(&ns).map_err(|source| backend::network::NetworkError::Io {
                    path: ns.clone(),
                    source,
                })?;
            link::create_veth_pair(&h, &veth, &file).await?;
            let idx = link::index(&h, &veth)
                .await?
                .ok_or_else(|| backend::network::NetworkError::LinkMissing(veth.clone()))?;
            link::add_address(&h, idx, host, 30).await?;
            link::add_ipv6(&h, idx, host6, &veth).await?;
            netns::run_in(ns.clone(), move |h| async move {
                link::configure_inside(h, Some((addr, 30, host)), Some((addr6, host6))).await
            })
            .await
        })
        .expect("peer namespace");
        Peer {
            ns,
            addr,
            host,
            addr6,
            host6,
        }
    }

    /// Runs `f` on a thread inside the peer.
    pub fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        block_on(backend::network::netns::run_blocking_in(self.ns.clone(), f)).expect("enter peer")
    }
}

impl Default for Peer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Its end of the veth goes with the namespace, and the pair with it.
        let _ = backend::network::netns::remove(&self.ns);
    }
}
