//! Start-latency benchmark (prints a table, asserts nothing about speed):
//! start→exit of /bin/true in a Corral container vs `unshare --fork --pid --mount --uts --ipc
//! --net /bin/true` vs a plain /bin/true. Run with
//! `cargo test -p tests --test it -- --ignored kernel::container_bench --nocapture`
//! (`CORRAL_BENCH_RUNS`, default 30).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use hyper::Method;
use tests::Daemon;

use tests::rootfs::Rootfs;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::test]
#[ignore = "benchmark: run explicitly with --ignored --nocapture"]
async fn container_start_latency() {
    let runs: usize = std::env::var("CORRAL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let daemon = Daemon::start();
    let _reaper = tests::containers::Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let (mut started, mut exited, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs + 1 {
        let name = format!("bench{i}");
        let body = serde_json::json!({"name": name, "rootfs": rootfs.path(), "command": ["/bin/true"], "start": true});
        let t0 = Instant::now();
        c.request(
            Method::POST,
            "/api/v1/containers",
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap();
        let t1 = t0.elapsed();
        loop {
            let (_, b) = c
                .request(Method::GET, &format!("/api/v1/containers/{name}"), None)
                .await
                .unwrap();
            let ct: wire::Container = serde_json::from_slice(&b).unwrap();
            if ct.status == "exited" {
                assert_eq!(ct.exit_code, Some(0));
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let t2 = t0.elapsed();
        let r0 = Instant::now();
        c.request(Method::DELETE, &format!("/api/v1/containers/{name}"), None)
            .await
            .unwrap();
        let r = r0.elapsed();
        if i > 0 {
            // The first run pays for the memfd copy of the binary: report the steady state.
            started.push(t1);
            exited.push(t2);
            removed.push(r);
        }
    }
    let time_cmd = |prog: &str, args: &[&str]| -> Option<Duration> {
        let mut v = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let s = std::process::Command::new(prog).args(args).status().ok()?;
            if !s.success() {
                return None;
            }
            v.push(t.elapsed());
        }
        Some(median(v))
    };
    let truth = if std::path::Path::new("/bin/true").exists() {
        "/bin/true"
    } else {
        "true"
    };
    let unshare = time_cmd(
        "unshare",
        &[
            "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", truth,
        ],
    );
    let plain = time_cmd(truth, &[]);
    println!("\nstart latency, median of {runs} runs (ms)");
    println!("| what | median ms |");
    println!("|---|---|");
    println!(
        "| corral: create+start answered (command exec'd) | {} |",
        ms(median(started))
    );
    println!(
        "| corral: start→exit of /bin/true observed via API | {} |",
        ms(median(exited))
    );
    println!(
        "| corral: rm (cgroup, dir, record) | {} |",
        ms(median(removed))
    );
    match unshare {
        Some(d) => println!(
            "| unshare --fork --pid --mount --uts --ipc --net /bin/true | {} |",
            ms(d)
        ),
        None => println!("| unshare ... /bin/true | not available |"),
    }
    if let Some(d) = plain {
        println!("| plain /bin/true | {} |", ms(d));
    }
}
