//! The Docker Engine API (issue 16, first part) driven by the real `docker` CLI: `version`,
//! `info` (the cgroup version as it is), `ps` with filters, `inspect` (limits as the kernel
//! holds them), `images`, `image inspect`; an endpoint not served yet answers Docker's error
//! shape naming it; the socket is 0600 and a non-root peer is refused. `update` (checked in
//! the kernel's limits), `pause`/`unpause`, `stop`/`start`/`restart`/`kill`/`wait`, `rm -f`,
//! each audited as root's.

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    process::Command,
};

use tests::{
    Daemon, TempDir,
    containers::{Reaper, call, create, remove, sleeper},
    docker::{docker, docker_ok},
    rootfs::Rootfs,
};

#[tokio::test]
async fn the_docker_cli_reads_the_host_its_containers_and_images() {
    let dir = TempDir::new("dk");
    let sock = dir.path().join("docker.sock");
    let d = Daemon::start_with(&["--docker-socket", sock.to_str().expect("utf-8 path")]);
    let _reaper = Reaper::new(&d);
    let mode = std::fs::metadata(&sock)
        .expect("docker socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the docker socket is root's only");

    // version: the client negotiated our API version.
    let (code, out, err) = docker(
        &sock,
        &[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.Os}}",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "1.43 linux");

    // info: the cgroup version as the host has it.
    let (code, out, err) = docker(
        &sock,
        &[
            "info",
            "--format",
            "{{.CgroupVersion}} {{.CgroupDriver}} {{.OSType}}",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v2 = super::team_pool::in_vm();
    let want = if v2 {
        "2 cgroupfs linux"
    } else {
        "1 cgroupfs linux"
    };
    assert_eq!(out.trim(), want);

    // ps, with a running and an exited container; filters; -q.
    let rootfs = Rootfs::new();
    let running = sleeper(&d, &rootfs, "dkr").await;
    let c = d.unix_client();
    let exited = tests::unique("dkx");
    create(
        &c,
        serde_json::json!({"name": exited, "rootfs": rootfs.path(), "command": ["sh", "-c", "exit 3"],
            "start": true, "labels": {"tier": "web"}, "limits": {"cpus": 0.5, "memory_max": 67108864}}),
    )
    .await;
    tests::containers::wait_exited(&c, &exited, std::time::Duration::from_secs(20)).await;
    let (code, out, err) = docker(&sock, &["ps", "--format", "{{.Names}}|{{.Status}}"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{running}|Up "))),
        "{out}"
    );
    assert!(
        !out.contains(&exited),
        "ps without -a lists running ones: {out}"
    );
    let (_, out, _) = docker(&sock, &["ps", "-a", "--format", "{{.Names}}|{{.Status}}"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{exited}|Exited (3) "))),
        "{out}"
    );
    let (_, out, _) = docker(
        &sock,
        &[
            "ps",
            "-a",
            "--filter",
            "label=tier=web",
            "--format",
            "{{.Names}}",
        ],
    );
    assert_eq!(out.trim(), exited);
    let (_, out, _) = docker(
        &sock,
        &["ps", "-a", "--filter", &format!("name={running}"), "-q"],
    );
    assert_eq!(out.trim().len(), 12, "ps -q prints 12-digit ids: {out}");
    let (code, _, err) = docker(&sock, &["ps", "--filter", "ancestor=busybox"]);
    assert_ne!(code, 0);
    assert!(err.contains("name, status, label and id"), "{err}");

    // inspect: the state and the limits.
    let (code, out, err) = docker(
        &sock,
        &[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}} {{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.Name}}",
            &exited,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("exited 3 500000000 67108864 /{exited}"));
    let (code, _, err) = docker(&sock, &["inspect", "no-such-thing"]);
    assert_ne!(code, 0);
    assert!(err.contains("no-such-thing"), "{err}");

    // images: an imported image by its tag.
    let tar = dir.path().join("img.tar");
    tests::rootfs::docker_save(&tar, "dkimg:1", &["sh"]);
    tests::containers::import(&c, &tar).await.expect("import");
    let (code, out, err) = docker(&sock, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == "dkimg:1"), "{out}");
    let (code, out, err) = docker(
        &sock,
        &["image", "inspect", "--format", "{{.Os}}", "dkimg:1"],
    );
    assert_eq!((code, out.trim()), (0, "linux"), "{err}");

    // Not served yet: Docker's error shape, naming it.
    let (code, _, err) = docker(&sock, &["network", "ls"]);
    assert_ne!(code, 0);
    assert!(err.contains("not supported by Corral"), "{err}");

    // A non-root peer is refused (even if the file mode let it in).
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .arg("ps")
        .env("DOCKER_CONFIG", "/tmp")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("docker as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody listed containers");
    assert!(
        err.contains("root only") || err.contains("permission denied"),
        "{err}"
    );

    remove(&c, &running).await;
    remove(&c, &exited).await;
}

#[tokio::test]
async fn the_docker_cli_updates_pauses_stops_starts_kills_waits_and_removes() {
    let dir = TempDir::new("dk");
    let sock = dir.path().join("docker.sock");
    let d = Daemon::start_with(&["--docker-socket", sock.to_str().expect("utf-8 path")]);
    let _reaper = Reaper::new(&d);
    let rootfs = Rootfs::new();
    let name = sleeper(&d, &rootfs, "dkl").await;
    let c = d.unix_client();
    let status = |n: String| {
        let c = c.clone();
        async move { tests::containers::get(&c, &n).await.status }
    };

    // docker update lands in the kernel's files.
    let (code, out, err) = docker(
        &sock,
        &[
            "update",
            "--cpus",
            "0.5",
            "--memory",
            "64m",
            "--memory-swap",
            "64m",
            "--pids-limit",
            "50",
            &name,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), name, "docker update prints the name");
    let k: wire::Limits = call(
        &c,
        hyper::Method::GET,
        &format!("/api/v1/containers/{name}/limits"),
        None,
    )
    .await
    .expect("kernel limits");
    assert_eq!(k.cpus, Some(0.5), "{k:?}");
    assert_eq!(k.memory_max, Some(64 << 20), "{k:?}");
    assert_eq!(k.pids_max, Some(50), "{k:?}");
    let (code, _, err) = docker(
        &sock,
        &["update", "--cpus", "0", "--kernel-memory", "8m", &name],
    );
    assert_ne!(code, 0, "an unsupported knob is refused");
    assert!(
        err.contains("KernelMemory") || err.contains("kernel"),
        "{err}"
    );

    // pause freezes, unpause thaws.
    docker_ok(&sock, &["pause", &name]);
    assert_eq!(status(name.clone()).await, "paused");
    docker_ok(&sock, &["unpause", &name]);
    assert_eq!(status(name.clone()).await, "running");

    // stop, start (a second start is Docker's "not modified", no error), restart, kill, wait.
    docker_ok(&sock, &["stop", "-t", "1", &name]);
    assert_eq!(status(name.clone()).await, "exited");
    docker_ok(&sock, &["start", &name]);
    docker_ok(&sock, &["start", &name]);
    assert_eq!(status(name.clone()).await, "running");
    docker_ok(&sock, &["restart", "-t", "1", &name]);
    assert_eq!(status(name.clone()).await, "running");
    // (`sleep` as PID 1 ignores SIGTERM, as under Docker: KILL ends it.)
    docker_ok(&sock, &["kill", "--signal", "SIGKILL", &name]);
    let (code, out, err) = docker(&sock, &["wait", &name]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "137", "KILL ends sleep with 128 + 9");
    let (code, _, err) = docker(&sock, &["kill", &name]);
    assert_ne!(code, 0);
    assert!(err.contains("is not running"), "{err}");

    // Every change is in Corral's audit log, as root's.
    let rows: Vec<wire::AuditEntry> = call(&c, hyper::Method::GET, "/api/v1/audit?limit=200", None)
        .await
        .expect("audit");
    let target = format!("container:{name}");
    for action in [
        "container.update",
        "container.freeze",
        "container.thaw",
        "container.stop",
        "container.start",
        "container.restart",
        "container.kill",
    ] {
        assert!(
            rows.iter().any(|r| r.action == action
                && r.target.as_deref() == Some(target.as_str())
                && r.actor == "root"
                && r.result == "ok"),
            "no {action} row by root for {name}"
        );
    }

    // rm -f removes a running container.
    let other = sleeper(&d, &rootfs, "dkm").await;
    docker_ok(&sock, &["rm", "-f", &other]);
    let (code, _, err) = docker(&sock, &["inspect", &other]);
    assert_ne!(code, 0, "{err}");
    docker_ok(&sock, &["rm", &name]);
}
