//! Pressure in the stored history: a container whose two busy loops share `--cpus 0.2` waits
//! for CPU most of the time, and the history API (read from the raw samples in SQLite) shows
//! its `cpu.pressure` `some avg10` above zero. Works on this hybrid host (the cgroup2 hierarchy
//! at /sys/fs/cgroup/unified has `*.pressure`) and in the pure cgroup-v2 VM. Where the kernel
//! has no PSI at all, the history must carry no pressure rather than zeros.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use hyper::Method;
use tests::{Daemon, containers::Reaper, rootfs::Rootfs};

async fn call(
    c: &backend::client::Client,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Vec<u8> {
    let (_, bytes) = c
        .request(method, path, body.map(|b| serde_json::to_vec(&b).unwrap()))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes.to_vec()
}

#[tokio::test]
async fn a_container_under_cpu_contention_shows_cpu_pressure_in_its_history() {
    let daemon = Daemon::start_with(&["--sample-interval", "1"]);
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = tests::unique("psi");
    call(
        &c,
        Method::POST,
        "/api/v1/containers",
        Some(serde_json::json!({
            "name": name,
            "team": "meter-psi",
            "rootfs": rootfs.path(),
            // Two burners under a fifth of a CPU: each runs at most 10 % of the time and waits
            // for the quota (throttled) or the other (runnable) for the rest.
            "command": ["/bin/sh", "-c", "while :; do :; done & while :; do :; done"],
            "limits": {"cpus": 0.2},
            "start": true,
        })),
    )
    .await;
    let psi_host = std::path::Path::new("/proc/pressure/cpu").exists();
    let deadline = Instant::now() + Duration::from_secs(90);
    let (best, points) = loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let b = call(
            &c,
            Method::GET,
            &format!("/api/v1/containers/{name}/history?range=5m&step=1s"),
            None,
        )
        .await;
        let h: wire::billing::History =
            serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}: {b:?}"));
        assert_eq!(h.tier, "raw");
        let best = h
            .points
            .iter()
            .filter_map(|p| p.cpu_pressure)
            .fold(0.0f64, f64::max);
        // Pressure climbs over its 10 s window: wait for a clear value, not the first blip.
        if (psi_host && best >= 10.0) || (!psi_host && h.points.len() >= 5) {
            break (best, h.points);
        }
        if Instant::now() >= deadline {
            let s = call(&c, Method::GET, "/api/v1/stats", None).await;
            println!("live: {}", String::from_utf8_lossy(&s));
        }
        assert!(
            Instant::now() < deadline,
            "no cpu pressure ≥ 10 % in the history after 90 s (best {best} %): {:?}",
            h.points
        );
    };
    let with_psi = points.iter().filter(|p| p.cpu_pressure.is_some()).count();
    println!(
        "two burners under --cpus 0.2: highest cpu pressure some avg10 in the history {best:.2} % ({with_psi} of {} points with pressure; host PSI: {psi_host})",
        points.len()
    );
    if psi_host {
        assert!(best > 0.0);
        let max = points
            .iter()
            .filter_map(|p| p.cpu_pressure_max)
            .fold(0.0f64, f64::max);
        assert!(max >= best, "the bucket maximum {max} ≥ its average {best}");
        assert!(
            points.iter().any(|p| p.memory_pressure.is_some()),
            "memory pressure is stored too"
        );
    } else {
        assert_eq!(with_psi, 0, "no PSI on this kernel: no pressure, not zeros");
    }
    call(
        &c,
        Method::DELETE,
        &format!("/api/v1/containers/{name}?force=true"),
        None,
    )
    .await;
}
