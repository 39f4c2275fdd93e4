//! Container actions through a hub (issue 19): a host serving its API over HTTPS (an rcgen
//! certificate for 127.0.0.1) and advertising it, a hub trusting that certificate
//! (`--fleet-ca`), both on one PostgreSQL started by the test.
//! - Without a token the hub refuses (409 `no_host_token`); a malformed token, one the host
//!   does not know and a non-admin's are refused (400 `token`) and not kept.
//! - With an admin's token, a container on the host is listed, stopped, started, frozen (its
//!   CPU time stops growing), thawed and removed through the hub — over the API and the CLI —
//!   and each action is in the hub's audit log under the caller.
//! - A member of another team sees nothing and gets 404; a viewer of the team gets 403; the
//!   container is untouched. The viewer reads its output through the hub (`tail`), the other
//!   team's member gets 404; `corral fleet logs` prints it.
//! - The host revoking the token: 502 `host_token_refused`; forgotten on the hub: 409 again.
//! - The token is pinned to the URL it was checked against: when the host id advertises
//!   another URL (a listener of the test's), the hub answers 409 `host_url_changed` and never
//!   connects there; a plain-http URL off loopback gets 409 `insecure_api_url`; back at its
//!   URL, the host is served again. The token is in no answer of the hub and not in its log.
//!
//! Skipped in the VM (no PostgreSQL there).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use backend::client::Client;
use hyper::Method;
use serde_json::json;
use tests::{
    TempDir,
    containers::{Reaper, add_team, api_status, call, create, get},
    postgres::Postgres,
    rootfs::Rootfs,
};

use super::team_pool::in_vm;

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// CPU ticks `pid` burns in 600 ms.
async fn burns(pid: i32) -> u64 {
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_millis(600)).await;
    cpu_ticks(pid) - before
}

fn path(host: &str, rest: &str) -> String {
    format!("/api/v1/fleet/hosts/{host}{rest}")
}

async fn refusal(
    c: &Client,
    method: Method,
    p: &str,
    body: Option<serde_json::Value>,
) -> (u16, String, Option<String>) {
    let e = call::<serde_json::Value>(c, method, p, body)
        .await
        .expect_err("refused");
    api_status(e)
}

#[tokio::test]
async fn a_hub_lists_and_acts_on_a_hosts_containers_with_the_hosts_admin_token() {
    if in_vm() {
        println!("skipped: no PostgreSQL in the VM");
        return;
    }
    let pg = Postgres::start();
    let certs = TempDir::new("corral-it-fleet-tls");
    let key =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, keyf) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&keyf, key.signing_key.serialize_pem()).unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let host = pg.daemon_on_port("node-a", |port| {
        vec![
            "--tls-cert".into(),
            s(&cert),
            "--tls-key".into(),
            s(&keyf),
            "--advertise-url".into(),
            format!("https://127.0.0.1:{port}"),
        ]
    });
    let hub = pg.daemon("hub", None, &["--hub", "--fleet-ca", &s(&cert)]);
    let _reapers = (Reaper::new(&host), Reaper::new(&hub));
    let (ch, hc) = (host.unix_client(), hub.unix_client());

    // The host is in the fleet with its URL (it registers at start).
    let t = Instant::now();
    loop {
        let hosts: wire::fleet::FleetHosts = call(&hc, Method::GET, "/api/v1/fleet/hosts", None)
            .await
            .unwrap();
        if let Some(h) = hosts.hosts.iter().find(|h| h.host_id == "node-a") {
            assert_eq!(
                h.api_url.as_deref(),
                Some(&*format!("https://127.0.0.1:{}", host.port))
            );
            assert!(!h.token_set);
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "node-a never registered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A team and a busy container of it on the host.
    let team = tests::unique("fw");
    add_team(&ch, &team).await;
    let rootfs = Rootfs::new();
    let name = tests::unique("fwjob");
    create(
        &ch,
        json!({"name": name, "team": team, "rootfs": rootfs.path(),
            "command": ["sh", "-c", "echo fleet-hello; while :; do :; done"], "start": true,
            "limits": {"cpus": 0.2}}),
    )
    .await;

    // No token yet; bad tokens are refused and not kept.
    let list = path("node-a", "/containers?all=true");
    assert_eq!(
        refusal(&hc, Method::GET, &list, None).await.1,
        "no_host_token"
    );
    let token_path = path("node-a", "/token");
    for bad in ["has space", "unknown-token-0123456789"] {
        let (status, _, field) =
            refusal(&hc, Method::PUT, &token_path, Some(json!({"token": bad}))).await;
        assert_eq!((status, field.as_deref()), (400, Some("token")), "{bad}");
    }
    host.add_user("op", "operator", &[&team]);
    let (status, _, field) = refusal(
        &hc,
        Method::PUT,
        &token_path,
        Some(json!({"token": host.token_for("op")})),
    )
    .await;
    assert_eq!(
        (status, field.as_deref()),
        (400, Some("token")),
        "an operator's token"
    );
    assert_eq!(
        refusal(&hc, Method::GET, &list, None).await.1,
        "no_host_token"
    );

    // An admin's token, checked over HTTPS against --fleet-ca and kept.
    host.add_user("boss", "admin", &[]);
    let boss_token = host.token_for("boss");
    let set: wire::fleet::HostTokenState = call(
        &hc,
        Method::PUT,
        &token_path,
        Some(json!({"token": boss_token})),
    )
    .await
    .unwrap();
    assert_eq!((set.user.as_str(), set.set_by.as_str()), ("boss", "root"));
    let hosts: wire::fleet::FleetHosts = call(&hc, Method::GET, "/api/v1/fleet/hosts", None)
        .await
        .unwrap();
    assert!(
        hosts
            .hosts
            .iter()
            .any(|h| h.host_id == "node-a" && h.token_set)
    );

    // Listed through the hub (API and CLI).
    let listed: Vec<wire::Container> = call(&hc, Method::GET, &list, None).await.unwrap();
    assert!(
        listed.iter().any(|c| c.name == name && c.team == team),
        "{listed:?}"
    );
    let hosts = hub.corral(&["fleet", "hosts"]);
    let line = hosts.lines().find(|l| l.starts_with("node-a")).unwrap();
    assert!(line.trim_end().ends_with("set"), "{hosts}");
    let ps = hub.corral(&["fleet", "ps", "node-a", "-a"]);
    assert!(ps.contains(&name), "{ps}");

    // Stopped and started through the hub: the host's container follows.
    let act = |a: &str| path("node-a", &format!("/containers/{name}/{a}"));
    let stopped: wire::Container =
        call(&hc, Method::POST, &act("stop"), Some(json!({"timeout": 1})))
            .await
            .unwrap();
    assert_eq!(stopped.status, "exited");
    assert_eq!(get(&ch, &name).await.status, "exited");
    let started: wire::Container = call(&hc, Method::POST, &act("start"), None).await.unwrap();
    assert_eq!(started.status, "running");
    let pid = get(&ch, &name).await.pid.expect("running init");
    assert!(burns(pid).await > 0, "the loop runs");

    // Frozen through the CLI (docker's `pause` spelling): its CPU time stops; thawed, it runs.
    let out = hub.corral(&["fleet", "pause", "node-a", &name]);
    assert!(out.contains("paused"), "{out}");
    assert_eq!(get(&ch, &name).await.status, "paused");
    assert_eq!(burns(pid).await, 0, "a frozen container burns nothing");
    let _: wire::Container = call(&hc, Method::POST, &act("thaw"), None).await.unwrap();
    assert!(burns(pid).await > 0, "thawed, the loop runs again");

    // Bad input names the field and changes nothing.
    let (status, _, field) = refusal(&hc, Method::POST, &act("exec"), None).await;
    assert_eq!((status, field.as_deref()), (400, Some("action")));
    let (status, _, field) = refusal(
        &hc,
        Method::POST,
        &act("stop"),
        Some(json!({"timeout": 600})),
    )
    .await;
    assert_eq!((status, field.as_deref()), (400, Some("timeout")));
    assert_eq!(get(&ch, &name).await.status, "running");

    // Other users of the hub: another team's member sees nothing, a viewer cannot act.
    let other = tests::unique("fwo");
    add_team(&hc, &other).await;
    hub.add_user("stranger", "operator", &[&other]);
    hub.add_user("watcher", "viewer", &[&team]);
    let stranger = hub.tcp_client(Some(hub.token_for("stranger")));
    let seen: Vec<wire::Container> = call(&stranger, Method::GET, &list, None).await.unwrap();
    assert!(seen.iter().all(|c| c.name != name), "{seen:?}");
    assert_eq!(
        refusal(&stranger, Method::POST, &act("stop"), None).await.0,
        404
    );
    let watcher = hub.tcp_client(Some(hub.token_for("watcher")));
    let seen: Vec<wire::Container> = call(&watcher, Method::GET, &list, None).await.unwrap();
    assert!(seen.iter().any(|c| c.name == name));
    assert_eq!(
        refusal(&watcher, Method::POST, &act("kill"), None).await.0,
        403
    );
    assert_eq!(
        refusal(
            &watcher,
            Method::PUT,
            &token_path,
            Some(json!({"token": "x"}))
        )
        .await
        .0,
        403
    );
    assert_eq!(get(&ch, &name).await.status, "running");

    // The container's output through the hub: for a viewer too, not for another team.
    let logs_path = path("node-a", &format!("/containers/{name}/logs?tail=5"));
    let (_, text) = watcher
        .request(Method::GET, &logs_path, None)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&text).contains("fleet-hello"));
    assert_eq!(
        refusal(&stranger, Method::GET, &logs_path, None).await.0,
        404
    );
    let zero = path("node-a", &format!("/containers/{name}/logs?tail=0"));
    let (code, _, field) = refusal(&hc, Method::GET, &zero, None).await;
    assert_eq!((code, field.as_deref()), (400, Some("tail")));
    let out = hub.corral(&["fleet", "logs", "node-a", &name, "-n", "5"]);
    assert!(out.contains("fleet-hello"), "{out}");

    // Each action in the hub's audit log under its caller.
    let audit: Vec<wire::AuditEntry> = call(&hc, Method::GET, "/api/v1/audit?limit=200", None)
        .await
        .unwrap();
    let target = format!("node-a/{name}");
    for (actor, action, result) in [
        ("root", "fleet.container.stop", "ok"),
        ("root", "fleet.container.freeze", "ok"),
        ("stranger", "fleet.container.stop", "failed"),
        ("watcher", "fleet.container.kill", "denied"),
    ] {
        assert!(
            audit.iter().any(|e| e.actor == actor
                && e.action == action
                && e.result == result
                && e.target.as_deref() == Some(&target)),
            "{actor} {action} {result}: {audit:?}"
        );
    }

    // The token is in no answer of the hub and not in its log.
    for p in ["/api/v1/fleet/hosts", "/api/v1/audit?limit=500"] {
        let (_, body) = hc.request(Method::GET, p, None).await.unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains(&boss_token),
            "{p} shows the token"
        );
    }
    assert!(!hub.log().contains(&boss_token), "the hub logged the token");

    // Removed through the hub.
    let _: serde_json::Value = call(
        &hc,
        Method::DELETE,
        &path("node-a", &format!("/containers/{name}?force=true")),
        None,
    )
    .await
    .unwrap();
    let gone = call::<wire::Container>(
        &ch,
        Method::GET,
        &format!("/api/v1/containers/{name}"),
        None,
    )
    .await
    .expect_err("removed");
    assert_eq!(api_status(gone).0, 404);

    // The host revokes boss's tokens: the hub says so.
    let tokens: Vec<wire::TokenInfo> = call(&ch, Method::GET, "/api/v1/tokens", None)
        .await
        .unwrap();
    let boss: Vec<_> = tokens.iter().filter(|t| t.user == "boss").collect();
    assert!(!boss.is_empty(), "{tokens:?}");
    for t in boss {
        let _: serde_json::Value = call(
            &ch,
            Method::DELETE,
            &format!("/api/v1/tokens/{}", t.id),
            None,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        refusal(&hc, Method::GET, &list, None).await,
        (502, "host_token_refused".into(), None)
    );
    // Forgotten on the hub.
    let _: serde_json::Value = call(&hc, Method::DELETE, &token_path, None).await.unwrap();
    assert_eq!(
        refusal(&hc, Method::GET, &list, None).await.1,
        "no_host_token"
    );
}

/// The hub's hosts as it lists them: node's advertised URL, once it is `want`.
async fn wait_advertised(hc: &Client, node: &str, want: &str) {
    let t = Instant::now();
    loop {
        let hosts: wire::fleet::FleetHosts = call(hc, Method::GET, "/api/v1/fleet/hosts", None)
            .await
            .unwrap();
        if hosts
            .hosts
            .iter()
            .any(|h| h.host_id == node && h.api_url.as_deref() == Some(want))
        {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{node} never advertised {want}: {hosts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_hosts_token_goes_only_to_the_url_it_was_checked_against() {
    if in_vm() {
        println!("skipped: no PostgreSQL in the VM");
        return;
    }
    let pg = Postgres::start();
    let mut host = pg.daemon_on_port("node-p", |port| {
        vec!["--advertise-url".into(), format!("http://127.0.0.1:{port}")]
    });
    let hub = pg.daemon("hub-p", None, &["--hub"]);
    let _reapers = (Reaper::new(&host), Reaper::new(&hub));
    let hc = hub.unix_client();
    let home = host.url();
    wait_advertised(&hc, "node-p", &home).await;
    host.add_user("boss", "admin", &[]);
    let token_path = path("node-p", "/token");
    let _: wire::fleet::HostTokenState = call(
        &hc,
        Method::PUT,
        &token_path,
        Some(json!({"token": host.token_for("boss")})),
    )
    .await
    .unwrap();
    let list = path("node-p", "/containers");
    let _: Vec<wire::Container> = call(&hc, Method::GET, &list, None).await.unwrap();

    // Someone under node-p's id now advertises another URL: a loopback listener of ours.
    let decoy = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    decoy.set_nonblocking(true).unwrap();
    let elsewhere = format!("http://{}", decoy.local_addr().unwrap());
    host.stop();
    host.set_flag("--advertise-url", &elsewhere);
    host.restart();
    wait_advertised(&hc, "node-p", &elsewhere).await;
    let (code, kind, _) = refusal(&hc, Method::GET, &list, None).await;
    assert_eq!((code, kind.as_str()), (409, "host_url_changed"));
    let (code, kind, _) = refusal(
        &hc,
        Method::POST,
        &path("node-p", "/containers/anything/stop"),
        None,
    )
    .await;
    assert_eq!((code, kind.as_str()), (409, "host_url_changed"));
    match decoy.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the hub connected to the new URL: {other:?}"),
    }

    // A plain-http URL off loopback would carry the token in the clear: refused, unsent.
    host.stop();
    host.set_flag("--advertise-url", "http://10.213.7.1:7700");
    host.restart();
    wait_advertised(&hc, "node-p", "http://10.213.7.1:7700").await;
    let (code, kind, _) = refusal(&hc, Method::GET, &list, None).await;
    assert_eq!((code, kind.as_str()), (409, "insecure_api_url"));

    // Back at the URL the token was checked against: served again.
    host.stop();
    host.set_flag("--advertise-url", &home);
    host.restart();
    wait_advertised(&hc, "node-p", &home).await;
    let _: Vec<wire::Container> = call(&hc, Method::GET, &list, None).await.unwrap();
}
