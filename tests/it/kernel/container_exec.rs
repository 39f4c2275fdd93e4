//! `exec` on the real kernel (issue 12): output streams with back-pressure and is never held by
//! the daemon; a client that goes away, a timeout or the JSON answer's cap kill the command and
//! what it started inside the container; exit codes and streams stay right.

use std::{
    io::{Read, Write},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hyper::Method;
use tests::{
    Daemon,
    containers::{
        Reaper, call, exec, exec_stream, frame_bytes, procs_running, remove, rss, sleeper,
    },
    rootfs::Rootfs,
};

/// The most the daemon's resident memory may grow while an exec streams `cat /dev/zero`
/// (measured: a few MiB; today's main grew by 1.4 GB in 6 s).
const RSS_GROWTH_BOUND: u64 = 64 << 20;

/// Fails at once (before a buffering daemon eats the host) when RSS grew past the bound.
fn assert_bounded(before: u64, now: u64, when: &str) {
    assert!(
        now.saturating_sub(before) < RSS_GROWTH_BOUND,
        "daemon RSS grew by {} MiB {when} (bound {} MiB)",
        now.saturating_sub(before) >> 20,
        RSS_GROWTH_BOUND >> 20
    );
}

/// Waits until no process in the daemon's containers runs `argv`; false after `within`.
fn gone(d: &Daemon, argv: &[&str], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if procs_running(&d.cgroup_root, argv).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Waits until a process in the daemon's containers runs `argv`.
fn running(d: &Daemon, argv: &[&str]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !procs_running(&d.cgroup_root, argv).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `corral exec` (the CLI, streaming) with our end of its stdout as a pipe; killed on drop.
struct CliExec(Child);

impl CliExec {
    fn start(d: &Daemon, args: &[&str]) -> Self {
        let child = Command::new(tests::corral_bin())
            .arg("--host")
            .arg(format!("unix://{}", d.socket.display()))
            .arg("exec")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn corral exec");
        CliExec(child)
    }
}

impl Drop for CliExec {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn exec_streams_with_back_pressure_and_a_gone_client_kills_the_command() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = sleeper(&daemon, &rootfs, "ex").await;
    let pid = daemon.pid().expect("daemon pid");
    // Warm up (first helper copy, first connection), then the baseline.
    assert_eq!(exec(&c, &name, &["true"]).await.exit_code, 0);
    let before = rss(pid);
    let cat = ["cat", "/dev/zero"];
    let mut cli = CliExec::start(&daemon, &[&name, "cat", "/dev/zero"]);
    let mut out = cli.0.stdout.take().expect("cli stdout");

    // 1. The client stops reading (its stdout pipe is full, it stops reading the socket): the
    //    command must block, not the daemon fill up.
    assert!(running(&daemon, &cat), "cat runs");
    let mut peak_stalled = before;
    let stalled_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < stalled_until {
        peak_stalled = peak_stalled.max(rss(pid));
        assert_bounded(before, peak_stalled, "stalled");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !procs_running(&daemon.cgroup_root, &cat).is_empty(),
        "a slow client only blocks the command"
    );

    // 2. The client reads as fast as it can for 10 s: throughput, and memory while it flows.
    let (bytes, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let reader = {
        let (bytes, done) = (bytes.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut nonzero = false;
            while !done.load(Ordering::Relaxed) {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        nonzero |= buf[..n].iter().any(|b| *b != 0);
                        bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
            (out, nonzero)
        })
    };
    let start = Instant::now();
    let mut peak_flowing = before;
    while start.elapsed() < Duration::from_secs(10) {
        peak_flowing = peak_flowing.max(rss(pid));
        assert_bounded(before, peak_flowing, "streaming");
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = start.elapsed().as_secs_f64();
    let streamed = bytes.load(Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    let (out, nonzero) = reader.join().expect("reader");
    assert!(!nonzero, "cat /dev/zero streams zeros");
    let mb_per_s = streamed as f64 / secs / 1e6;
    assert!(streamed > 1 << 20, "output flows: {streamed} bytes");

    // 3. The client goes away (the CLI is killed): the command dies inside the container.
    drop(out);
    drop(cli);
    let t = Instant::now();
    assert!(
        gone(&daemon, &cat, Duration::from_secs(10)),
        "cat still runs in the container after its client went away"
    );
    let killed_after = t.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let after = rss(pid);
    eprintln!(
        "exec cat /dev/zero: daemon RSS before {:.1} MiB, peak with a stalled client {:.1} MiB, \
         peak while streaming {:.1} MiB, after {:.1} MiB; streamed {:.0} MB in {secs:.1} s = \
         {mb_per_s:.0} MB/s; cat gone {killed_after:?} after the client",
        before as f64 / 1048576.0,
        peak_stalled as f64 / 1048576.0,
        peak_flowing as f64 / 1048576.0,
        after as f64 / 1048576.0,
        streamed as f64 / 1e6,
    );
    assert_bounded(before, after, "after");
    // The daemon still serves exec.
    assert_eq!(exec(&c, &name, &["echo", "hi"]).await.stdout, "hi\n");
    remove(&c, &name).await;
}

#[tokio::test]
async fn a_silent_command_and_what_it_started_die_when_the_client_disconnects() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = sleeper(&daemon, &rootfs, "ex").await;
    // A shell with a background child, a child in its own session, and a foreground child.
    let body = serde_json::json!({"command": ["sh", "-c",
        "sleep 1231 & setsid sleep 1232 & sleep 1233"]})
    .to_string();
    let mut s = std::os::unix::net::UnixStream::connect(&daemon.socket).expect("connect");
    write!(
        s,
        "POST /api/v1/containers/{name}/exec HTTP/1.1\r\nHost: localhost\r\n\
         Accept: application/x-ndjson\r\nContent-Type: application/json\r\n\
         X-Corral-Client: cli\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send request");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("answer head");
    assert_eq!(&head, b"HTTP/1.1 200");
    for n in ["1231", "1232", "1233"] {
        assert!(running(&daemon, &["sleep", n]), "sleep {n} runs");
    }
    // The client goes away while the command prints nothing.
    drop(s);
    for n in ["1231", "1232", "1233"] {
        assert!(
            gone(&daemon, &["sleep", n], Duration::from_secs(10)),
            "sleep {n} still runs after the client went away"
        );
    }
    // The container itself is untouched.
    assert_eq!(exec(&c, &name, &["echo", "alive"]).await.stdout, "alive\n");
    remove(&c, &name).await;
}

#[tokio::test]
async fn a_daemon_crash_kills_the_commands_it_was_running() {
    let mut daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = sleeper(&daemon, &rootfs, "ex").await;
    let cli = CliExec::start(&daemon, &[&name, "sh", "-c", "sleep 1271 & sleep 1272"]);
    for n in ["1271", "1272"] {
        assert!(running(&daemon, &["sleep", n]), "sleep {n} runs");
    }
    daemon.kill9();
    for n in ["1271", "1272"] {
        assert!(
            gone(&daemon, &["sleep", n], Duration::from_secs(10)),
            "sleep {n} outlived the daemon that ran it"
        );
    }
    drop(cli);
    // The container outlives the daemon, as always, and execs again after its restart.
    daemon.restart();
    assert_eq!(exec(&c, &name, &["echo", "back"]).await.stdout, "back\n");
    remove(&c, &name).await;
}

#[tokio::test]
async fn the_json_answer_is_capped_and_the_command_killed_at_the_cap() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = sleeper(&daemon, &rootfs, "ex").await;
    let t = Instant::now();
    let r = exec(&c, &name, &["sh", "-c", "echo started >&2; cat /dev/zero"]).await;
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(r.truncated, "{}", r.exit_code);
    assert!(!r.timed_out);
    assert_eq!(r.stdout.len(), wire::EXEC_OUTPUT_CAP);
    assert!(r.stdout.bytes().all(|b| b == 0));
    assert_eq!(r.stderr, "started\n");
    assert_eq!(r.exit_code, 137, "killed at the cap");
    assert!(
        gone(&daemon, &["cat", "/dev/zero"], Duration::from_secs(10)),
        "cat still runs after the capped answer"
    );
    // Below the cap nothing is cut.
    let r = exec(
        &c,
        &name,
        &["sh", "-c", "head -c 1000000 /dev/zero; exit 4"],
    )
    .await;
    assert_eq!(
        (r.exit_code, r.truncated, r.stdout.len()),
        (4, false, 1_000_000)
    );
    // Without streaming the answer must come within the API's 30 s: the timeout says so.
    let e = call::<wire::ExecResult>(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/exec"),
        Some(serde_json::json!({"command": ["true"], "timeout": 60})),
    )
    .await
    .expect_err("timeout 60 without streaming");
    assert!(
        matches!(&e, backend::client::ClientError::Api { status, field: Some(f), .. }
            if status.as_u16() == 400 && f == "timeout"),
        "{e:?}"
    );
    let r: wire::ExecResult = call(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/exec"),
        Some(serde_json::json!({"command": ["sleep", "1241"], "timeout": 1})),
    )
    .await
    .expect("exec with a timeout");
    assert_eq!((r.exit_code, r.timed_out), (137, true));
    assert!(gone(&daemon, &["sleep", "1241"], Duration::from_secs(10)));
    remove(&c, &name).await;
}

#[tokio::test]
async fn streamed_exec_keeps_streams_order_bytes_and_exit_codes() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = sleeper(&daemon, &rootfs, "ex").await;
    let frames = exec_stream(
        &c,
        &name,
        serde_json::json!({"command": ["sh", "-c",
            "echo out1; sleep 0.3; echo err1 >&2; sleep 0.3; printf '\\000\\377\\n'; exit 3"]}),
    )
    .await
    .expect("streamed exec");
    let seen: Vec<(Option<wire::ExecStream>, Vec<u8>, Option<i32>)> = frames
        .iter()
        .map(|f| (f.stream, frame_bytes(f), f.exit_code))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Some(wire::ExecStream::Stdout), b"out1\n".to_vec(), None),
            (Some(wire::ExecStream::Stderr), b"err1\n".to_vec(), None),
            (Some(wire::ExecStream::Stdout), vec![0, 255, b'\n'], None),
            (None, vec![], Some(3)),
        ],
        "{frames:?}"
    );
    // A signal's exit code, and a streamed timeout.
    let frames = exec_stream(
        &c,
        &name,
        serde_json::json!({"command": ["sh", "-c", "kill -TERM $$"]}),
    )
    .await
    .expect("streamed exec");
    assert_eq!(frames.last().and_then(|f| f.exit_code), Some(143));
    let t = Instant::now();
    let frames = exec_stream(
        &c,
        &name,
        serde_json::json!({"command": ["sh", "-c", "echo before; sleep 1251"], "timeout": 1}),
    )
    .await
    .expect("streamed exec");
    let last = frames.last().expect("a last frame");
    assert_eq!((last.exit_code, last.timed_out), (Some(137), true));
    assert_eq!(frame_bytes(&frames[0]), b"before\n");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(gone(&daemon, &["sleep", "1251"], Duration::from_secs(10)));
    // Bad input is refused before anything runs.
    let e = exec_stream(
        &c,
        &name,
        serde_json::json!({"command": ["true"], "timeout": 0}),
    )
    .await
    .expect_err("timeout 0");
    assert!(
        matches!(&e, backend::client::ClientError::Api { field: Some(f), .. } if f == "timeout"),
        "{e:?}"
    );
    remove(&c, &name).await;
}

#[tokio::test]
async fn cli_exec_writes_each_stream_to_its_own_and_exits_with_the_code() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let name = sleeper(&daemon, &rootfs, "ex").await;
    let host = format!("unix://{}", daemon.socket.display());
    let o = Command::new(tests::corral_bin())
        .args(["--host", &host, "exec", &name])
        .args(["sh", "-c", "echo out; echo err >&2; exit 3"])
        .output()
        .expect("corral exec");
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // More than the JSON cap, byte for byte, through the stream.
    let o = Command::new(tests::corral_bin())
        .args(["--host", &host, "exec", &name])
        .args([
            "sh",
            "-c",
            "head -c 5000000 /dev/urandom > /tmp/x; sha256sum /tmp/x >&2; cat /tmp/x",
        ])
        .output()
        .expect("corral exec");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(o.stdout.len(), 5_000_000);
    use sha2::Digest;
    let got: String = sha2::Sha256::digest(&o.stdout)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).split_whitespace().next(),
        Some(got.as_str()),
        "the bytes arrived unchanged"
    );
    // --timeout kills it.
    let t = Instant::now();
    let o = Command::new(tests::corral_bin())
        .args([
            "--host",
            &host,
            "exec",
            "--timeout",
            "1",
            &name,
            "sleep",
            "1261",
        ])
        .output()
        .expect("corral exec");
    assert_eq!(o.status.code(), Some(137), "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(15));
    assert!(gone(&daemon, &["sleep", "1261"], Duration::from_secs(10)));
    remove(&c, &name).await;
}
