//! Bridge networking of real containers through the daemon: a published port reaches busybox
//! httpd inside a container, two bridged containers reach each other, and `rm` leaves no link,
//! namespace or NAT table behind. Each daemon gets a test bridge (`corral-it*`), subnet, veth
//! prefix (`vc-it`) and nft table of its own.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{fs, net::Ipv4Addr, time::Duration};

use backend::{client::Client, network::nat};
use hyper::Method;
use tests::{
    Daemon,
    containers::Reaper,
    net::{NetGuard, bridged_daemon, link_exists},
    rootfs::Rootfs,
};

use super::network::{all_nat_rules, http_get};

/// `tests::containers::call`, any JSON answer; a refusal fails the test.
async fn call(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    tests::containers::call(c, method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `tests::containers::exec`: the exit code and stdout + stderr.
async fn exec(c: &Client, name: &str, cmd: &[&str]) -> (i64, String) {
    let r = tests::containers::exec(c, name, cmd).await;
    (i64::from(r.exit_code), format!("{}{}", r.stdout, r.stderr))
}

pub(super) fn web_rootfs(text: &str) -> Rootfs {
    let r = Rootfs::new();
    fs::create_dir_all(r.path().join("www")).unwrap();
    fs::write(r.path().join("www/index.html"), text).unwrap();
    r
}

/// `GET /api/v1/containers/{name}` and the list carry mode, address, gateway and ports, and
/// the CLI prints them as docker does; the address is the one `eth0` has inside.
async fn check_shown_network(daemon: &Daemon, c: &Client, name: &str, port: u16) {
    let ct = call(c, Method::GET, &format!("/api/v1/containers/{name}"), None).await;
    let net = &ct["network"];
    assert_eq!(net["mode"], "bridge", "{ct}");
    let ip = net["ip_address"].as_str().unwrap_or_default().to_owned();
    assert!(ip.starts_with("10.214."), "{ct}");
    assert_eq!(net["ip_prefix_len"], 24, "{ct}");
    let gw = net["gateway"].as_str().unwrap_or_default();
    assert!(gw.starts_with("10.214.") && gw.ends_with(".1"), "{ct}");
    assert_eq!(
        net["ports"],
        serde_json::json!([{"host_ip": "127.0.0.1", "host_port": port,
            "container_port": 80, "proto": "tcp"}]),
        "{ct}"
    );
    let (_, inside) = exec(c, name, &["ip", "-4", "addr", "show", "eth0"]).await;
    assert!(inside.contains(&format!("inet {ip}/24")), "{inside}");
    // IPv6 (the daemon runs with --subnet6): address, prefix, gateway, default route.
    let ip6 = net["ipv6_address"].as_str().unwrap_or_default().to_owned();
    assert!(ip6.starts_with("fd42:"), "{ct}");
    assert_eq!(net["ipv6_prefix_len"], 64, "{ct}");
    let gw6 = net["ipv6_gateway"].as_str().unwrap_or_default().to_owned();
    assert!(gw6.starts_with("fd42:") && gw6.ends_with("::1"), "{ct}");
    let (_, inside6) = exec(c, name, &["ip", "-6", "addr", "show", "eth0"]).await;
    assert!(inside6.contains(&format!("inet6 {ip6}/64")), "{inside6}");
    let (_, routes6) = exec(c, name, &["ip", "-6", "route"]).await;
    assert!(routes6.contains(&format!("default via {gw6}")), "{routes6}");
    let list = call(c, Method::GET, "/api/v1/containers", None).await;
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap();
    assert_eq!(mine["network"], *net);
    // The list's row (the registry's serialized record with the network spliced in) is the
    // container as `GET` shows it, but for the team's ceilings only `GET` adds.
    let mut shown = ct.clone();
    let fields = shown.as_object_mut().unwrap();
    fields.remove("team_limits");
    fields.remove("effective_limits");
    assert_eq!(*mine, shown);

    let host = format!("unix://{}", daemon.socket.display());
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(tests::corral_bin())
            .args(["--host", &host])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ps = cli(&["ps"]);
    let row = ps.lines().find(|l| l.starts_with(name)).unwrap_or_default();
    assert!(
        ps.lines().next().unwrap_or_default().contains("PORTS")
            && row.contains(&format!("127.0.0.1:{port}->80/tcp")),
        "{ps}"
    );
    let inspect = cli(&["inspect", name]);
    assert!(
        inspect.contains(&format!("\"ip_address\": \"{ip}\"")),
        "{inspect}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn httpd_in_a_container_answers_on_the_published_port_and_rm_leaves_nothing() {
    let (daemon, bridge, table) = bridged_daemon(true, &[]);
    let _net = NetGuard::new(&daemon, &bridge, &table);
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = web_rootfs("hello from a container\n");
    let port = tests::free_port();
    let name = tests::unique("web");
    let ct = call(
        &c,
        Method::POST,
        "/api/v1/containers",
        Some(serde_json::json!({"name": name, "rootfs": rootfs.path(),
            "command": ["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
            "ports": [format!("{port}:80")], "start": true})),
    )
    .await;
    assert_eq!(ct["status"], "running", "{ct}");
    let id = ct["id"].as_str().unwrap().to_owned();

    let resp = tokio::task::spawn_blocking(move || http_get((Ipv4Addr::LOCALHOST, port).into()))
        .await
        .unwrap();
    assert!(
        resp.contains(" 200 ") && resp.contains("hello from a container"),
        "{resp}"
    );

    // The API, `corral ps` and `corral inspect` show the address and the published port.
    check_shown_network(&daemon, &c, &name, port).await;

    // Inside: eth0 with an address of the subnet, a default route, our hosts and resolv.conf.
    let (code, routes) = exec(&c, &name, &["ip", "route"]).await;
    assert_eq!(code, 0, "{routes}");
    assert!(routes.contains("default via 10.214."), "{routes}");
    let (_, hosts) = exec(&c, &name, &["cat", "/etc/hosts"]).await;
    assert!(
        hosts.contains("10.214.") && hosts.contains("localhost"),
        "{hosts}"
    );
    let (_, resolv) = exec(&c, &name, &["cat", "/etc/resolv.conf"]).await;
    assert!(!resolv.contains("nameserver 127."), "{resolv}");
    assert!(link_exists(&bridge));
    if nat::available() {
        assert!(
            nat::exists(&table),
            "NAT table while a bridged container runs"
        );
    }

    // After a host reboot the namespace is gone (/run is a tmpfs): start re-creates the network.
    call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/stop"),
        None,
    )
    .await;
    backend::network::netns::remove(
        &std::path::Path::new("/run/netns").join(format!("corral-{id}")),
    )
    .unwrap();
    let ct = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/start"),
        None,
    )
    .await;
    assert_eq!(ct["status"], "running", "{ct}");
    let resp = tokio::task::spawn_blocking(move || http_get((Ipv4Addr::LOCALHOST, port).into()))
        .await
        .unwrap();
    assert!(
        resp.contains("hello from a container"),
        "after re-creating the network: {resp}"
    );

    call(
        &c,
        Method::DELETE,
        &format!("/api/v1/containers/{name}?force=true"),
        None,
    )
    .await;
    assert!(
        !link_exists(&bridge),
        "bridge left after the last container"
    );
    assert!(
        !std::path::Path::new("/run/netns")
            .join(format!("corral-{id}"))
            .exists()
    );
    assert!(
        !nat::exists(&table),
        "NAT table left after the last container"
    );
    assert!(
        std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "published port still open after rm"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_bridged_containers_reach_each_other_and_daemon_stop_removes_nat() {
    let (mut daemon, bridge, table) = bridged_daemon(true, &[]);
    let _net = NetGuard::new(&daemon, &bridge, &table);
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = web_rootfs("served by a\n");
    let (a, b) = (tests::unique("a"), tests::unique("b"));
    let port = tests::free_port();
    for (name, cmd, ports) in [
        (
            &a,
            vec!["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
            vec![format!("{port}:8080")],
        ),
        (&b, vec!["/bin/sleep", "1000"], vec![]),
    ] {
        let ct = call(
            &c,
            Method::POST,
            "/api/v1/containers",
            Some(
                serde_json::json!({"name": name, "rootfs": rootfs.path(), "command": cmd,
                "network": "bridge", "ports": ports, "start": true}),
            ),
        )
        .await;
        assert_eq!(ct["status"], "running", "{ct}");
    }
    // a's address from its own hosts file (the last line names it).
    let (_, hosts) = exec(&c, &a, &["cat", "/etc/hosts"]).await;
    let a_ip = hosts
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(a_ip.starts_with("10.214."), "{hosts}");
    let url = format!("http://{a_ip}:8080/index.html");
    let mut out = String::new();
    for _ in 0..50 {
        let (code, o) = exec(&c, &b, &["wget", "-q", "-O", "-", &url]).await;
        out = o;
        if code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        out.contains("served by a"),
        "b could not fetch {url}: {out}"
    );
    // And over IPv6 (a's IPv6 line precedes its IPv4 one in its hosts file).
    let a_ip6 = hosts
        .lines()
        .rev()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(a_ip6.starts_with("fd42:"), "{hosts}");
    let url6 = format!("http://[{a_ip6}]:8080/index.html");
    let (code, out6) = exec(&c, &b, &["wget", "-q", "-O", "-", &url6]).await;
    assert!(
        code == 0 && out6.contains("served by a"),
        "b could not fetch {url6}: {out6}"
    );

    // Daemon stop: NAT rules go, running containers keep their links.
    assert!(!nat::available() || nat::exists(&table));
    daemon.stop();
    assert!(
        !nat::exists(&table),
        "NAT table left after the daemon stopped"
    );
    assert!(link_exists(&bridge), "running containers keep the bridge");
    daemon.restart();
    let c = daemon.unix_client();
    // The daemon accepts connections once bound; restoring may still be under way.
    let restored = (0..100).any(|_| {
        !nat::available() || nat::exists(&table) || {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    });
    assert!(restored, "NAT restored at start");
    // The published port is served again by the new daemon.
    let resp = tokio::task::spawn_blocking(move || http_get((Ipv4Addr::LOCALHOST, port).into()))
        .await
        .unwrap();
    assert!(resp.contains("served by a"), "{resp}");
    for n in [&a, &b] {
        call(
            &c,
            Method::DELETE,
            &format!("/api/v1/containers/{n}?force=true"),
            None,
        )
        .await;
    }
    assert!(!link_exists(&bridge));
    assert!(!nat::exists(&table));
}

/// Where the host has iptables, `--nat iptables-nft` / `--nat iptables-legacy` install our
/// chains for a bridged container (the API names the backend), and daemon stop leaves nothing
/// of ours in `nft list ruleset` or either `iptables -S`. That traffic really is masqueraded
/// through each backend is `network::outbound_nat_masquerades_with_each_backend`.
#[tokio::test(flavor = "multi_thread")]
async fn iptables_nat_backends_install_and_leave_nothing_after_stop() {
    let variants = [
        ("iptables-nft", nat::NatChoice::IptablesNft, "nf_tables"),
        ("iptables-legacy", nat::NatChoice::IptablesLegacy, "legacy"),
    ];
    for (flag, choice, variant) in variants {
        if nat::Backend::detect(choice).is_none() {
            eprintln!("{flag} not usable here: not tested");
            continue;
        }
        let (mut daemon, bridge, table) = bridged_daemon(true, &["--nat", flag]);
        let _net = NetGuard::new(&daemon, &bridge, &table);
        let _reaper = Reaper::new(&daemon);
        let c = daemon.unix_client();
        let rootfs = Rootfs::new();
        let name = tests::unique("ipt");
        let ct = call(
            &c,
            Method::POST,
            "/api/v1/containers",
            Some(serde_json::json!({"name": name, "rootfs": rootfs.path(),
                "command": ["/bin/sleep", "1000"], "network": "bridge", "start": true})),
        )
        .await;
        assert_eq!(ct["status"], "running", "{ct}");
        let info = call(&c, Method::GET, "/api/v1/network", None).await;
        assert_eq!(info["nat"], true, "{info}");
        assert_eq!(
            info["nat_backend"],
            format!("iptables ({variant})"),
            "{info}"
        );
        let rules = all_nat_rules();
        assert!(
            rules.contains(&format!("-A POSTROUTING -j {table}-nat"))
                && rules.contains(&format!("-A {table}-nat -s 10.214."))
                && rules.contains(&format!("-A {table}-fwd -i {bridge} -j ACCEPT")),
            "{flag}: {rules}"
        );

        daemon.stop();
        let rules = all_nat_rules();
        // What stays by design: the admin's hook chain `<table>-user` (created once, never
        // flushed; no jump to it is left), and the bridge filter while containers run.
        let ours = |l: &&str| {
            (l.contains(&format!("{table}-"))
                && !l.contains(&format!("-N {table}-user"))
                && !l.contains(&format!("chain {table}-user {{")))
                || l.contains(&format!("table ip {table} "))
                || l.contains(&format!("table ip6 {table} "))
        };
        let left: Vec<&str> = rules.lines().filter(ours).collect();
        assert!(
            left.is_empty(),
            "{flag}: rules left after the daemon stopped: {left:?}"
        );
        assert!(!nat::exists(&table));
        daemon.restart();
        let c = daemon.unix_client();
        call(
            &c,
            Method::DELETE,
            &format!("/api/v1/containers/{name}?force=true"),
            None,
        )
        .await;
        assert!(!link_exists(&bridge));
        assert!(!nat::exists(&table), "{flag}: rules left after rm");
    }
}
