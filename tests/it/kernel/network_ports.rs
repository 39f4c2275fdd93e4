//! Published ports under attack: a local user opens TCP connections by the thousand to a
//! container's published port, then floods its published UDP ports from 50 000 source
//! addresses and ports. The daemon's proxies stay within their caps, its open files and memory
//! stay bounded, the API keeps answering, and legitimate clients are served after each flood.
//!
//! The daemon's RLIMIT_NOFILE is lowered to 4096 (a small host's limit; with `prlimit`, where
//! the host has it) so that an unbounded proxy really runs the daemon out of descriptors. The
//! bounds follow that limit: all proxies together hold at most half of it (at most 65536),
//! one published port at most half of that — UDP flows (one descriptor each) up to `--proxy-max-flows` (4096), TCP
//! connections (two each) up to `--proxy-max-conns` (4096) — and one source address at most
//! `--proxy-max-per-source` (256) on a port. Three UDP ports flooded at once thus need more
//! than the whole budget, which proves the budget and not only the per-port caps.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use hyper::Method;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tests::{
    containers::Reaper,
    net::{NetGuard, bridged_daemon},
    rootfs::Rootfs,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Growth of the daemon's resident memory allowed over a flood.
const MAX_RSS_GROWTH_KIB: u64 = 64 * 1024;
/// UDP sources in the flood, spread over the published UDP ports.
const UDP_SOURCES: u32 = 50_000;
const UDP_PORTS: u16 = 3;
/// Descriptors the daemon may briefly hold beyond its steady state and the proxies' budget:
/// the watcher's API connections, flows replaced but not yet closed.
const SLACK_FDS: usize = 128;
/// The daemon's defaults (`corral serve --help`).
const MAX_FLOWS: usize = 4096;
const MAX_CONNS: usize = 4096;
const MAX_PER_SOURCE: usize = 256;

/// The daemon's RLIMIT_NOFILE in this test.
const NOFILE: u32 = 4096;

/// Lowers `pid`'s RLIMIT_NOFILE with `prlimit` (a limit can be lowered without privileges;
/// this test cannot raise its own again once lowered, so it does not lower its own).
fn lower_nofile(pid: u32, limit: u32) {
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        other => eprintln!("prlimit not usable ({other:?}): the daemon keeps its limit"),
    }
}

/// What the daemon may hold, from its RLIMIT_NOFILE.
#[derive(Debug)]
struct Bounds {
    nofile: usize,
    budget: usize,
    udp_port_cap: usize,
    tcp_port_cap: usize,
}

impl Bounds {
    fn of(pid: u32) -> Self {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let nofile: usize = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        let budget = (nofile / 2).min(65_536);
        Bounds {
            nofile,
            budget,
            udp_port_cap: MAX_FLOWS.min(budget / 2),
            tcp_port_cap: MAX_CONNS.min(budget / 4),
        }
    }
}

/// This process's RLIMIT_NOFILE raised to its hard limit (the floods need sockets of our own).
fn raise_own_nofile() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One GET over TCP with timeouts (a daemon out of descriptors never accepts: the request
/// must fail, not hang); the status code, or why there is none.
fn get(port: u16, path: &str, token: &str) -> Result<u16, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    // The test asks that the API answers (a daemon out of descriptors never does), not how
    // fast: other tests share the CPUs (busy loops of the team-pool tests; 5.8 s was seen on
    // the 2-core host), and qemu TCG is about ten times slower. The slowest answer is printed.
    let patience = Duration::from_secs(30);
    s.set_read_timeout(Some(patience)).unwrap();
    s.set_write_timeout(Some(patience)).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).map_err(|e| format!("read: {e}"))?;
    String::from_utf8_lossy(&head[9..12])
        .parse()
        .map_err(|_| format!("status line {head:?}"))
}

/// What the watcher saw while it ran.
#[derive(Debug, Default)]
struct Watched {
    max_fds: usize,
    max_rss_kib: u64,
    api_calls: u32,
    api_failures: Vec<String>,
    slowest_api: Duration,
}

/// Samples the daemon's open files, memory and API (health and the container list) every
/// 100 ms until `stop`.
fn watch(
    pid: u32,
    port: u16,
    token: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Watched> {
    std::thread::spawn(move || {
        let mut w = Watched::default();
        while !stop.load(Ordering::Relaxed) {
            w.max_fds = w.max_fds.max(open_fds(pid));
            w.max_rss_kib = w.max_rss_kib.max(rss_kib(pid));
            for path in ["/api/v1/health", "/api/v1/containers"] {
                let t = Instant::now();
                let r = get(port, path, &token);
                w.slowest_api = w.slowest_api.max(t.elapsed());
                w.api_calls += 1;
                match r {
                    Ok(200) => {}
                    Ok(code) => w.api_failures.push(format!("{path}: {code}")),
                    Err(e) => w.api_failures.push(format!("{path}: {e}")),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        w
    })
}

/// An echo server inside the container's network namespace, served by this test's runtime:
/// TCP on port 7, UDP on ports 7, 8, … (`udp_ports` of them).
async fn echo_in(ns: std::path::PathBuf, udp_ports: u16) {
    let (udp, tcp) = backend::network::netns::run_blocking_in(ns, move || {
        let u: Vec<_> = (0..udp_ports)
            .map(|i| {
                let u = std::net::UdpSocket::bind(("0.0.0.0", 7 + i)).unwrap();
                u.set_nonblocking(true).unwrap();
                u
            })
            .collect();
        let t = std::net::TcpListener::bind("0.0.0.0:7").unwrap();
        t.set_nonblocking(true).unwrap();
        (u, t)
    })
    .await
    .unwrap();
    for u in udp {
        let udp = tokio::net::UdpSocket::from_std(u).unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let _ = udp.send_to(&buf[..n], from).await;
            }
        });
    }
    let tcp = tokio::net::TcpListener::from_std(tcp).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// Sends one datagram from 127.0.0.1 and waits for its echo (a few tries: UDP may drop).
fn udp_echo(port: u16) -> bool {
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    (0..10).any(|i| {
        let msg = format!("legit {i}");
        c.send_to(msg.as_bytes(), (Ipv4Addr::LOCALHOST, port))
            .unwrap();
        matches!(c.recv(&mut buf), Ok(n) if &buf[..n] == msg.as_bytes())
    })
}

/// A TCP connection from `src` to the published port, and whether the container echoes
/// through it (a refused connection is closed by the proxy at once).
async fn tcp_conn(src: Ipv4Addr, port: u16) -> Option<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4().ok()?;
    sock.bind(SocketAddr::V4(SocketAddrV4::new(src, 0))).ok()?;
    let mut s = tokio::time::timeout(
        Duration::from_secs(5),
        sock.connect((Ipv4Addr::LOCALHOST, port).into()),
    )
    .await
    .ok()?
    .ok()?;
    s.write_all(b"x").await.ok()?;
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
        Ok(Ok(1)) => Some(s),
        _ => None,
    }
}

/// Pushes `total` bytes through the published TCP port while reading their echo back (the
/// proxy must keep moving data both ways, and pass the end on); how long it took.
async fn bulk_echo(port: u16, total: usize) -> Option<Duration> {
    let t = Instant::now();
    let s = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .ok()?;
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            w.write_all(&chunk[..n]).await.ok()?;
            sent += n;
        }
        w.shutdown().await.ok()
    });
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        got += n;
    }
    writer.await.ok()??;
    (got == total).then(|| t.elapsed())
}

/// Opens `n` connections from `src` at once; the ones carried stay open.
async fn tcp_flood(src: Ipv4Addr, port: u16, n: u32) -> Vec<tokio::net::TcpStream> {
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(tcp_conn(src, port))).collect();
    let mut held = Vec::new();
    for t in tasks {
        if let Some(s) = t.await.unwrap() {
            held.push(s);
        }
    }
    held
}

/// Records a failed expectation (every number is measured and printed before the test fails).
fn check(failed: &mut Vec<String>, ok: bool, what: impl std::fmt::Display) {
    if !ok {
        failed.push(what.to_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn published_port_floods_stay_capped_and_the_api_answers() {
    raise_own_nofile();
    let (daemon, bridge, table) = bridged_daemon(false, &[]);
    let _net = NetGuard::new(&daemon, &bridge, &table);
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let pid = daemon.pid().unwrap();
    lower_nofile(pid, NOFILE);
    let bounds = Bounds::of(pid);
    let token = daemon.admin_token();
    let rootfs = Rootfs::new();
    let tcp_port = tests::free_port();
    let udp: Vec<u16> = (0..UDP_PORTS).map(|_| tests::free_port()).collect();
    let mut ports = vec![format!("{tcp_port}:7/tcp")];
    ports.extend(
        udp.iter()
            .zip(7u16..)
            .map(|(p, inside)| format!("{p}:{inside}/udp")),
    );
    let name = tests::unique("flood");
    let ct: wire::Container = tests::containers::call(
        &c,
        Method::POST,
        "/api/v1/containers",
        Some(serde_json::json!({"name": name, "rootfs": rootfs.path(),
            "command": ["/bin/sleep", "1000"], "ports": ports, "start": true})),
    )
    .await
    .unwrap();
    assert_eq!(ct.status, "running", "{ct:?}");
    echo_in(tests::net::netns(&ct.id), UDP_PORTS).await;
    for p in &udp {
        assert!(udp_echo(*p), "UDP echo on {p} before the flood");
    }
    assert!(tcp_conn(Ipv4Addr::LOCALHOST, tcp_port).await.is_some());
    let base_fds = open_fds(pid);
    let base_rss = rss_kib(pid);
    let mut failed: Vec<String> = Vec::new();
    let max_fds = base_fds + bounds.budget + SLACK_FDS;
    eprintln!(
        "RLIMIT_NOFILE {}: {UDP_PORTS} UDP ports at their caps would hold {} descriptors, the \
         proxies' budget is {}",
        bounds.nofile,
        usize::from(UDP_PORTS) * bounds.udp_port_cap,
        bounds.budget
    );
    eprintln!(
        "daemon {bounds:?}; before: {base_fds} open files, VmRSS {base_rss} KiB; bound {max_fds} open files"
    );

    // TCP: 400 connections from one address, then from 12 others more than the port's cap and
    // than an uncapped proxy has descriptors for, all held open (as many as this process can
    // hold: one descriptor each, one more for the echo server's end of a carried one).
    let (own, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let spread_each = ((bounds.tcp_port_cap + 500).max(bounds.nofile) / 12)
        .min(usize::try_from(own).unwrap_or(usize::MAX) / 3 / 12) as u32;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(pid, daemon.port, token.clone(), stop.clone());
    let started = Instant::now();
    let one = tcp_flood(Ipv4Addr::new(127, 78, 0, 1), tcp_port, 400).await;
    let mut spread = Vec::new();
    for h in 1..=12u8 {
        spread.extend(tcp_flood(Ipv4Addr::new(127, 78, 1, h), tcp_port, spread_each).await);
    }
    let tcp_time = started.elapsed();
    let fds_held = open_fds(pid);
    let api_while_held = get(daemon.port, "/api/v1/containers", &token);
    stop.store(true, Ordering::Relaxed);
    let tcp_seen = watcher.join().unwrap();
    eprintln!(
        "TCP flood: {} connections in {tcp_time:?}; carried {} of 400 from one source, {} in \
         all; daemon: {fds_held} open files while held, at most {}, VmRSS at most {} KiB; {} \
         API calls, slowest {:?}, failures {:?}",
        400 + 12 * spread_each,
        one.len(),
        one.len() + spread.len(),
        tcp_seen.max_fds,
        tcp_seen.max_rss_kib,
        tcp_seen.api_calls,
        tcp_seen.slowest_api,
        tcp_seen.api_failures.iter().take(5).collect::<Vec<_>>(),
    );
    check(
        &mut failed,
        one.len() <= MAX_PER_SOURCE && !one.is_empty(),
        format!("one source got {} connections", one.len()),
    );
    check(
        &mut failed,
        one.len() + spread.len() <= bounds.tcp_port_cap,
        format!(
            "the port carried {} connections (cap {})",
            one.len() + spread.len(),
            bounds.tcp_port_cap
        ),
    );
    check(
        &mut failed,
        api_while_held == Ok(200),
        format!("containers while held: {api_while_held:?}"),
    );
    check(
        &mut failed,
        tcp_seen.api_failures.is_empty(),
        format!(
            "API failed during the TCP flood: {:?}",
            tcp_seen.api_failures
        ),
    );
    check(
        &mut failed,
        tcp_seen.max_fds <= max_fds,
        format!(
            "daemon held {} open files (bound {max_fds})",
            tcp_seen.max_fds
        ),
    );
    check(
        &mut failed,
        tcp_seen.max_rss_kib <= base_rss + MAX_RSS_GROWTH_KIB,
        format!(
            "daemon grew from {base_rss} to {} KiB",
            tcp_seen.max_rss_kib
        ),
    );
    drop(one);
    drop(spread);
    // Closed connections free their slots: a new client is carried again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tcp_conn(Ipv4Addr::LOCALHOST, tcp_port).await.is_none() {
        if Instant::now() > deadline {
            failed.push("no TCP echo after the flood".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Bulk data still flows both ways through the proxy (32 MiB out and back).
    let bulk = tokio::time::timeout(Duration::from_secs(120), bulk_echo(tcp_port, 32 << 20))
        .await
        .ok()
        .flatten();
    eprintln!("32 MiB echoed through the TCP proxy in {bulk:?}");
    check(
        &mut failed,
        bulk.is_some(),
        "32 MiB did not come back through the TCP proxy",
    );

    // UDP: 50 000 sources, 200 ports on each of 250 loopback addresses, each socket closed
    // right after its one datagram, round-robin over the UDP ports.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(pid, daemon.port, token.clone(), stop.clone());
    let started = Instant::now();
    let targets = udp.clone();
    let sent = tokio::task::spawn_blocking(move || {
        let mut sent = 0u32;
        for i in 0..UDP_SOURCES {
            let host = (i / 200) % 250 + 1;
            let src = Ipv4Addr::new(127, 77, (i / 200 / 250) as u8, host as u8);
            let s = std::net::UdpSocket::bind((src, 0)).unwrap();
            let to = targets[i as usize % targets.len()];
            if s.send_to(b"flood", (Ipv4Addr::LOCALHOST, to)).is_ok() {
                sent += 1;
            }
            if i % 500 == 499 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        sent
    })
    .await
    .unwrap();
    let flood_time = started.elapsed();
    // Let the daemon work through what is queued, then ask again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let legit: Vec<bool> = udp.iter().map(|p| udp_echo(*p)).collect();
    // Under pressure idle flows are forgotten after 10 s, not 60: the descriptors come back.
    let after = Instant::now();
    let settled = loop {
        let fds = open_fds(pid);
        if fds <= base_fds + bounds.budget / 2 || after.elapsed() > Duration::from_secs(25) {
            break fds;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let settle_time = after.elapsed();
    stop.store(true, Ordering::Relaxed);
    let udp_seen = watcher.join().unwrap();
    eprintln!(
        "UDP flood: {sent} datagrams from distinct sources to {UDP_PORTS} ports in \
         {flood_time:?}; daemon: at most {} open files, VmRSS at most {} KiB; {} API calls, \
         slowest {:?}, failures {:?}; legitimate echo after: {legit:?}; {settled} open files \
         {settle_time:?} later",
        udp_seen.max_fds,
        udp_seen.max_rss_kib,
        udp_seen.api_calls,
        udp_seen.slowest_api,
        udp_seen.api_failures.iter().take(5).collect::<Vec<_>>(),
    );
    // A few seconds on the host; qemu TCG in the VM is many times slower.
    check(
        &mut failed,
        flood_time < Duration::from_secs(180),
        format!("flood took {flood_time:?}"),
    );
    check(
        &mut failed,
        udp_seen.api_failures.is_empty(),
        format!(
            "API failed during the UDP flood: {:?}",
            udp_seen.api_failures
        ),
    );
    check(
        &mut failed,
        udp_seen.max_fds <= max_fds,
        format!(
            "daemon held {} open files (bound {max_fds})",
            udp_seen.max_fds
        ),
    );
    check(
        &mut failed,
        udp_seen.max_rss_kib <= base_rss + MAX_RSS_GROWTH_KIB,
        format!(
            "daemon grew from {base_rss} to {} KiB",
            udp_seen.max_rss_kib
        ),
    );
    check(
        &mut failed,
        legit.iter().all(|ok| *ok),
        format!("no echo for a legitimate client after the flood: {legit:?}"),
    );
    check(
        &mut failed,
        settled <= base_fds + bounds.budget / 2,
        format!("{settled} open files {settle_time:?} after the flood"),
    );
    let health = get(daemon.port, "/api/v1/health", &token);
    check(
        &mut failed,
        health == Ok(200),
        format!("health after: {health:?}"),
    );
    tests::containers::remove(&c, &name).await;
    assert!(failed.is_empty(), "{failed:#?}");
}
