//! The bridge's firewall and layer-2 isolation, attacked as a LAN neighbour and as another
//! team's container would. Each test runs its daemon inside a [`Sandbox`] — a network
//! namespace standing in for the host, with its own `ip_forward`, nftables/iptables rules and
//! links — so forwarding can be switched and admin rules added without touching the real
//! host's network; a [`Peer`] namespace linked to it plays the LAN neighbour that routes the
//! containers' subnet via the host.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use backend::{client::Client, network::nat};
use hyper::Method;
use tests::{
    containers::Reaper,
    net::{NetGuard, Peer, Sandbox, bridged_daemon, ip_forward, set_ip_forward},
    rootfs::Rootfs,
};

use super::network::http_get;

fn block<T>(job: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(job)
}

fn web_rootfs() -> Rootfs {
    let r = Rootfs::new();
    std::fs::create_dir_all(r.path().join("www")).unwrap();
    std::fs::write(r.path().join("www/index.html"), "served by a container\n").unwrap();
    r
}

/// Creates and starts a bridged container of `team` running busybox httpd on 8080 (or
/// `command`); returns (id, IPv4 address).
fn start(
    c: &Client,
    rootfs: &Rootfs,
    name: &str,
    team: &str,
    ports: &[String],
) -> (String, Ipv4Addr) {
    let ct = block(tests::containers::create(
        c,
        serde_json::json!({"name": name, "team": team, "rootfs": rootfs.path(),
            "command": ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
            "network": "bridge", "ports": ports, "start": true}),
    ));
    assert_eq!(ct.status, "running", "{ct:?}");
    let ct = block(tests::containers::get(c, name));
    let ip = ct
        .network
        .as_ref()
        .and_then(|n| n.ip_address.clone())
        .unwrap_or_else(|| panic!("no address: {ct:?}"));
    (ct.id, ip.parse().unwrap())
}

fn exec(c: &Client, name: &str, cmd: &[&str]) -> (i32, String) {
    let r = block(tests::containers::exec(c, name, cmd));
    (r.exit_code, format!("{}{}", r.stdout, r.stderr))
}

/// An HTTP GET of `/index.html` from inside `name` to `ip:port` with busybox nc (2 s idle
/// timeout): whatever came back (empty when nothing got through). (busybox wget with `-T`
/// crashes here; nc does not.)
fn nc_get(c: &Client, name: &str, ip: &str, port: u16) -> String {
    let (_, out) = exec(
        c,
        name,
        &[
            "sh",
            "-c",
            &format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} {port}"),
        ],
    );
    out
}

/// `nc_get` to the peer's server: (0 when its answer came, else 1; the output).
fn to_peer(c: &Client, name: &str, ip: &str) -> (i32, String) {
    let out = nc_get(c, name, ip, 9000);
    (i32::from(!out.contains("from the peer")), out)
}

/// A peer connecting to `ip:port`: Ok when it got through.
fn peer_connects(peer: &Peer, ip: Ipv4Addr, port: u16) -> std::io::Result<()> {
    peer.inside(move || {
        TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(2)).map(drop)
    })
}

/// An HTTP answerer in the peer on `port`; answers every connection with `from the peer`.
fn peer_server(peer: &Peer, port: u16) {
    let listener = peer
        .inside(move || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
        .unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 14\r\n\r\nfrom the peer\n");
        }
    });
}

fn iptables(bin: &str, args: &[&str]) {
    let out = Command::new(bin).arg("-w").args(args).output().unwrap();
    assert!(out.status.success(), "{bin} {args:?}: {out:?}");
}

fn nft(text: &str) {
    let mut child = Command::new(nat::nft_binary().unwrap())
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f: {text}");
}

/// The attack: a LAN peer that routes the containers' subnet via the host connects to a
/// container's port that is not published. With NAT on (forwarding on) the forward chain
/// used to accept it; now a new connection into the bridge is dropped — with nftables and
/// both iptables variants, whichever the machine has — while the container's own outbound
/// connections to the peer and its published port keep working, and the admin's rules still
/// decide: an nftables chain of the admin's (priority `filter`) drops before ours, and rules
/// in the iptables `<table>-user` hook (Docker's `DOCKER-USER`) accept or drop before ours and
/// survive a daemon restart.
#[test]
fn a_lan_peer_cannot_reach_unpublished_ports_with_each_backend() {
    let mut tested = Vec::new();
    for (flag, choice) in [
        ("nft", nat::NatChoice::Nft),
        ("iptables-nft", nat::NatChoice::IptablesNft),
        ("iptables-legacy", nat::NatChoice::IptablesLegacy),
    ] {
        let sandbox = Sandbox::new();
        let done = sandbox.run(move || {
            let Some(backend) = nat::Backend::detect(choice) else {
                eprintln!("{flag} not usable here: not tested");
                return None;
            };
            peer_attack(flag, &backend);
            Some(backend.to_string())
        });
        tested.extend(done);
    }
    eprintln!("forward filter tested with: {tested:?}");
    assert!(
        nat::nft_binary().is_none() || tested.iter().any(|t| t == "nftables"),
        "nft is installed but was not tested: {tested:?}"
    );
}

fn peer_attack(flag: &str, backend: &nat::Backend) {
    let peer = Peer::new();
    let (mut daemon, bridge, table) = bridged_daemon(false, &["--nat", flag]);
    let _net = NetGuard::new(&daemon, &bridge, &table);
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = web_rootfs();
    let (name, published) = (tests::unique("fw"), tests::unique("pub"));
    let (_, ip) = start(&c, &rootfs, &name, "default", &[]);
    let port = tests::free_port();
    start(
        &c,
        &rootfs,
        &published,
        "default",
        &[format!("{port}:8080")],
    );
    assert_eq!(ip_forward(), "1", "NAT turns forwarding on");

    // The container serves on 8080 (the host reaches it: OUTPUT, not FORWARD).
    assert!(http_get((ip, 8080).into()).contains("served by a container"));
    let e = peer_connects(&peer, ip, 8080).expect_err("the LAN peer reached an unpublished port");
    eprintln!("{backend}: peer -> {ip}:8080: {e}");
    // Outbound still works, masqueraded; the published port is still served (the proxy).
    peer_server(&peer, 9000);
    let url = peer.addr.to_string();
    let (code, out) = to_peer(&c, &name, &url);
    assert!(
        code == 0 && out.contains("from the peer"),
        "{backend}: {code} {out}"
    );
    assert!(http_get((Ipv4Addr::LOCALHOST, port).into()).contains("served by a container"));

    match backend {
        nat::Backend::Nft(_) => {
            // An admin's own table at priority `filter` drops the container's outbound: final.
            let admin = format!("{table}_admin");
            nft(&format!(
                "table ip {admin} {{\n chain admin_forward {{\n  type filter hook forward priority filter; policy accept;\n  ip saddr {ip} ip daddr {} drop\n }}\n}}\n",
                peer.addr
            ));
            let (code, out) = to_peer(&c, &name, &url);
            assert_ne!(code, 0, "the admin's drop did not decide: {out}");
            nft(&format!("delete table ip {admin}\n"));
            let (code, out) = to_peer(&c, &name, &url);
            assert_eq!(code, 0, "{out}");
        }
        nat::Backend::Iptables { bin, .. } => {
            let bin = bin.to_str().unwrap().to_owned();
            let user = nat::user_chain(&table).unwrap();
            let rules = String::from_utf8_lossy(
                &Command::new(&bin)
                    .args(["-w", "-S", "FORWARD"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .into_owned();
            let jumps: Vec<&str> = rules.lines().filter(|l| l.starts_with("-A")).collect();
            assert_eq!(
                jumps[..2],
                [
                    format!("-A FORWARD -j {user}").as_str(),
                    &format!("-A FORWARD -j {table}-fwd")
                ],
                "{rules}"
            );
            // The admin lets the peer in through the hook: it decides before our drop.
            let (ips, peer_ip) = (ip.to_string(), peer.addr.to_string());
            let allow = [
                "-s", &peer_ip, "-d", &ips, "-p", "tcp", "--dport", "8080", "-j", "ACCEPT",
            ];
            iptables(&bin, &[&["-A", &user][..], &allow].concat());
            peer_connects(&peer, ip, 8080).expect("the admin's ACCEPT in the hook decides");
            // ... and still does after a daemon restart (the hook is never flushed).
            daemon.stop();
            daemon.restart();
            let back = (0..100).any(|_| {
                backend.exists(&table) || {
                    std::thread::sleep(Duration::from_millis(50));
                    false
                }
            });
            assert!(back, "rules restored after the restart");
            peer_connects(&peer, ip, 8080).expect("the admin's rule survived our reinstall");
            iptables(&bin, &[&["-D", &user][..], &allow].concat());
            peer_connects(&peer, ip, 8080).expect_err("dropped again without the admin's rule");
            // The admin's DROP in the hook beats our ACCEPT of the container's outbound.
            iptables(
                &bin,
                &["-A", &user, "-s", &ips, "-d", &peer_ip, "-j", "DROP"],
            );
            let (code, out) = to_peer(&c, &name, &url);
            assert_ne!(code, 0, "the admin's drop did not decide: {out}");
            iptables(
                &bin,
                &["-D", &user, "-s", &ips, "-d", &peer_ip, "-j", "DROP"],
            );
        }
    }
    let c = daemon.unix_client();
    for n in [&name, &published] {
        block(tests::containers::remove(&c, n));
    }
    drop(daemon);
}

/// Teardown puts `ip_forward` back to the value found before the daemon first set it — and
/// only that: on before stays on (something else needs it), off before is put back to off,
/// also by a daemon that was killed and restarted in between (the value is recorded under
/// /run/corral).
#[test]
fn ip_forward_is_put_back_to_the_value_found_before() {
    let sandbox = Sandbox::new();
    sandbox.run(|| {
        set_ip_forward("1");
        let (mut daemon, bridge, table) = bridged_daemon(false, &[]);
        let _net = NetGuard::new(&daemon, &bridge, &table);
        let _reaper = Reaper::new(&daemon);
        let c = daemon.unix_client();
        let rootfs = web_rootfs();
        let name = tests::unique("fwd");
        start(&c, &rootfs, &name, "default", &[]);
        assert_eq!(ip_forward(), "1");
        daemon.stop();
        assert_eq!(ip_forward(), "1", "was on before the daemon: stays on");

        set_ip_forward("0");
        daemon.restart();
        // The restarted daemon gives the running container its NAT back: forwarding on.
        let on = (0..100).any(|_| {
            ip_forward() == "1" || {
                std::thread::sleep(Duration::from_millis(50));
                false
            }
        });
        assert!(on, "forwarding on again for the running container");
        daemon.kill9();
        assert_eq!(ip_forward(), "1");
        // A new daemon finds forwarding on, but the record says it was off.
        daemon.restart();
        daemon.stop();
        assert_eq!(
            ip_forward(),
            "0",
            "restored to the value before the first daemon"
        );

        // The last container's removal puts it back as well.
        daemon.restart();
        let c = daemon.unix_client();
        let on = (0..100).any(|_| {
            ip_forward() == "1" || {
                std::thread::sleep(Duration::from_millis(50));
                false
            }
        });
        assert!(on, "forwarding on again");
        block(tests::containers::remove(&c, &name));
        assert_eq!(
            ip_forward(),
            "0",
            "restored with the last bridged container"
        );
        drop(daemon);
    });
}

/// One ICMP echo to `to` over a datagram ICMP socket; Ok once the reply came.
fn icmp_echo(to: Ipv4Addr) -> std::io::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )?;
    let s = std::net::UdpSocket::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    // Type 8 (echo request), code 0; the kernel sets the id and the checksum.
    s.send_to(&[8, 0, 0, 0, 0, 0, 0, 1, b'c', b'o'], (to, 0))?;
    let mut buf = [0u8; 64];
    let (n, from) = s.recv_from(&mut buf)?;
    if n >= 8 && buf[0] == 0 && from.ip() == to {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "unexpected answer {:?} from {from}",
            &buf[..n]
        )))
    }
}

/// The MAC of `ip` in the calling thread's neighbour table.
fn neighbour(ip: Ipv4Addr) -> Option<String> {
    let arp = std::fs::read_to_string("/proc/thread-self/net/arp").unwrap();
    arp.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&ip.to_string().as_str()) && f.get(3) != Some(&"00:00:00:00:00:00"))
            .then(|| f[3].to_owned())
    })
}

/// The attacks of one team's container on another's: ARP spoofing (claiming team B's address
/// so the host sends B's traffic to A) and reaching B's ports over the shared bridge.
/// - `arping` in a default container fails with EPERM (no CAP_NET_RAW), `ping` still works
///   (`ping_group_range`);
/// - the spoof itself, sent as a container holding NET_RAW would (root in A's namespace,
///   busybox `arping -U` claiming B's address), leaves the host's neighbour entry for B on
///   B's MAC (the bridge filter drops ARP whose sender address is not the port's own);
/// - team A's containers reach each other; team B's container reaches neither.
#[test]
fn another_teams_container_can_neither_spoof_nor_reach_it() {
    let sandbox = Sandbox::new();
    sandbox.run(|| {
        let (daemon, bridge, table) = bridged_daemon(false, &[]);
        let _net = NetGuard::new(&daemon, &bridge, &table);
        let _reaper = Reaper::new(&daemon);
        let c = daemon.unix_client();
        let rootfs = web_rootfs();
        let (a1, a2, b1) = (
            tests::unique("a1"),
            tests::unique("a2"),
            tests::unique("b1"),
        );
        let (team_a, team_b) = (tests::unique("ta"), tests::unique("tb"));
        let (a1_id, a1_ip) = start(&c, &rootfs, &a1, &team_a, &[]);
        start(&c, &rootfs, &a2, &team_a, &[]);
        let (_, b1_ip) = start(&c, &rootfs, &b1, &team_b, &[]);
        let gw = {
            let o = b1_ip.octets();
            Ipv4Addr::new(o[0], o[1], o[2], 1)
        };
        let info: serde_json::Value = block(tests::containers::call(
            &c,
            Method::GET,
            "/api/v1/network",
            None,
        ))
        .unwrap();
        let filter = info["l2_filter"].as_str().unwrap_or_default().to_owned();
        if nat::nft_binary().is_some() {
            assert!(filter.starts_with("nftables"), "{info}");
        } else {
            assert_eq!(filter, "isolated bridge ports", "{info}");
        }

        // No NET_RAW: no packet socket; ping works through ICMP datagram sockets.
        let (code, out) = exec(
            &c,
            &a1,
            &[
                "arping",
                "-c",
                "1",
                "-w",
                "1",
                "-I",
                "eth0",
                &gw.to_string(),
            ],
        );
        assert!(
            code != 0 && out.contains("not permitted"),
            "arping: {code} {out}"
        );
        let (_, range) = exec(&c, &a1, &["cat", "/proc/sys/net/ipv4/ping_group_range"]);
        assert_eq!(
            range.split_whitespace().collect::<Vec<_>>(),
            ["0", "2147483647"]
        );
        // An ICMP echo over a datagram socket (what iputils `ping` uses; no capability is
        // checked for it, only that group range) from A's namespace gets its answer. (busybox
        // 1.35's ping only knows raw sockets: it needs NET_RAW.)
        let ns = tests::net::netns(&a1_id);
        let reply = block(backend::network::netns::run_blocking_in(ns, move || {
            icmp_echo(gw)
        }))
        .unwrap();
        reply.unwrap_or_else(|e| panic!("ping {gw} over an ICMP datagram socket: {e}"));
        let (_, caps) = exec(&c, &a1, &["grep", "CapEff", "/proc/self/status"]);
        assert!(caps.contains("00000000a80405fb"), "{caps}");

        // Same team: reachable. Other team: not, in either direction.
        let out = nc_get(&c, &a2, &a1_ip.to_string(), 8080);
        assert!(out.contains("served by"), "a2 -> a1: {out}");
        if filter.starts_with("nftables") {
            let out = nc_get(&c, &b1, &a1_ip.to_string(), 8080);
            assert!(
                !out.contains("served by"),
                "b1 (team B) reached a1 (team A): {out}"
            );
            let out = nc_get(&c, &a1, &b1_ip.to_string(), 8080);
            assert!(
                !out.contains("served by"),
                "a1 (team A) reached b1 (team B): {out}"
            );
        }

        // The host learns B's MAC.
        assert!(http_get((b1_ip, 8080).into()).contains("served by"));
        let (_, b_mac) = exec(&c, &b1, &["cat", "/sys/class/net/eth0/address"]);
        let b_mac = b_mac.trim().to_owned();
        assert_eq!(neighbour(b1_ip).as_deref(), Some(b_mac.as_str()));

        // The spoof, from A's namespace with NET_RAW (the test's root): "B's address is at
        // A's MAC", as gratuitous request and reply.
        let ns_a = tests::net::netns(&a1_id);
        let bb = tests::rootfs::busybox();
        let b_ip = b1_ip.to_string();
        let sent = block(backend::network::netns::run_blocking_in(ns_a, move || {
            // arping binds its probe socket to the claimed address.
            std::fs::write("/proc/sys/net/ipv4/ip_nonlocal_bind", "1").unwrap();
            ["-U", "-A"]
                .iter()
                .map(|mode| {
                    let out = Command::new(&bb)
                        .args([
                            "arping", mode, "-c", "2", "-w", "2", "-I", "eth0", "-s", &b_ip, &b_ip,
                        ])
                        .output()
                        .unwrap();
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    )
                })
                .collect::<String>()
        }))
        .unwrap();
        assert!(sent.contains("ARPING"), "the spoof was not sent: {sent}");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            neighbour(b1_ip).as_deref(),
            Some(b_mac.as_str()),
            "the host now sends B's traffic to A: {sent}"
        );
        for n in [&a1, &a2, &b1] {
            block(tests::containers::remove(&c, n));
        }
        drop(daemon);
    });
}
