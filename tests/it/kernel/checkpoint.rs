//! Checkpoint and restore through CRIU (issue 18). Where `criu check` fails on the kernel (this
//! host: 6.18 with Debian's criu 3.17, "Unexpected rt vDSO area bounds"), `corral info`, the
//! API and the CLI say so in criu's words, and a refused checkpoint or restore changes nothing:
//! the container runs on, same process, its counter still counting; no container is made.
//!
//! Where `criu check` passes (the pure cgroup-v2 VM: Debian's 6.1 kernel), real containers are
//! checkpointed and restored: a counter that counts on from where it was (by name after its
//! container was removed, under a new name, exported and imported), a web server whose
//! published port answers again, and a container holding 200 MiB — with times and sizes
//! printed. Debian's criu is also shown to work on that kernel by itself.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use backend::client::ClientError;
use hyper::Method;
use tests::{
    Daemon,
    containers::{
        Reaper, add_team, call, checkpoint, checkpoint_works, create, exec, get, restore,
    },
    rootfs::Rootfs,
};

/// The counter the container runs: `/tmp/n` holds how far it got (written aside and renamed,
/// so a reader never sees it half-written).
const COUNTER: &str =
    "i=0; while :; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.05; done";

async fn counter(c: &backend::client::Client, name: &str) -> u64 {
    let r = exec(c, name, &["cat", "/tmp/n"]).await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    r.stdout.trim().parse().expect("a number")
}

/// The refusal of a checkpoint route: (status, code, message).
fn refusal<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            message,
            ..
        }) => (status.as_u16(), code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn without_a_working_criu_checkpoint_and_restore_refuse_with_its_reason_and_change_nothing() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let host: wire::HostInfo = call(&c, Method::GET, "/api/v1/host", None)
        .await
        .expect("host");
    let ck = host.checkpoint;
    println!("kernel {}: checkpoint {ck:?}", host.kernel);
    if ck.available {
        println!("criu works here: the refusal is not shown (the restore tests run instead)");
        return;
    }
    assert!(!ck.reason.is_empty(), "an unavailable checkpoint says why");
    if ck.version.is_some() {
        assert!(
            ck.reason.starts_with("criu check failed: "),
            "criu is installed, its check is the reason: {ck:?}"
        );
    }
    // `corral info` says it, in the same words.
    let info = d.corral(&["info"]);
    let line = info
        .lines()
        .find(|l| l.starts_with("Checkpoint:"))
        .unwrap_or_else(|| panic!("a Checkpoint line in corral info:\n{info}"));
    assert!(
        line.contains("unavailable") && line.contains(&ck.reason),
        "{line}"
    );

    let team = tests::unique("ckpt");
    add_team(&c, &team).await;
    let rootfs = Rootfs::new();
    let name = tests::unique("count");
    let other = tests::unique("copy");
    let before = create(
        &c,
        serde_json::json!({"name": name, "team": team, "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", COUNTER], "start": true}),
    )
    .await;
    assert_eq!(before.status, "running");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n0 = counter(&c, &name).await;

    // The API: 503 checkpoint_unavailable with criu's reason, for both routes.
    let expected = format!("checkpoint is unavailable on this host: {}", ck.reason);
    for body in [
        serde_json::json!({}),
        serde_json::json!({"leave_running": true}),
        serde_json::json!({"export": "/tmp/corral-ckpt-never.tar"}),
    ] {
        let r = call::<wire::Checkpoint>(
            &c,
            Method::POST,
            &format!("/api/v1/containers/{name}/checkpoint"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            refusal(r),
            (503, "checkpoint_unavailable".to_owned(), expected.clone()),
            "{body}"
        );
    }
    let r = call::<wire::Container>(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/restore"),
        Some(serde_json::json!({"name": other})),
    )
    .await;
    assert_eq!(
        refusal(r),
        (503, "checkpoint_unavailable".to_owned(), expected.clone())
    );

    // The CLI: one error line with the reason.
    let export = std::env::temp_dir().join(tests::unique("ckpt-export"));
    let export = export.with_extension("tar");
    for args in [
        vec!["checkpoint", name.as_str()],
        vec!["checkpoint", name.as_str(), "--leave-running"],
        vec![
            "checkpoint",
            name.as_str(),
            "--export",
            export.to_str().expect("utf-8"),
        ],
        vec!["restore", name.as_str(), "--name", other.as_str()],
        vec![
            "restore",
            name.as_str(),
            "--import",
            export.to_str().expect("utf-8"),
        ],
    ] {
        let out = d.cli(None, &args, "");
        assert!(!out.ok, "corral {args:?} refused");
        assert_eq!(out.stderr.trim(), format!("error: {expected}"), "{args:?}");
    }

    // Nothing changed: the same init runs on and counts, no export, no restored container, no
    // checkpoint in the state directory.
    let after = get(&c, &name).await;
    assert_eq!(after.status, "running");
    assert_eq!(after.pid, before.pid, "the same process");
    assert_eq!(after.started_at, before.started_at);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n1 = counter(&c, &name).await;
    assert!(n1 > n0, "the counter goes on: {n0} then {n1}");
    assert!(!export.exists(), "no export was written");
    let restored = call::<wire::Container>(
        &c,
        Method::GET,
        &format!("/api/v1/containers/{other}"),
        None,
    )
    .await;
    assert_eq!(refusal(restored).0, 404, "no restored container");
    let state = d.state.path().join("state");
    let left: Vec<_> = walk(&state)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("checkpoint"))
        .collect();
    assert!(left.is_empty(), "no checkpoint files: {left:?}");

    // Audited as refused attempts.
    let audit: Vec<wire::AuditEntry> = call(
        &c,
        Method::GET,
        "/api/v1/audit?action=container.checkpoint",
        None,
    )
    .await
    .expect("audit");
    let ours: Vec<_> = audit
        .iter()
        .filter(|e| e.target.as_deref() == Some(&format!("container:{name}")))
        .collect();
    assert!(ours.len() >= 5, "every attempt is a row: {ours:?}");
    assert!(ours.iter().all(|e| e.result == "failed"), "{ours:?}");

    // Rights and fields are checked before the host: a viewer is refused (403), a bad field
    // is a 400 naming it, a hidden container a 404 — as for the other container actions.
    let viewer = tests::unique("viewer");
    d.add_user(&viewer, "viewer", &[&team]);
    let token = d.token_for(&viewer);
    let path = format!("/api/v1/containers/{name}/checkpoint");
    let r = tests::call(&d, &token, "POST", &path, Some(serde_json::json!({})));
    assert_eq!(r.status, 403, "{}", r.body);
    let r = tests::call(
        &d,
        &token,
        "POST",
        &format!("/api/v1/containers/{name}/restore"),
        Some(serde_json::json!({})),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let outsider = tests::unique("outsider");
    d.add_user(&outsider, "operator", &[]);
    let token = d.token_for(&outsider);
    let r = tests::call(&d, &token, "POST", &path, Some(serde_json::json!({})));
    assert_eq!(r.status, 404, "{}", r.body);
    let operator = tests::unique("operator");
    d.add_user(&operator, "operator", &[&team]);
    let token = d.token_for(&operator);
    let r = tests::call(
        &d,
        &token,
        "POST",
        &path,
        Some(serde_json::json!({"export": "/tmp/x.tar"})),
    );
    assert_eq!(r.status, 403, "export is a host path: admins: {}", r.body);
    for (route, body, field) in [
        (
            "checkpoint",
            serde_json::json!({"export": "x.tar"}),
            "export",
        ),
        (
            "checkpoint",
            serde_json::json!({"export": "/srv/../etc/x"}),
            "export",
        ),
        (
            "checkpoint",
            serde_json::json!({"leave_running": 1}),
            "leave_running",
        ),
        ("restore", serde_json::json!({"name": "-bad"}), "name"),
        (
            "restore",
            serde_json::json!({"import": "rel.tar"}),
            "import",
        ),
        ("restore", serde_json::json!({"nope": true}), "nope"),
    ] {
        let r = tests::call(
            &d,
            &token,
            "POST",
            &format!("/api/v1/containers/{name}/{route}"),
            Some(body.clone()),
        );
        assert_eq!(r.status, 400, "{route} {body}: {}", r.body);
        assert_eq!(
            r.json()["field"]
                .as_str()
                .map(|f| f.split('.').next().unwrap_or(f)),
            Some(field),
            "{route} {body}: {}",
            r.body
        );
    }
    assert_eq!(
        get(&c, &name).await.pid,
        before.pid,
        "still the same process"
    );

    let _: serde_json::Value = call(
        &c,
        Method::DELETE,
        &format!("/api/v1/containers/{name}?force=true"),
        None,
    )
    .await
    .expect("remove");
}

/// Every path under `dir` (not following symlinks).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// The counter of the restore tests: also a line on stdout per step, so its output (a pipe to
/// the monitor, handed over anew by the restore) is seen to go on too.
const TALKING_COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; \
     echo tick $i; sleep 0.05; done";

/// The highest `tick N` in the container's log.
fn last_tick(d: &Daemon, name: &str) -> u64 {
    let out = d.cli(None, &["logs", name], "");
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

async fn remove(c: &backend::client::Client, name: &str) {
    let _: serde_json::Value = call(
        c,
        Method::DELETE,
        &format!("/api/v1/containers/{name}?force=true"),
        None,
    )
    .await
    .expect("remove");
}

/// Waits until the counter of `name` is past `n`: the restored process counts on.
async fn counts_past(c: &backend::client::Client, name: &str, n: u64) -> u64 {
    let t = Instant::now();
    loop {
        let now = counter(c, name).await;
        if now > n {
            return now;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{name} counts on past {n}: still {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where criu works: a counter checkpointed (it stops), its container removed, restored by
/// name — counting on from where it was, its output still reaching the log — and restored
/// again under a new name; then a checkpoint that leaves the container running, exported and
/// imported through the CLI under a third name.
#[tokio::test]
async fn a_counter_is_checkpointed_removed_and_restored_counting_on() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    if !checkpoint_works(&c).await {
        return;
    }
    let (d, c) = (&d, &c);
    let team = tests::unique("ckpt");
    add_team(c, &team).await;
    let rootfs = Rootfs::new();
    let name = tests::unique("count");
    let before = create(
        c,
        serde_json::json!({"name": name, "team": team, "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", TALKING_COUNTER], "start": true}),
    )
    .await;
    assert_eq!(before.status, "running");
    // The writable layer: a file written and one of the image's removed (a whiteout).
    let w = exec(c, &name, &["sh", "-c", "echo kept > /marker && rm /bin/vi"]).await;
    assert_eq!(w.exit_code, 0, "{w:?}");
    let n0 = counts_past(c, &name, 20).await;

    let t = Instant::now();
    let ck: wire::Checkpoint = checkpoint(c, &name, Some(serde_json::json!({}))).await;
    let ck_ms = t.elapsed().as_millis();
    assert_eq!(ck.status, "exited", "{ck:?}");
    assert!(ck.size_bytes > 0);
    let stopped = get(c, &name).await;
    assert_eq!(stopped.status, "exited");
    let tick0 = last_tick(d, &name);
    assert!(
        tick0 >= n0,
        "the log had {tick0} at the checkpoint (counter {n0})"
    );
    remove(c, &name).await;

    let t = Instant::now();
    let restored: wire::Container = restore(c, &name, Some(serde_json::json!({}))).await;
    let rs_ms = t.elapsed().as_millis();
    assert_eq!(restored.status, "running", "{restored:?}");
    assert_eq!(restored.team, team);
    let n1 = counter(c, &name).await;
    assert!(n1 >= n0, "restored where it was: {n0} then {n1}");
    let n2 = counts_past(c, &name, n1).await;
    let layer = exec(c, &name, &["sh", "-c", "cat /marker; ls /bin/vi"]).await;
    assert!(
        layer.stdout.starts_with("kept") && layer.exit_code != 0,
        "the writable layer came back (the file, and the removal): {layer:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tick1 = last_tick(d, &name);
    assert!(
        tick1 > tick0,
        "its output reaches the log again: {tick0} then {tick1}"
    );
    println!(
        "checkpoint of a counter: {ck_ms} ms answered ({} ms dump), {} KiB; restore {rs_ms} ms; \
         counted {n0} before, {n1} at restore, {n2} after",
        ck.took_ms,
        ck.size_bytes / 1024
    );

    // The same checkpoint again, under another name, beside it.
    let copy = tests::unique("copy");
    let c2: wire::Container = restore(c, &name, Some(serde_json::json!({"name": copy}))).await;
    assert_eq!(
        (c2.name.as_str(), c2.status.as_str()),
        (copy.as_str(), "running")
    );
    let m = counter(c, &copy).await;
    assert!(m >= n0, "the copy starts where the checkpoint was: {m}");
    counts_past(c, &copy, m).await;

    // CLI: a checkpoint that leaves it running, exported; imported under a third name.
    let export = std::env::temp_dir().join(format!("{}.tar", tests::unique("ckpt-export")));
    let out = d.cli(
        None,
        &[
            "checkpoint",
            &copy,
            "--leave-running",
            "--export",
            export.to_str().expect("utf-8"),
        ],
        "",
    );
    assert!(
        out.ok,
        "corral checkpoint --leave-running --export: {}",
        out.stderr
    );
    let still = get(c, &copy).await;
    assert_eq!(
        (still.status.as_str(), still.pid),
        ("running", c2.pid),
        "left running"
    );
    assert!(export.exists());
    let third = tests::unique("imported");
    let out = d.cli(
        None,
        &[
            "restore",
            &copy,
            "--import",
            export.to_str().expect("utf-8"),
            "--name",
            &third,
        ],
        "",
    );
    assert!(
        out.ok,
        "corral restore --import --name: {}{}",
        out.stderr,
        tests::containers::criu_log(&out.stderr)
    );
    let m3 = counter(c, &third).await;
    counts_past(c, &third, m3).await;
    let _ = std::fs::remove_file(&export);
    for n in [&name, &copy, &third] {
        remove(c, n).await;
    }

    // The stored checkpoints outlive their containers; `checkpoints rm` ends one.
    let ls = d.cli(None, &["checkpoints"], "");
    assert!(ls.ok, "{}", ls.stderr);
    for n in [&name, &copy] {
        assert!(
            ls.stdout.lines().any(|l| l.starts_with(n.as_str())),
            "{n} in:\n{}",
            ls.stdout
        );
    }
    let rm = d.cli(None, &["checkpoints", "rm", &name], "");
    assert!(rm.ok, "{}", rm.stderr);
    let again = call::<wire::Container>(
        c,
        Method::POST,
        &format!("/api/v1/containers/{name}/restore"),
        None,
    )
    .await;
    assert_eq!(refusal(again).0, 404, "its checkpoint is gone");
    let rm = d.cli(None, &["checkpoints", "rm", &copy], "");
    assert!(rm.ok, "{}", rm.stderr);
}

/// The workload binary: `$CORRAL_TESTLOAD` (the VM points it at its copy) or the one cargo built.
fn testload() -> PathBuf {
    std::env::var_os("CORRAL_TESTLOAD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_testload")))
}

/// Runs criu with `args`; its success, and the end of its log (`-o LOG`) when it failed.
fn criu(args: &[&str], log: &Path) -> Result<(), String> {
    let st = Command::new("criu")
        .args(args)
        .arg("-o")
        .arg(log)
        .arg("-v4")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("criu: {e}"))?;
    if st.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    Err(format!(
        "criu {args:?}: {st}\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    ))
}

/// `sh -c SCRIPT` in a session of its own (criu dumps a session leader's tree without
/// `--shell-job`), stdio on /dev/null; its pid, from the pid file the script writes first.
// The child goes back to the caller, which waits for it after the dump ends it.
#[allow(clippy::zombie_processes)]
fn session(script: &str, dir: &Path) -> (std::process::Child, i32) {
    let pidfile = dir.join("pid");
    let mut child = Command::new("setsid")
        .args([
            "sh",
            "-c",
            &format!("echo $$ > {}; {script}", pidfile.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("setsid sh");
    let t = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return (child, pid);
        }
        if t.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no pid file from {script}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_n(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn tree_bytes(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Kills the restored process (no longer our child: criu's `-d` left it to init) on drop.
struct Killed(i32);

impl Drop for Killed {
    fn drop(&mut self) {
        kill(self.0);
    }
}

/// Dumps `pid` into `dir/images` (it ends), restores it detached; (dump ms, restore ms, bytes).
fn dump_and_restore(
    child: &mut std::process::Child,
    pid: i32,
    dir: &Path,
) -> Result<(u128, u128, u64), String> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    let img = images.to_str().expect("utf-8");
    let t = Instant::now();
    // The logs beside the images, so the size is the images' alone.
    criu(
        &["dump", "-t", &pid.to_string(), "-D", img],
        &dir.join("dump.log"),
    )?;
    let dump_ms = t.elapsed().as_millis();
    let _ = child.wait();
    assert!(!alive(pid), "the dump ended the process");
    let bytes = tree_bytes(&images);
    let t = Instant::now();
    criu(&["restore", "-D", img, "-d"], &dir.join("restore.log"))?;
    Ok((dump_ms, t.elapsed().as_millis(), bytes))
}

/// Debian's criu on this kernel, without Corral: a counter dumped (it stops), restored (the same
/// pid, counting on from where it was), and a process holding 200 MiB — times and image sizes.
#[test]
fn criu_itself_dumps_and_restores_a_process_where_its_check_passes() {
    let check = Command::new("criu")
        .arg("check")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !check.is_ok_and(|s| s.success()) {
        println!("criu missing or its check fails here: nothing to dump");
        return;
    }
    let dir = tests::TempDir::new("criu-counter");
    let n = dir.path().join("n");
    let (mut child, pid) = session(
        &format!(
            "i=0; while :; do i=$((i+1)); echo $i > {n}.new; mv {n}.new {n}; sleep 0.05; done",
            n = n.display()
        ),
        dir.path(),
    );
    let _restored = Killed(pid);
    std::thread::sleep(Duration::from_millis(1500));
    let (dump_ms, restore_ms, bytes) =
        dump_and_restore(&mut child, pid, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let at_dump = read_n(&n);
    assert!(at_dump > 5, "it counted before the dump: {at_dump}");
    assert!(alive(pid), "restored with the same pid {pid}");
    std::thread::sleep(Duration::from_millis(600));
    let later = read_n(&n);
    assert!(
        later > at_dump,
        "the counter goes on from {at_dump} (a fresh start would be below it): {later}"
    );
    println!(
        "criu counter (sh): dump {dump_ms} ms, restore {restore_ms} ms, images {} KiB; \
         counted {at_dump} before, {later} after",
        bytes / 1024
    );
    kill(pid);

    let dir = tests::TempDir::new("criu-200m");
    let out = dir.path().join("out");
    let (mut child, pid) = session(
        &format!(
            "exec {} alloc 200 3600 > {}",
            testload().display(),
            out.display()
        ),
        dir.path(),
    );
    let _restored = Killed(pid);
    let t = Instant::now();
    while !std::fs::read_to_string(&out).is_ok_and(|s| s.contains("allocated")) {
        assert!(t.elapsed() < Duration::from_secs(60), "testload allocated");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss = tests::containers::rss(pid as u32);
    let (dump_ms, restore_ms, bytes) =
        dump_and_restore(&mut child, pid, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(alive(pid), "restored");
    let rss_after = tests::containers::rss(pid as u32);
    println!(
        "criu 200 MiB (testload alloc): RSS {} MiB, dump {dump_ms} ms, restore {restore_ms} ms, \
         images {} MiB; RSS after restore {} MiB",
        rss >> 20,
        bytes >> 20,
        rss_after >> 20
    );
    assert!(bytes >= 200 << 20, "the memory is in the images: {bytes}");
    kill(pid);
}

/// Where criu works: a web server with a published port, checkpointed and restored, answers on
/// the same host port again — its listening socket restored into the network namespace Corral
/// set up anew (address re-assigned, the port's forwarding made again).
#[tokio::test(flavor = "multi_thread")]
async fn a_published_port_answers_again_after_a_restore() {
    use std::net::Ipv4Addr;
    let (d, bridge, table) = tests::net::bridged_daemon(false, &[]);
    let _net = tests::net::NetGuard::new(&d, &bridge, &table);
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    if !checkpoint_works(&c).await {
        return;
    }
    let rootfs = super::network_container::web_rootfs("served before and after\n");
    let port = tests::free_port();
    let name = tests::unique("web");
    let ct = create(
        &c,
        serde_json::json!({"name": name, "rootfs": rootfs.path(),
            "command": ["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
            "ports": [format!("{port}:80")], "start": true}),
    )
    .await;
    assert_eq!(ct.status, "running");
    let get_page = |when: &'static str| async move {
        tokio::task::spawn_blocking(move || {
            super::network::http_get((Ipv4Addr::LOCALHOST, port).into())
        })
        .await
        .unwrap_or_else(|e| panic!("GET {when}: {e:?}"))
    };
    let page = get_page("before").await;
    assert!(page.contains("served before and after"), "{page}");
    let ip_before = get(&c, &name).await.network.and_then(|n| n.ip_address);

    let ck: wire::Checkpoint = checkpoint(&c, &name, None).await;
    assert_eq!(ck.status, "exited");
    let t = Instant::now();
    let back: wire::Container = restore(&c, &name, None).await;
    let restore_ms = t.elapsed().as_millis();
    assert_eq!(back.status, "running");
    let inside = tests::containers::exec(&c, &name, &["ip", "addr"]).await;
    println!(
        "after the restore, inside: {}{}",
        inside.stdout, inside.stderr
    );
    let page = get_page("after the restore").await;
    assert!(
        page.contains("served before and after"),
        "after the restore: {page}"
    );
    let ip_after = get(&c, &name).await.network.and_then(|n| n.ip_address);
    println!(
        "published port {port}: checkpoint {} ms ({} KiB), restore {restore_ms} ms; address \
         {ip_before:?} then {ip_after:?}",
        ck.took_ms,
        ck.size_bytes / 1024
    );
    remove(&c, &name).await;
}

/// Where criu works: a container holding 200 MiB (busybox awk's 200 MB string, then a child
/// `sleep`) is checkpointed and restored in place with its memory — times and sizes printed
/// for the closing note.
#[tokio::test]
async fn a_200_mib_container_is_checkpointed_and_restored_with_its_memory() {
    let d = Daemon::start();
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    if !checkpoint_works(&c).await {
        return;
    }
    let rootfs = Rootfs::new();
    let name = tests::unique("big");
    let script = "exec awk 'BEGIN { s = sprintf(\"%200000000s\", \"x\"); print \"allocated\"; \
                  fflush(); system(\"sleep 3600\") }'";
    let ct = create(
        &c,
        serde_json::json!({"name": name, "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", script], "start": true}),
    )
    .await;
    let t = Instant::now();
    while !d
        .cli(None, &["logs", &name], "")
        .stdout
        .contains("allocated")
    {
        assert!(t.elapsed() < Duration::from_secs(120), "awk allocated");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = ct.pid.expect("pid") as u32;
    let rss = tests::containers::rss(pid);
    assert!(rss >= 180 << 20, "the container holds 200 MB: RSS {rss}");
    let t = Instant::now();
    let ck: wire::Checkpoint = checkpoint(&c, &name, None).await;
    let ck_ms = t.elapsed().as_millis();
    assert!(
        ck.size_bytes >= 180 << 20,
        "the memory is in the checkpoint: {}",
        ck.size_bytes
    );
    let t = Instant::now();
    let back: wire::Container = restore(&c, &name, None).await;
    let rs_ms = t.elapsed().as_millis();
    assert_eq!(back.status, "running");
    let rss_after = tests::containers::rss(back.pid.expect("pid") as u32);
    println!(
        "checkpoint of a 200 MiB container: RSS {} MiB; checkpoint {ck_ms} ms answered ({} ms \
         dump), {} MiB; restore {rs_ms} ms; RSS after {} MiB",
        rss >> 20,
        ck.took_ms,
        ck.size_bytes >> 20,
        rss_after >> 20
    );
    assert!(
        rss_after >= 180 << 20,
        "restored with its memory: RSS {rss_after}"
    );
    remove(&c, &name).await;
}
