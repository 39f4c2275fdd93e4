//! Interactive containers (issue 15) on the real kernel, driven as a person would: the CLI on
//! a real terminal (`tests::pty`). A pty from the container's own devpts, its size at start
//! and on resize, the exit code, detaching with Ctrl-P Ctrl-Q and attaching again (also after
//! a daemon restart: the monitor owns the terminal), stdin through a pipe without `-t`, a large
//! output streamed with the daemon's memory bounded, output arriving as it is produced, and an
//! exec'd terminal session hardened like any exec, audited, refused to a viewer and hung up
//! when its client goes.

use std::{
    io::{Read, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tests::{
    Daemon,
    containers::{Reaper, call, get, procs_running, remove, rss, sleeper},
    pty::PtyCommand,
    rootfs::Rootfs,
};

use super::team_pool::in_vm;

const T: Duration = Duration::from_secs(20);

/// `corral --host unix://… ARGS`.
fn cli(d: &Daemon, args: &[&str]) -> Command {
    let mut c = Command::new(tests::corral_bin());
    c.arg("--host")
        .arg(format!("unix://{}", d.socket.display()))
        .args(args)
        .env_remove("CORRAL_TOKEN");
    c
}

/// Types `cmd` until `want` appears after the offset (a resize reaches the shell a moment
/// after the terminal changed); the offset past it.
fn retype_until(t: &mut PtyCommand, mut at: usize, cmd: &str, want: &str) -> usize {
    for _ in 0..20 {
        t.type_str(cmd);
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if let Some(i) = t.screen().get(at..).and_then(|s| s.find(want)) {
                return at + i + want.len();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        at = t.screen().len();
    }
    panic!(
        "{want:?} never appeared; the terminal shows:\n{}",
        t.screen()
    );
}

#[tokio::test]
async fn exec_it_is_a_terminal_of_the_container_that_resizes_and_exits_with_the_code() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let name = sleeper(&d, &rootfs, "tt").await;
    let mut t = PtyCommand::spawn(cli(&d, &["exec", "-it", &name, "sh"]), 30, 100);
    t.type_str("tty; stty size; echo done-$((6*7))\n");
    let at = t.wait_for(0, "/dev/pts/", T);
    let at = t.wait_for(at, "30 100", T);
    let at = t.wait_for(at, "done-42", T);
    t.resize(50, 132);
    let at = retype_until(&mut t, at, "stty size\n", "50 132");
    // A control character reaches the command: ^C interrupts the shell's `sleep`, not us.
    t.type_str("sleep 30\n");
    std::thread::sleep(Duration::from_millis(500));
    t.type_str("\x03");
    t.type_str("echo after-$((2+3))\n");
    t.wait_for(at, "after-5", T);
    t.type_str("exit 3\n");
    assert_eq!(t.wait(T), 3, "corral exec -it exits with the shell's code");
    remove(&d.unix_client(), &name).await;
}

#[tokio::test]
async fn run_it_detaches_with_ctrl_p_ctrl_q_and_attach_returns_even_after_a_daemon_restart() {
    let mut d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let name = tests::unique("ti");
    let root = rootfs.path().display().to_string();
    let mut t = PtyCommand::spawn(
        cli(
            &d,
            &["run", "-it", "--name", &name, "--rootfs", &root, "sh"],
        ),
        24,
        80,
    );
    t.type_str("tty; echo first-$((40+2))\n");
    let at = t.wait_for(0, "/dev/pts/", T);
    t.wait_for(at, "first-42", T);
    t.type_str("\x10\x11");
    assert_eq!(t.wait(T), 0, "detaching exits 0");
    drop(t);
    let c = d.unix_client();
    assert_eq!(
        get(&c, &name).await.status,
        "running",
        "detached, still running"
    );

    // The monitor owns the terminal: a daemon that crashed and started again attaches to it.
    d.kill9();
    d.restart();
    let mut a = PtyCommand::spawn(cli(&d, &["attach", &name]), 24, 80);
    a.type_str("echo again-$((1+1))\n");
    a.wait_for(0, "again-2", T);
    a.type_str("exit 4\n");
    assert_eq!(a.wait(T), 4, "attach exits with the container's code");
    let c = d.unix_client();
    let done = tests::containers::wait_exited(&c, &name, T).await;
    assert_eq!(done.exit_code, Some(4));
    remove(&c, &name).await;
}

#[tokio::test]
async fn exec_i_pipes_stdin_without_a_terminal_and_run_i_too() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let name = sleeper(&d, &rootfs, "tt").await;
    let run = |args: &[&str], input: &str| {
        let mut child = cli(&d, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn corral");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("corral");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["exec", "-i", &name, "cat"], "hi\n");
    assert_eq!((code, out.as_str()), (Some(0), "hi\n"), "stderr: {err}");
    let (code, out, _) = run(
        &[
            "exec",
            "-i",
            &name,
            "sh",
            "-c",
            "tr a-z A-Z; echo oops >&2; exit 5",
        ],
        "shout\n",
    );
    assert_eq!((code, out.as_str()), (Some(5), "SHOUT\n"));
    // Without -i the command's stdin is empty.
    let (code, out, _) = run(&["exec", &name, "sh", "-c", "cat; echo end"], "ignored\n");
    assert_eq!((code, out.as_str()), (Some(0), "end\n"));
    // run -i: the container's own stdin, held open by its monitor.
    let root = rootfs.path().display().to_string();
    let rn = tests::unique("tr");
    let (code, out, err) = run(
        &[
            "run",
            "-i",
            "--rm",
            "--name",
            &rn,
            "--rootfs",
            &root,
            "sh",
            "-c",
            "cat; exit 6",
        ],
        "through run\n",
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(6), "through run\n"),
        "stderr: {err}"
    );
    remove(&d.unix_client(), &name).await;
}

#[tokio::test]
async fn exec_streams_a_large_output_whole_with_the_daemons_memory_bounded() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let name = sleeper(&d, &rootfs, "tt").await;
    let pid = d.pid().expect("daemon pid");
    // 2 GiB on the host; TCG emulation in the VM moves a tenth of it in the same time.
    let total: u64 = if in_vm() { 256 << 20 } else { 2 << 30 };
    let before = rss(pid);
    let mut child = cli(
        &d,
        &[
            "exec",
            "-i",
            &name,
            "head",
            "-c",
            &total.to_string(),
            "/dev/zero",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .spawn()
    .expect("spawn corral exec");
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 1 << 16];
    let (mut got, mut peak) = (0u64, before);
    let start = Instant::now();
    let mut last_sample = Instant::now();
    loop {
        let n = out.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|b| *b == 0), "zeros arrive as zeros");
        got += n as u64;
        if last_sample.elapsed() > Duration::from_millis(50) {
            peak = peak.max(rss(pid));
            last_sample = Instant::now();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let status = child.wait().expect("wait");
    let growth = peak.saturating_sub(before);
    eprintln!(
        "exec -i head -c {total}: received {got} bytes in {secs:.1} s ({:.0} MB/s); daemon RSS \
         {:.1} MiB before, peak {:.1} MiB (growth {:.2} MiB)",
        got as f64 / secs / 1e6,
        before as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        growth as f64 / 1048576.0,
    );
    assert_eq!(status.code(), Some(0));
    assert_eq!(got, total, "every byte arrives");
    assert!(growth < 16 << 20, "daemon RSS grew by {growth} bytes");
    remove(&d.unix_client(), &name).await;
}

#[tokio::test]
async fn exec_output_arrives_as_it_is_produced() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let name = sleeper(&d, &rootfs, "tt").await;
    for (mode, args) in [
        ("streamed", vec!["exec"]),
        ("-i", vec!["exec", "-i"]),
        ("-t", vec!["exec", "-t"]),
    ] {
        let mut args: Vec<&str> = args;
        args.extend([
            name.as_str(),
            "sh",
            "-c",
            "for i in 1 2 3; do echo line$i; sleep 1; done",
        ]);
        let start = Instant::now();
        let mut child = cli(&d, &args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn corral exec");
        let mut out = child.stdout.take().expect("stdout");
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("line1") {
            let n = out.read(&mut buf).expect("read");
            assert!(n > 0, "{mode}: ended before the first line");
            seen.extend_from_slice(&buf[..n]);
        }
        let first = start.elapsed();
        let _ = out.read_to_end(&mut seen);
        let total = start.elapsed();
        assert_eq!(child.wait().expect("wait").code(), Some(0));
        eprintln!("exec {mode}: first line after {first:?}, all after {total:?}");
        assert!(
            first < Duration::from_millis(1500),
            "{mode}: the first line took {first:?}"
        );
        assert!(total >= Duration::from_secs(2), "{mode}: ran {total:?}");
    }
    remove(&d.unix_client(), &name).await;
}

#[tokio::test]
async fn exec_t_is_hardened_audited_and_hung_up_when_its_client_goes() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let name = sleeper(&d, &rootfs, "tt").await;
    let mut t = PtyCommand::spawn(cli(&d, &["exec", "-it", &name, "sh"]), 24, 80);
    // The same hardening as any exec: no_new_privs, the seccomp filter, Docker's capabilities.
    t.type_str("grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' = ; sleep 777 & echo bg-$((3*3))\n");
    let at = t.wait_for(0, "NoNewPrivs:=1", T);
    let at = t.wait_for(at, "Seccomp:=2", T);
    t.wait_for(at, "bg-9", T);
    let sleep = ["sleep", "777"];
    assert!(
        !procs_running(&d.cgroup_root, &sleep).is_empty(),
        "the background sleep runs"
    );
    // The client goes away (its terminal closes): the session is hung up and killed.
    let opened = Instant::now();
    drop(t);
    let deadline = Instant::now() + T;
    while !procs_running(&d.cgroup_root, &sleep).is_empty() {
        assert!(Instant::now() < deadline, "sleep 777 outlived its client");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "exec -it: session gone {:?} after its client",
        opened.elapsed()
    );
    // Audited: who opened a shell where, and how it ended.
    let c = d.unix_client();
    let after = |e: &wire::AuditEntry| -> serde_json::Value {
        serde_json::from_str(e.after.as_deref().unwrap_or("null")).expect("after is JSON")
    };
    let deadline = Instant::now() + T;
    let rows = loop {
        let rows: Vec<wire::AuditEntry> =
            call(&c, hyper::Method::GET, "/api/v1/audit?limit=100", None)
                .await
                .expect("audit");
        let rows: Vec<wire::AuditEntry> = rows
            .into_iter()
            .filter(|r| r.target.as_deref() == Some(format!("container:{name}").as_str()))
            .collect();
        if rows.iter().any(|r| r.action == "container.exec") || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let start = rows
        .iter()
        .find(|r| r.action == "container.exec.start")
        .unwrap_or_else(|| panic!("no container.exec.start row: {rows:#?}"));
    assert_eq!(start.actor, "root");
    assert_eq!(after(start)["tty"], true, "{start:?}");
    assert_eq!(
        after(start)["command"],
        serde_json::json!(["sh"]),
        "{start:?}"
    );
    let end = rows
        .iter()
        .find(|r| r.action == "container.exec")
        .unwrap_or_else(|| panic!("no container.exec row: {rows:#?}"));
    assert_eq!(after(end)["client_gone"], true, "{end:?}");
    assert!(after(end)["seconds"].is_u64(), "{end:?}");
    // A viewer may look, not open a shell: refused before the upgrade.
    // (The container's team, `default`, is not a team record until someone makes it one.)
    let _: Result<serde_json::Value, _> = call(
        &c,
        hyper::Method::POST,
        "/api/v1/teams",
        Some(serde_json::json!({"name": "default"})),
    )
    .await;
    d.add_user("look", "viewer", &["default"]);
    let token = d.token_for("look");
    let auth = format!("Bearer {token}");
    let r = d.http(
        "GET",
        &format!("/api/v1/containers/{name}/exec"),
        &[
            ("authorization", &auth),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    remove(&c, &name).await;
}
