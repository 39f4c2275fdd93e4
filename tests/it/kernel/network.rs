//! Networking on the real kernel: namespaces, a bridge, veths, NAT and published ports, all
//! created by `backend::network` under test-only names (bridge `corral-it*`, veths `vc-it*`,
//! namespaces `/run/netns/corral-it-*`, nft table `corral_it_*`) and removed by Drop guards.
//! Traffic goes only to loopback and to namespaces these tests create.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use backend::{
    network::{
        Attachment, Network, NetworkConfig, NetworkError, NetworkMode, PortSpec, Subnet, link, nat,
        netns,
    },
    store::Store,
};

static N: AtomicU32 = AtomicU32::new(0);

/// A network of our own: unique bridge, subnet, namespace prefix and nft table; everything it
/// made is removed on drop, even when the test failed.
pub struct Fixture {
    pub rt: tokio::runtime::Runtime,
    pub net: Network,
    pub cfg: NetworkConfig,
    _dir: tests::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_subnet(true)
    }

    /// `fixed`: a test subnet in 10.213.0.0/16 picked by pid and counter (no host route there);
    /// otherwise the module's default choice.
    pub fn with_subnet(fixed: bool) -> Self {
        Self::build(fixed, nat::NatChoice::Auto, false)
    }

    /// A fixed test subnet and an IPv6 /64 (`fd42:PID:N::/64`), NAT through `nat`.
    pub fn with_nat(nat: nat::NatChoice) -> Self {
        Self::build(true, nat, true)
    }

    fn build(fixed: bool, nat: nat::NatChoice, v6: bool) -> Self {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = (pid.wrapping_mul(16).wrapping_add(n)) & 0xfffff;
        let cfg = NetworkConfig {
            bridge: format!("corral-it{tag:x}"),
            subnet: fixed.then(|| {
                Subnet::new(
                    Ipv4Addr::new(10, 213, ((pid % 16) * 16 + n % 16) as u8, 0),
                    24,
                )
                .expect("subnet")
            }),
            netns_dir: PathBuf::from("/run/netns"),
            netns_prefix: format!("corral-it-{pid}-{n}-"),
            veth_prefix: "vc-it".into(),
            nft_table: format!("corral_it_{pid}_{n}"),
            nat,
            subnet6: v6.then(|| {
                format!("fd42:{:x}:{n:x}::/64", pid & 0xffff)
                    .parse()
                    .expect("subnet6")
            }),
            host_resolv: PathBuf::from("/etc/resolv.conf"),
            ..NetworkConfig::default()
        };
        let dir = tests::TempDir::new("corral-it-net");
        let store = Store::open(&dir.path().join("corral.db")).expect("store");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let net = Network::new(cfg.clone(), store);
        Fixture {
            rt,
            net,
            cfg,
            _dir: dir,
        }
    }

    pub fn attach(&self, owner: &str, mode: NetworkMode, ports: &[&str]) -> Attachment {
        self.try_attach(owner, mode, ports).expect("attach")
    }

    pub fn try_attach(
        &self,
        owner: &str,
        mode: NetworkMode,
        ports: &[&str],
    ) -> Result<Attachment, NetworkError> {
        self.try_attach_team(owner, "default", mode, ports)
    }

    /// [`Fixture::try_attach`] for a container of `team`.
    pub fn try_attach_team(
        &self,
        owner: &str,
        team: &str,
        mode: NetworkMode,
        ports: &[&str],
    ) -> Result<Attachment, NetworkError> {
        let ports: Vec<String> = ports.iter().map(|s| s.to_string()).collect();
        let ports = PortSpec::parse_all(&ports)?;
        self.rt
            .block_on(self.net.attach(owner, team, mode, owner, &ports))
    }

    pub fn detach(&self, owner: &str) {
        self.rt.block_on(self.net.detach(owner)).expect("detach");
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn inside<T: Send + 'static>(
        &self,
        ns: &Path,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        self.rt
            .block_on(netns::run_blocking_in(ns.to_owned(), f))
            .expect("enter namespace")
    }

    /// Link names inside the namespace.
    pub fn links_in(&self, ns: &Path) -> Vec<String> {
        self.rt
            .block_on(netns::run_in(ns.to_owned(), |h| async move {
                link::names(&h).await
            }))
            .expect("list links")
    }

    pub fn has_default_route_in(&self, ns: &Path) -> bool {
        self.rt
            .block_on(netns::run_in(ns.to_owned(), |h| async move {
                link::default_route(&h).await
            }))
            .expect("list routes")
    }

    /// Our links, namespaces and nft table that still exist.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let names = self.rt.block_on(async {
            let h = link::connect()?;
            link::names(&h).await
        });
        let veths: Vec<String> = self
            .rt
            .block_on(self.net.endpoints())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.veth.clone())
            .collect();
        for n in names.unwrap_or_default() {
            if n == self.cfg.bridge || veths.contains(&n) {
                left.push(format!("link {n}"));
            }
        }
        if let Ok(rd) = std::fs::read_dir(&self.cfg.netns_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&self.cfg.netns_prefix) {
                    left.push(format!("netns {name}"));
                }
            }
        }
        if nat::exists(&self.cfg.nft_table) {
            left.push(format!("nft table ip {}", self.cfg.nft_table));
        }
        left
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let eps = self.rt.block_on(self.net.endpoints()).unwrap_or_default();
        for ep in eps {
            let _ = self.rt.block_on(self.net.detach(&ep.owner));
        }
        self.rt.block_on(self.net.shutdown());
        // Belt and braces: whatever a failed test left under our names.
        let _ = self.rt.block_on(async {
            let h = link::connect()?;
            link::delete(&h, &self.cfg.bridge).await
        });
        if let Ok(rd) = std::fs::read_dir(&self.cfg.netns_dir) {
            for e in rd.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&self.cfg.netns_prefix)
                {
                    let _ = netns::remove(&e.path());
                }
            }
        }
        let _ = nat::remove(&self.cfg.nft_table);
        let _ = nat::remove_user_chain(&self.cfg.nft_table);
        let _ = backend::network::l2::remove(&self.cfg.nft_table);
    }
}

/// A child process killed and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// busybox httpd serving `dir` on port 8080 inside the namespace (spawned from a thread that
/// joined it, so the child is born there).
pub fn httpd_in(fx: &Fixture, ns: &Path, dir: &Path) -> Proc {
    let (bb, dir) = (tests::rootfs::busybox(), dir.to_owned());
    let child = fx
        .inside(ns, move || {
            Command::new(bb)
                .args(["httpd", "-f", "-p", "8080", "-h"])
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .expect("spawn busybox httpd");
    Proc(child)
}

/// GET / over `addr`, retried until the server is up (≤ 5 s); returns the whole response.
pub fn http_get(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /index.html HTTP/1.0\r\nHost: test\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            if out.is_empty() {
                return Err(std::io::Error::other("empty response"));
            }
            Ok(out)
        })();
        match attempt {
            Ok(r) => return r,
            Err(e) if Instant::now() > deadline => panic!("GET http://{addr}/: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn bridged_namespaces_reach_each_other() {
    let fx = Fixture::new();
    let a = fx.attach("a", NetworkMode::Bridge, &[]);
    let b = fx.attach("b", NetworkMode::Bridge, &[]);
    let (a_ip, b_ip) = (a.address.expect("a address"), b.address.expect("b address"));
    let subnet = fx.cfg.subnet.expect("fixed subnet");
    assert_ne!(a_ip, b_ip);
    assert!(subnet.contains(a_ip) && subnet.contains(b_ip));
    assert_eq!(a.gateway, Some(subnet.gateway()));
    let a_ns = a.netns.clone().expect("a netns");
    let b_ns = b.netns.clone().expect("b netns");

    let mut links = fx.links_in(&a_ns);
    links.sort();
    assert_eq!(links, ["eth0", "lo"]);
    assert!(
        fx.has_default_route_in(&a_ns),
        "bridged namespace has a default route"
    );
    assert!(a.hosts.contains(&format!("{a_ip}\ta\n")), "{}", a.hosts);
    assert!(
        !a.resolv_conf.contains("nameserver 127."),
        "{}",
        a.resolv_conf
    );

    // A listener in b, a client in a: the connection arrives from a's address.
    let listener = fx
        .inside(&b_ns, || TcpListener::bind("0.0.0.0:7000"))
        .expect("listen in b");
    let client = fx.inside(&a_ns, move || -> std::io::Result<()> {
        let mut s = TcpStream::connect_timeout(&(b_ip, 7000).into(), Duration::from_secs(5))?;
        s.write_all(b"ping from a")
    });
    client.expect("connect from a to b");
    let (mut conn, peer) = listener.accept().expect("accept");
    let mut got = String::new();
    conn.read_to_string(&mut got).expect("read");
    assert_eq!(got, "ping from a");
    assert_eq!(peer.ip(), std::net::IpAddr::V4(a_ip));

    // The namespaces reach the bridge (their gateway) too.
    let gw = subnet.gateway();
    let host_listener = TcpListener::bind((gw, 0)).expect("listen on the bridge address");
    let port = host_listener.local_addr().expect("addr").port();
    fx.inside(&a_ns, move || TcpStream::connect((gw, port)))
        .expect("connect from a to the gateway");
}

#[test]
fn none_mode_has_only_loopback_and_no_route_out() {
    let fx = Fixture::new();
    let n = fx.attach("solo", NetworkMode::None, &[]);
    let ns = n.netns.clone().expect("netns");
    assert_eq!(n.address, None);
    assert_eq!(fx.links_in(&ns), ["lo"]);
    assert!(!fx.has_default_route_in(&ns));
    // Loopback is up: a listener and a client inside talk.
    let ok = fx.inside(&ns, || -> std::io::Result<()> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let mut c = TcpStream::connect(l.local_addr()?)?;
        c.write_all(b"x")?;
        Ok(())
    });
    ok.expect("loopback works inside");
    // Anything else is unreachable, decided locally (nothing is sent anywhere).
    let err = fx
        .inside(&ns, || {
            TcpStream::connect_timeout(
                &"10.213.255.1:80".parse().expect("addr"),
                Duration::from_secs(2),
            )
        })
        .expect_err("no route out");
    assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
    // Ports need a bridge.
    let e = fx
        .try_attach("solo2", NetworkMode::None, &["18080:80"])
        .expect_err("ports on none");
    assert!(e.to_string().contains("bridge"), "{e}");
    fx.detach("solo");
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
}

#[test]
fn published_port_reaches_httpd_in_namespace_and_busy_port_is_an_error() {
    let fx = Fixture::new();
    let port = tests::free_port();
    let web = fx.attach("web", NetworkMode::Bridge, &[&format!("{port}:8080")]);
    let ns = web.netns.clone().expect("netns");
    let site = tests::TempDir::new("corral-it-site");
    std::fs::write(site.path().join("index.html"), "hello from the namespace\n").expect("index");
    let _httpd = httpd_in(&fx, &ns, site.path());

    let resp = http_get((Ipv4Addr::LOCALHOST, port).into());
    assert!(
        resp.starts_with("HTTP/1.") && resp.contains(" 200 "),
        "{resp}"
    );
    assert!(resp.contains("hello from the namespace"), "{resp}");
    // Direct to the container address works as well (the bridge routes it).
    let ip = web.address.expect("address");
    assert!(http_get((ip, 8080).into()).contains("hello from the namespace"));
    // Bound to 127.0.0.1 only: the bridge address does not answer on that port.
    let gw = fx.cfg.subnet.expect("subnet").gateway();
    assert!(
        TcpStream::connect((gw, port)).is_err(),
        "port bound beyond loopback"
    );

    // The same host port again: a clear error naming the port, and nothing left of the attempt.
    let e = fx
        .try_attach("web2", NetworkMode::Bridge, &[&format!("{port}:80")])
        .expect_err("port in use");
    let msg = e.to_string();
    assert!(matches!(e, NetworkError::PortInUse { .. }), "{msg}");
    assert!(
        msg.contains(&port.to_string()) && msg.contains("already in use"),
        "{msg}"
    );
    assert!(
        fx.rt
            .block_on(fx.net.endpoint("web2"))
            .expect("query")
            .is_none()
    );
    assert!(
        !fx.cfg
            .netns_dir
            .join(format!("{}web2", fx.cfg.netns_prefix))
            .exists()
    );

    fx.detach("web");
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "proxy closed on detach"
    );
}

#[test]
fn teardown_removes_links_netns_and_nat() {
    let fx = Fixture::new();
    let a = fx.attach("t1", NetworkMode::Bridge, &[]);
    let _b = fx.attach("t2", NetworkMode::Bridge, &[]);
    let have = fx.leftovers();
    assert!(
        have.iter().any(|l| l == &format!("link {}", fx.cfg.bridge)),
        "{have:?}"
    );
    assert!(
        have.iter().filter(|l| l.starts_with("netns ")).count() == 2,
        "{have:?}"
    );
    if nat::Backend::detect(nat::NatChoice::Nft).is_some() {
        let out = Command::new(nat::nft_binary().expect("nft"))
            .args(["list", "table", "ip", &fx.cfg.nft_table])
            .output()
            .expect("nft list");
        let text = String::from_utf8_lossy(&out.stdout);
        let subnet = fx.cfg.subnet.expect("subnet");
        assert!(
            text.contains(&format!("ip saddr {subnet}")) && text.contains("masquerade"),
            "{text}"
        );
        // ip_forward is host-wide and tests run in parallel: not asserted here.
    } else {
        eprintln!("nft not installed: NAT rules not checked");
    }
    fx.detach("t1");
    // The bridge stays while t2 uses it; t1's namespace and veth are gone.
    assert!(!a.netns.expect("netns").exists());
    let left = fx.leftovers();
    assert!(left.iter().any(|l| l.starts_with("link ")), "{left:?}");
    fx.detach("t2");
    let left = fx.leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
    let h_names = fx
        .rt
        .block_on(async { link::names(&link::connect()?).await })
        .expect("links");
    assert!(
        !h_names
            .iter()
            .any(|n| n.starts_with("vc-it") && n.len() == 13 && n == &fx.net.veth_name("t1"))
    );
}

#[test]
fn addresses_survive_a_restart_and_are_reused_after_release() {
    let fx = Fixture::new();
    let a = fx
        .attach("r1", NetworkMode::Bridge, &[])
        .address
        .expect("a");
    let b = fx
        .attach("r2", NetworkMode::Bridge, &[])
        .address
        .expect("b");
    // A second manager on the same database: a restarted daemon.
    let restarted = Network::new(fx.cfg.clone(), {
        // Same store file: reopen through the first manager's endpoints.
        let db = fx._dir.path().join("corral.db");
        Store::open(&db).expect("reopen")
    });
    let c = fx
        .rt
        .block_on(restarted.attach("r3", "default", NetworkMode::Bridge, "r3", &[]))
        .expect("attach after restart")
        .address
        .expect("c");
    assert!(c != a && c != b, "{c} reused a live address ({a}, {b})");
    fx.detach("r1");
    let d = fx
        .attach("r4", NetworkMode::Bridge, &[])
        .address
        .expect("d");
    assert_eq!(d, a, "a released address is handed out again");
    fx.rt.block_on(restarted.detach("r3")).expect("detach");
}

#[test]
fn default_subnet_avoids_host_routes_and_a_conflicting_subnet_is_refused() {
    // Occupy a /24 with a route of our own (a bridge with an address), then let the manager pick.
    let fx = Fixture::with_subnet(false);
    let blocker = format!("{}b", fx.cfg.bridge);
    let taken: Subnet = fx.rt.block_on(async {
        let h = link::connect().expect("netlink");
        let routes = link::routes(&h).await.expect("routes");
        let free = Subnet::default_candidates()
            .find(|c| !routes.iter().any(|r| r.dest.overlaps(c)))
            .expect("a free default subnet");
        link::ensure_bridge(&h, &blocker, free)
            .await
            .expect("blocker");
        free
    });
    struct DelLink<'a>(&'a Fixture, String);
    impl Drop for DelLink<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .rt
                .block_on(async { link::delete(&link::connect()?, &self.1).await });
        }
    }
    let _guard = DelLink(&fx, blocker.clone());
    let att = fx.attach("d1", NetworkMode::Bridge, &[]);
    let got = att.subnet.expect("subnet");
    assert!(
        !got.overlaps(&taken),
        "{got} overlaps the host route {taken}"
    );
    assert_eq!(got.network().octets()[..2], [10, 88]);
    fx.detach("d1");

    // A configured subnet that overlaps the route is refused, naming route and device.
    let mut cfg = fx.cfg.clone();
    cfg.subnet = Some(taken);
    let store = Store::open(&fx._dir.path().join("conflict.db")).expect("store");
    let net = Network::new(cfg, store);
    let e = fx
        .rt
        .block_on(net.attach("d2", "default", NetworkMode::Bridge, "d2", &[]))
        .expect_err("conflict");
    let msg = e.to_string();
    assert!(
        msg.contains(&taken.to_string()) && msg.contains(&blocker),
        "{msg}"
    );
    fx.rt.block_on(net.shutdown());
}

#[test]
fn published_udp_port_echoes_through_the_proxy() {
    let fx = Fixture::new();
    let port = tests::free_port();
    let att = fx.attach("udp", NetworkMode::Bridge, &[&format!("{port}:5353/udp")]);
    let ns = att.netns.clone().expect("netns");
    let server = fx
        .inside(&ns, || std::net::UdpSocket::bind("0.0.0.0:5353"))
        .expect("udp socket in the namespace");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = server.send_to(&reply, from);
        }
    });
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 1500];
    for i in 0..3 {
        let msg = format!("ping {i}");
        client
            .send_to(msg.as_bytes(), (Ipv4Addr::LOCALHOST, port))
            .expect("send");
        let n = client.recv(&mut buf).expect("reply through the proxy");
        assert_eq!(&buf[..n], format!("echo:{msg}").as_bytes());
    }
    fx.detach("udp");
}

/// The rules of every NAT implementation on the host, as text (`nft list ruleset`,
/// `iptables-legacy -S`, `iptables-nft -S` of the nat and filter tables).
pub fn all_nat_rules() -> String {
    let mut out = String::new();
    let mut run = |bin: &str, args: &[&str]| {
        if let Ok(o) = Command::new(bin).args(args).output() {
            out.push_str(&String::from_utf8_lossy(&o.stdout));
        }
    };
    if nat::nft_binary().is_some() {
        run("nft", &["list", "ruleset"]);
    }
    for (bin, bin6) in [
        ("iptables-nft", "ip6tables-nft"),
        ("iptables-legacy", "ip6tables-legacy"),
    ] {
        if nat::Backend::detect(match bin {
            "iptables-nft" => nat::NatChoice::IptablesNft,
            _ => nat::NatChoice::IptablesLegacy,
        })
        .is_some()
        {
            for t in ["nat", "filter"] {
                run(bin, &["-w", "-t", t, "-S"]);
                run(bin6, &["-w", "-t", t, "-S"]);
            }
        }
    }
    out
}

/// Outbound NAT really rewrites the source: a container connects to a LAN peer (a namespace
/// linked to the host, routed through the host, so through POSTROUTING) and the peer sees the
/// host's address on its link, not the container's — over IPv4 and IPv6 (`--subnet6`), with
/// nftables and with both iptables variants, whichever the host has. The rules are in our own
/// table/chains only, and gone after the last detach. All of it in a sandbox namespace standing
/// in for the host (its own forwarding and firewall).
#[test]
fn outbound_nat_masquerades_with_each_backend() {
    let sandbox = tests::net::Sandbox::new();
    sandbox.run(outbound_nat_in_sandbox);
}

fn outbound_nat_in_sandbox() {
    let choices = [
        nat::NatChoice::Nft,
        nat::NatChoice::IptablesNft,
        nat::NatChoice::IptablesLegacy,
    ];
    let mut tested = Vec::new();
    for choice in choices {
        let Some(backend) = nat::Backend::detect(choice) else {
            eprintln!("{choice:?} not usable here: not tested");
            continue;
        };
        let a = Fixture::with_nat(choice);
        let peer = tests::net::Peer::new();
        let inner = a.attach("c1", NetworkMode::Bridge, &[]);
        let c_ip = inner.address.expect("address");
        assert_eq!(
            a.rt.block_on(a.net.nat_backend()),
            Some(backend.to_string())
        );
        let table = &a.cfg.nft_table;
        let rules = all_nat_rules();
        let subnet = a.cfg.subnet.expect("subnet");
        match &backend {
            nat::Backend::Nft(_) => assert!(
                rules.contains(&format!("table ip {table}"))
                    && rules.contains(&format!("ip saddr {subnet}")),
                "{rules}"
            ),
            nat::Backend::Iptables { .. } => assert!(
                rules.contains(&format!("-A POSTROUTING -j {table}-nat"))
                    && rules.contains(&format!(
                        "-A {table}-nat -s {subnet} ! -o {} -j MASQUERADE",
                        a.cfg.bridge
                    ))
                    && rules.contains(&format!("-A FORWARD -j {table}-fwd")),
                "{backend}: {rules}"
            ),
        }

        let listener = peer
            .inside(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 9000)))
            .expect("listen in the peer");
        let p_ip = peer.addr;
        let conn = a.inside(inner.netns.as_ref().expect("netns"), move || {
            TcpStream::connect_timeout(&(p_ip, 9000).into(), Duration::from_secs(5))
        });
        let _conn = conn.unwrap_or_else(|e| panic!("{backend}: c1 -> {p_ip}:9000: {e}"));
        let (_, seen) = listener.accept().expect("accept");
        assert_eq!(
            seen.ip(),
            std::net::IpAddr::V4(peer.host),
            "{backend}: the peer saw {seen}, c1 is {c_ip}: not masqueraded"
        );

        // IPv6: addresses prefix::<IPv4>, a default route via the bridge's ::1, masquerade.
        let c6 = inner.address6.expect("IPv6 address");
        let net6 = a.cfg.subnet6.expect("subnet6");
        assert_eq!(c6, net6.address_for(c_ip));
        assert_eq!(inner.gateway6, Some(net6.gateway()));
        assert!(
            inner.hosts.contains(&format!("{c6}\tc1\n")),
            "{}",
            inner.hosts
        );
        let listener6 = peer
            .inside(|| std::net::TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, 9001)))
            .expect("listen on [::]:9001 in the peer");
        let p6 = peer.addr6;
        let conn6 = a.inside(inner.netns.as_ref().expect("netns"), move || {
            TcpStream::connect_timeout(&(p6, 9001).into(), Duration::from_secs(5))
        });
        let _conn6 = conn6.unwrap_or_else(|e| panic!("{backend}: c1 -> [{p6}]:9001: {e}"));
        let (_, seen6) = listener6.accept().expect("accept");
        assert_eq!(
            seen6.ip(),
            std::net::IpAddr::V6(peer.host6),
            "{backend}: the peer saw {seen6}, c1 is {c6}: not masqueraded"
        );

        a.detach("c1");
        let rules = all_nat_rules();
        let t = &a.cfg.nft_table;
        assert!(
            !rules.contains(&format!("{t} "))
                && !rules.contains(&format!("{t}-fwd"))
                && !rules.contains(&format!("{t}-nat")),
            "{backend}: {t} left: {rules}"
        );
        assert!(a.leftovers().is_empty());
        tested.push(backend.to_string());
    }
    eprintln!("NAT tested with: {tested:?}");
    // Where nft is installed (the VM carries it), nftables must work: a missing nf_tables
    // module fails here instead of skipping.
    assert!(
        nat::nft_binary().is_none() || tested.iter().any(|t| t == "nftables"),
        "nft is installed but nftables NAT was not usable: {tested:?}"
    );
    assert!(
        !tested.is_empty() || !nat::available(),
        "no NAT backend tested"
    );
}

/// Without `nft` (an iptables-only host has no bridge-family filter), every container port is
/// `isolated on`: containers reach the host, not each other.
#[test]
fn without_nft_bridge_ports_are_isolated() {
    let mut fx = Fixture::new();
    let mut cfg = fx.cfg.clone();
    cfg.l2 = backend::network::l2::L2Mode::Isolated;
    fx.net = Network::new(
        cfg,
        Store::open(&fx._dir.path().join("corral.db")).expect("store"),
    );
    let a = fx.attach("i1", NetworkMode::Bridge, &[]);
    let b = fx.attach("i2", NetworkMode::Bridge, &[]);
    assert_eq!(
        fx.rt.block_on(fx.net.l2_filter()).as_deref(),
        Some("isolated bridge ports")
    );
    for owner in ["i1", "i2"] {
        let veth = fx.net.veth_name(owner);
        let isolated = fx
            .rt
            .block_on(async { link::is_isolated(&link::connect()?, &veth).await })
            .expect("read port flags");
        assert!(isolated, "{veth} not isolated");
    }
    let b_ip = b.address.expect("address");
    let listener = fx
        .inside(b.netns.as_ref().expect("netns"), || {
            TcpListener::bind("0.0.0.0:7001")
        })
        .expect("listen in i2");
    let err = fx
        .inside(a.netns.as_ref().expect("netns"), move || {
            TcpStream::connect_timeout(&(b_ip, 7001).into(), Duration::from_secs(2))
        })
        .expect_err("i1 reached i2 across isolated ports");
    drop((err, listener));
    // The host (the bridge) is still reachable.
    let gw = fx.cfg.subnet.expect("subnet").gateway();
    let host = TcpListener::bind((gw, 0)).expect("listen on the bridge address");
    let port = host.local_addr().expect("addr").port();
    fx.inside(a.netns.as_ref().expect("netns"), move || {
        TcpStream::connect((gw, port))
    })
    .expect("i1 reaches the host");
}
