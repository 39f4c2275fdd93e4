//! The Docker Engine API (issue 16) running containers, driven by the real `docker` CLI: `run`
//! in the foreground (the attach/wait/start sequence; the exit code; `--rm`), `run -d` with
//! limits and the `corral.team` label (checked in the kernel's files and Corral's own API),
//! `run -i` with piped stdin, `run -it` and `exec -it` on a real terminal, `create` + `start
//! -a`, `logs [-f] [--tail]`, `exec` with its exit code, and `stats --no-stream` showing the
//! metered CPU of a container held to half a core.

use std::{path::Path, process::Command, time::Duration};

use hyper::Method;
use tests::{
    Daemon, TempDir,
    containers::{Reaper, add_team, call},
    pty::PtyCommand,
};

use tests::docker::{docker, docker_ok};

const T: Duration = Duration::from_secs(30);

/// `docker -H unix://SOCK ARGS` with `stdin` piped in.
fn docker_in(sock: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = tests::docker::command(sock)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run docker");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("docker output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `docker -H unix://SOCK ARGS` as a command (for a terminal).
fn docker_cmd(sock: &Path, args: &[&str]) -> Command {
    let mut c = tests::docker::command(sock);
    c.args(args);
    c
}

/// A daemon with the Docker socket and an image `TAG` (busybox sh, sleep, echo, cat).
async fn daemon_with_image(dir: &TempDir, tag: &str) -> (Daemon, std::path::PathBuf) {
    let sock = dir.path().join("docker.sock");
    let d = Daemon::start_with(&[
        "--docker-socket",
        sock.to_str().expect("utf-8 path"),
        "--sample-interval",
        "1",
    ]);
    let tar = dir.path().join("img.tar");
    tests::rootfs::docker_save(&tar, tag, &["sh"]);
    tests::containers::import(&d.unix_client(), &tar)
        .await
        .expect("import");
    (d, sock)
}

async fn container(d: &Daemon, name: &str) -> Option<wire::Container> {
    call(
        &d.unix_client(),
        Method::GET,
        &format!("/api/v1/containers/{name}"),
        None,
    )
    .await
    .ok()
}

#[tokio::test]
async fn docker_run_in_the_foreground_detached_with_stdin_and_from_create_start() {
    let dir = TempDir::new("dkr");
    let tag = format!("{}:1", tests::unique("dkrimg"));
    let (d, sock) = daemon_with_image(&dir, &tag).await;
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();

    // Foreground: output, then the exit code; --rm leaves nothing.
    let fg = tests::unique("dkfg");
    let (code, out, err) = docker(
        &sock,
        &[
            "run",
            "--rm",
            "--name",
            &fg,
            &tag,
            "sh",
            "-c",
            "echo out-1; echo err-1 >&2; exit 7",
        ],
    );
    assert_eq!(code, 7, "the process's exit code: {err}");
    assert!(out.contains("out-1"), "{out}");
    // Corral's log is one stream: stderr's line arrives on stdout.
    assert!(
        out.contains("err-1") || err.contains("err-1"),
        "{out} {err}"
    );
    let gone = std::time::Instant::now() + T;
    while container(&d, &fg).await.is_some() {
        assert!(std::time::Instant::now() < gone, "--rm left {fg}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A process that exits at once still has its output shown.
    let (code, out, err) = docker(&sock, &["run", "--rm", &tag, "echo", "quick"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "quick");

    // Detached, with limits and the team label: in the kernel and in Corral's API.
    let team = tests::unique("dkteam");
    add_team(&c, &team).await;
    let bg = tests::unique("dkbg");
    let label = format!("corral.team={team}");
    let (code, out, err) = docker(
        &sock,
        &[
            "run",
            "-d",
            "--name",
            &bg,
            "--label",
            &label,
            "--cpus",
            "0.5",
            "--memory",
            "64m",
            "--pids-limit",
            "20",
            "--cpuset-cpus",
            "0",
            "-e",
            "GREETING=hello",
            &tag,
            "sh",
            "-c",
            "echo $GREETING; i=0; while :; do i=$((i+1)); done",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = out.trim();
    assert_eq!(id.len(), 64, "docker run -d prints the id: {out}");
    let ct = container(&d, &bg).await.expect("created through docker");
    assert_eq!(ct.team, team, "the corral.team label places it");
    assert_eq!(ct.status, "running");
    assert!(id.starts_with(&ct.id), "{id} {}", ct.id);
    let k: wire::Limits = call(
        &c,
        Method::GET,
        &format!("/api/v1/containers/{bg}/limits"),
        None,
    )
    .await
    .expect("kernel limits");
    assert_eq!(k.cpus, Some(0.5), "{k:?}");
    assert_eq!(k.memory_max, Some(64 << 20), "{k:?}");
    assert_eq!(k.pids_max, Some(20), "{k:?}");
    assert_eq!(k.cpuset_cpus.as_deref(), Some("0"), "{k:?}");
    // By the short id too, as `docker ps` shows it.
    let (code, out, err) = docker(&sock, &["inspect", "--format", "{{.Name}}", &id[..12]]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("/{bg}"));

    // stats --no-stream: the metered CPU of a busy loop held to half a core.
    let deadline = std::time::Instant::now() + T;
    let seen = loop {
        let (code, out, err) = docker(
            &sock,
            &[
                "stats",
                "--no-stream",
                "--format",
                "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
                &bg,
            ],
        );
        assert_eq!(code, 0, "{err}");
        let cpu: f64 = out
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.trim_end_matches('%').parse().ok())
            .unwrap_or(0.0);
        if (35.0..=60.0).contains(&cpu) {
            assert!(out.starts_with(&bg), "{out}");
            assert!(out.contains("/ 64MiB"), "the memory limit: {out}");
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "last: {out}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("docker stats: {}", seen.trim());

    // logs --tail, exec with its exit code, exec -i with piped stdin.
    let (code, out, err) = docker(&sock, &["logs", "--tail", "1", &bg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "hello");
    let (code, out, err) = docker(&sock, &["exec", &bg, "sh", "-c", "echo $((6*7)); exit 3"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(out.trim(), "42");
    let (code, out, err) = docker_in(&sock, &["exec", "-i", &bg, "cat"], "piped-in\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "piped-in");
    docker_ok(&sock, &["rm", "-f", &bg]);

    // run -i: stdin reaches the process; its end ends cat.
    let (code, out, err) = docker_in(&sock, &["run", "-i", "--rm", &tag, "cat"], "hi there\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "hi there");

    // create, then start -a; logs -f of a container that ends returns when it does.
    let cr = tests::unique("dkcr");
    let (code, _, err) = docker(
        &sock,
        &[
            "create",
            "--name",
            &cr,
            &tag,
            "sh",
            "-c",
            "echo one; sleep 1; echo two",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(container(&d, &cr).await.expect("created").status, "created");
    let (code, out, err) = docker(&sock, &["start", "-a", &cr]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["one", "two"]);
    docker_ok(&sock, &["start", &cr]);
    let (code, out, err) = docker(&sock, &["logs", "-f", &cr]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["one", "two", "one", "two"],
        "the log holds both runs"
    );
    docker_ok(&sock, &["rm", &cr]);

    // A missing image: Docker's words, then the pull it tries, refused at once with the
    // registry's reason (a closed loopback port: no public registry is ever asked).
    let t = std::time::Instant::now();
    let (code, _, err) = docker(
        &sock,
        &["run", "--rm", "127.0.0.1:1/no-such-image-here", "true"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("Unable to find image"), "{err}");
    assert!(
        err.contains("cannot reach 127.0.0.1:1") && err.contains("refused"),
        "{err}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );

    // Created through docker, audited as root's.
    let rows: Vec<wire::AuditEntry> = call(&c, Method::GET, "/api/v1/audit?limit=500", None)
        .await
        .expect("audit");
    for (action, name) in [
        ("container.create", &bg),
        ("container.exec", &bg),
        ("container.create", &cr),
    ] {
        assert!(
            rows.iter().any(|r| r.action == action
                && r.target.as_deref() == Some(format!("container:{name}").as_str())
                && r.actor == "root"),
            "no {action} row by root for {name}"
        );
    }
}

#[tokio::test]
async fn docker_run_it_and_exec_it_are_terminals() {
    let dir = TempDir::new("dkt");
    let tag = format!("{}:1", tests::unique("dktimg"));
    let (d, sock) = daemon_with_image(&dir, &tag).await;
    let _reaper = Reaper::new(&d);

    // run -it: a shell on a terminal of the window's size; its exit code is the CLI's.
    let name = tests::unique("dkit");
    let mut t = PtyCommand::spawn(
        docker_cmd(&sock, &["run", "-it", "--rm", "--name", &name, &tag, "sh"]),
        30,
        100,
    );
    t.type_str("echo in-$((6*7)); [ -t 0 ] && echo is-a-tty\n");
    let at = t.wait_for(0, "in-42", T);
    let at = t.wait_for(at, "is-a-tty", T);
    t.type_str("exit 5\n");
    let _ = at;
    assert_eq!(t.wait(T), 5, "{}", t.screen());

    // exec -it into a running container.
    let bg = tests::unique("dkitbg");
    let (code, _, err) = docker(&sock, &["run", "-d", "--name", &bg, &tag, "sleep", "1000"]);
    assert_eq!(code, 0, "{err}");
    let mut t = PtyCommand::spawn(docker_cmd(&sock, &["exec", "-it", &bg, "sh"]), 24, 80);
    t.type_str("[ -t 0 ] && echo exec-tty-$((2*3))\n");
    t.wait_for(0, "exec-tty-6", T);
    t.type_str("exit 4\n");
    assert_eq!(t.wait(T), 4, "{}", t.screen());
    docker_ok(&sock, &["rm", "-f", &bg]);
}

/// A `--rm` run that is over and removed before the attach first looks (a fault-injection
/// build delays that look by 2 s) still shows its output: the log exists from create on and
/// the attach holds it open. Without that, `docker run --rm IMAGE echo quick` printed nothing
/// when the run beat the attach (seen under TCG in the VM).
#[tokio::test]
async fn a_run_over_and_removed_before_the_attach_looks_still_shows_its_output() {
    let dir = TempDir::new("dkq");
    let tag = format!("{}:1", tests::unique("dkqimg"));
    let sock = dir.path().join("docker.sock");
    let d = Daemon::start_with_env(
        &["--docker-socket", sock.to_str().expect("utf-8 path")],
        &[("CORRAL_FAULT_ATTACH_LOOK_DELAY_MS", "2000")],
    );
    let _reaper = Reaper::new(&d);
    let tar = dir.path().join("img.tar");
    tests::rootfs::docker_save(&tar, &tag, &["sh"]);
    tests::containers::import(&d.unix_client(), &tar)
        .await
        .expect("import");
    let name = tests::unique("dkq");
    let (code, out, err) = docker(
        &sock,
        &["run", "--rm", "--name", &name, &tag, "echo", "quick"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "quick", "{err}");
    assert!(container(&d, &name).await.is_none(), "--rm removed it");
}
