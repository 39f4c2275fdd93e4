//! Prometheus over a fleet (issue 19): two daemons standing in for two hosts (`--host-id
//! node-a`, `node-b`), each running a CPU burner in the same team, scraped by a real Prometheus
//! (Debian's, which `cargo xtask test` unpacks beside promtool) with the config and recording
//! rules `corral prometheus config|rules` print. Every series carries its `host`; the rules sum
//! the team across both hosts. Skipped in the VM (no Prometheus there).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tests::{
    Daemon,
    containers::{Reaper, add_team, create, remove},
    rootfs::Rootfs,
};

/// promtool (`$PROMTOOL`, else on the PATH) and the prometheus server beside it.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let promtool =
        std::env::var_os("PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    let server = match promtool.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.join("prometheus"),
        None => PathBuf::from("prometheus"),
    };
    let runs = |p: &PathBuf| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    (runs(&promtool) && runs(&server)).then_some((promtool, server))
}

/// The Prometheus we started, killed and reaped on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `query` at Prometheus on `port`: the `data.result` of its answer.
fn query(port: u16, query: &str) -> Vec<serde_json::Value> {
    let enc: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("GET /api/v1/query?query={enc} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return Vec::new();
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// The value of a one-sample instant vector's sample.
fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn one_prometheus_sums_a_team_across_two_hosts() {
    if std::env::var_os("CORRAL_IN_VM").is_some() {
        println!("skipped: no Prometheus in the VM");
        return;
    }
    let Some((promtool, server)) = tools() else {
        assert!(
            std::env::var_os("CORRAL_SKIP_PROMTOOL").is_some(),
            "promtool and prometheus are needed (cargo xtask test unpacks Debian's; or set \
             PROMTOOL, or CORRAL_SKIP_PROMTOOL=1)"
        );
        return;
    };
    let hosts = [
        ("node-a", Daemon::start_with(&["--host-id", "node-a"])),
        ("node-b", Daemon::start_with(&["--host-id", "node-b"])),
    ];
    let _reapers: Vec<Reaper> = hosts.iter().map(|(_, d)| Reaper::new(d)).collect();
    let team = tests::unique("fleet");
    let rootfs = Rootfs::new();
    let dir = tests::TempDir::new("corral-prometheus");
    let mut targets = Vec::new();
    let mut names = Vec::new();
    for (id, d) in &hosts {
        let c = d.unix_client();
        add_team(&c, &team).await;
        let name = tests::unique("burn");
        create(
            &c,
            serde_json::json!({"name": name, "team": team, "rootfs": rootfs.path(),
                "command": ["/bin/sh", "-c", "while :; do :; done"],
                "limits": {"cpus": 0.2}, "start": true}),
        )
        .await;
        names.push(name);
        std::fs::write(
            dir.path().join(format!("corral-{id}.token")),
            d.admin_token(),
        )
        .unwrap();
        let addr = d.url().trim_start_matches("http://").to_owned();
        targets.push(format!("{id}={addr}"));
        // `corral info` names the host.
        assert!(d.corral(&["info"]).contains(&format!("Host id:      {id}")));
    }

    // The config and rules as `corral prometheus` prints them, checked by promtool.
    let a = &hosts[0].1;
    let rules = dir.path().join("corral-rules.yml");
    std::fs::write(&rules, a.corral(&["prometheus", "rules"])).unwrap();
    let token_file = format!("{}/corral-{{host}}.token", dir.path().display());
    let rules_arg = rules.to_str().unwrap();
    let config = a.corral(&[
        "prometheus",
        "config",
        "--target",
        &targets[0],
        "--target",
        &targets[1],
        "--scheme",
        "http",
        "--interval",
        "1s",
        "--token-file",
        &token_file,
        "--rules-file",
        rules_arg,
    ]);
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, &config).unwrap();
    for (what, file) in [("config", &config_file), ("rules", &rules)] {
        let out = Command::new(&promtool)
            .args(["check", what])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check {what}: {}{}\n{config}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let port = tests::free_port();
    let data = dir.path().join("data");
    let _prom = Prometheus(
        Command::new(&server)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Both hosts scraped, each series with its host; the team's cores summed over both.
    let t = Instant::now();
    let (per_host, fleet) = loop {
        let up = query(port, "fleet:corral_hosts_up:count");
        let per_host = query(
            port,
            &format!("host_team:corral_cpu_cores:rate5m{{team=\"{team}\"}}"),
        );
        let fleet = query(
            port,
            &format!("team:corral_cpu_cores:rate5m{{team=\"{team}\"}}"),
        );
        let ready = up.first().is_some_and(|s| value(s) == 2.0)
            && per_host.len() == 2
            && per_host.iter().all(|s| value(s) > 0.0)
            && fleet.first().is_some_and(|s| value(s) > 0.0);
        if ready {
            break (per_host, fleet);
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "Prometheus sums the team over both hosts: up {up:?}, per host {per_host:?}, fleet \
             {fleet:?}\nconfig:\n{config}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut seen: Vec<&str> = per_host
        .iter()
        .map(|s| s["metric"]["host"].as_str().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, ["node-a", "node-b"]);
    let cores: Vec<f64> = per_host.iter().map(value).collect();
    let total = value(&fleet[0]);
    println!(
        "prometheus: team {team} uses {cores:?} cores on node-a/node-b, {total:.3} in the fleet"
    );
    // The fleet's figure is the hosts' sum (one evaluation: both rules are in one group).
    let diff = query(
        port,
        &format!(
            "team:corral_cpu_cores:rate5m{{team=\"{team}\"}} - on(team) \
             sum by (team) (host_team:corral_cpu_cores:rate5m{{team=\"{team}\"}})"
        ),
    );
    assert!(
        diff.first().is_some_and(|s| value(s).abs() < 1e-9),
        "fleet = sum of hosts: {diff:?}"
    );
    // Raw series carry `host` too.
    let raw = query(
        port,
        &format!("corral_team_cpu_seconds_total{{team=\"{team}\"}}"),
    );
    assert_eq!(raw.len(), 2, "{raw:?}");
    assert!(raw.iter().all(|s| s["metric"]["host"].is_string()));

    for ((_, d), name) in hosts.iter().zip(&names) {
        remove(&d.unix_client(), name).await;
    }
}
