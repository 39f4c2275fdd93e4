//! The Docker Engine API (issue 16) for images, disk usage, events and processes, driven by
//! the real `docker` CLI: `docker load` of a `docker save` archive lands in Corral's store
//! (audited as root), `docker images` lists it, `docker system df` shows the bytes its layer
//! and a container's writable layer take on disk, `docker rmi` is refused while a container
//! uses the image and then removes it (its layer directory goes); `docker events --since
//! --until` prints a container's create/start/die/stop/destroy and ends at `--until`, a live
//! `docker events` hears a removal and ends with the daemon; `docker top` and `corral top`
//! list the container's sleep by its host PID.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use hyper::Method;
use tests::{
    Daemon, TempDir,
    containers::{Reaper, call, create, get, remove, sleeper},
    docker::{command, docker, docker_ok, human_size},
    rootfs::Rootfs,
};

/// The bytes of the files under `dir` (a hard link once), as `docker system df` counts them.
fn files_size(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            } else if m.nlink() < 2 || seen.insert(m.ino()) {
                total += m.len();
            }
        }
    }
    total
}

fn audited(rows: &[wire::AuditEntry], action: &str) -> bool {
    rows.iter()
        .any(|r| r.action == action && r.actor == "root" && r.result == "ok")
}

#[tokio::test]
async fn the_docker_cli_loads_sizes_and_removes_images() {
    let dir = TempDir::new("dk");
    let sock = dir.path().join("docker.sock");
    let d = Daemon::start_with(&["--docker-socket", sock.to_str().expect("utf-8 path")]);
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let tag = format!("{}:1", tests::unique("dkload"));

    // docker load: the archive's name, printed as dockerd prints it; in Corral's store.
    let tar = dir.path().join("img.tar");
    tests::rootfs::docker_save(&tar, &tag, &["sleep", "1000"]);
    let tar_s = tar.to_str().expect("utf-8 path");
    let (code, out, err) = docker(&sock, &["load", "-i", tar_s]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("Loaded image: {tag}"));
    let (code, out, err) = docker(&sock, &["load", "-q", "-i", tar_s]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("Loaded image: {tag}").as_str()),
        "{err}"
    );
    let images: Vec<wire::Image> = call(&c, Method::GET, "/api/v1/images", None)
        .await
        .expect("images");
    let image = images
        .iter()
        .find(|i| i.tags.contains(&tag))
        .expect("the loaded image is in Corral's store")
        .clone();
    let (code, out, err) = docker(&sock, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == tag), "{out}");
    // A file that is no image is refused with the store's reason.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tarball at all").expect("junk");
    let (code, _, err) = docker(&sock, &["load", "-i", junk.to_str().expect("utf-8")]);
    assert_ne!(code, 0);
    assert!(err.contains("Error response from daemon"), "{err}");

    // docker system df: the layer's bytes on disk (busybox and four 7-byte symlinks).
    let layers_dir = d.state.path().join("state/images/layers");
    let layer_bytes = std::fs::metadata(tests::rootfs::busybox())
        .expect("busybox")
        .len()
        + 4 * "busybox".len() as u64;
    assert_eq!(files_size(&layers_dir), layer_bytes, "one layer, as built");
    let df = |what: &str| {
        let (code, out, err) = docker(
            &sock,
            &[
                "system",
                "df",
                "--format",
                "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}",
            ],
        );
        assert_eq!(code, 0, "{err}");
        out.lines()
            .find(|l| l.starts_with(&format!("{what}|")))
            .unwrap_or_else(|| panic!("no {what} in {out}"))
            .to_owned()
    };
    assert_eq!(
        df("Images"),
        format!("Images|1|0|{}", human_size(layer_bytes))
    );

    // A container of the image, with 101,000 bytes written into its writable layer.
    let name = tests::unique("dkuse");
    let ct = create(
        &c,
        serde_json::json!({"name": name, "image": tag, "command": ["sleep", "1000"], "start": true}),
    )
    .await;
    let r = tests::containers::exec(
        &c,
        &name,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 1000 ]; do echo 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789 >> /big; i=$((i+1)); done",
        ],
    )
    .await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    let upper = d
        .state
        .path()
        .join("state/containers")
        .join(&ct.id)
        .join("upper");
    let rw = files_size(&upper);
    assert!(rw >= 101_000, "the writable layer holds the file: {rw}");
    assert_eq!(
        df("Images"),
        format!("Images|1|1|{}", human_size(layer_bytes))
    );
    assert_eq!(
        df("Containers"),
        format!("Containers|1|1|{}", human_size(rw))
    );
    assert_eq!(df("Local Volumes"), "Local Volumes|0|0|0B");

    // docker rmi while a container uses it: Docker's conflict, nothing removed.
    let (code, _, err) = docker(&sock, &["rmi", "-f", &tag]);
    assert_ne!(code, 0);
    assert!(
        err.contains("conflict: unable to delete") && err.contains(&name),
        "{err}"
    );
    assert!(layers_dir.read_dir().expect("layers").next().is_some());

    // Without the container: untagged and deleted, its layer directory gone.
    remove(&c, &name).await;
    let (code, out, err) = docker(&sock, &["rmi", &tag]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("Untagged: {tag}\nDeleted: {}", image.id)
    );
    assert_eq!(
        layers_dir.read_dir().expect("layers").count(),
        0,
        "the layer went with its last image"
    );
    let (_, out, _) = docker(&sock, &["images", "-q"]);
    assert_eq!(out.trim(), "", "no image is left");
    let (code, _, err) = docker(&sock, &["rmi", &tag]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("No such image: {tag}")), "{err}");
    assert_eq!(df("Images"), "Images|0|0|0B");

    // Both audited as root's, like Corral's own import and removal.
    let rows: Vec<wire::AuditEntry> = call(&c, Method::GET, "/api/v1/audit?limit=200", None)
        .await
        .expect("audit");
    assert!(
        audited(&rows, "image.import"),
        "no image.import row by root"
    );
    assert!(
        audited(&rows, "image.remove"),
        "no image.remove row by root"
    );
    assert!(
        rows.iter()
            .any(|r| r.action == "image.remove" && r.result != "ok"),
        "the refused removal is audited too"
    );
}

#[tokio::test]
async fn the_docker_cli_follows_events_and_lists_processes() {
    let dir = TempDir::new("dk");
    let sock = dir.path().join("docker.sock");
    let mut d = Daemon::start_with(&["--docker-socket", sock.to_str().expect("utf-8 path")]);
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let rootfs = Rootfs::new();
    let since = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        - 1)
    .to_string();
    let name = sleeper(&d, &rootfs, "dkev").await;
    let pid = get(&c, &name)
        .await
        .pid
        .expect("a running container has a PID");

    // docker top: ps -ef's columns, the sleep by its host PID (as the kernel lists it).
    let (code, out, err) = docker(&sock, &["top", &name]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let head: Vec<&str> = lines.next().expect("titles").split_whitespace().collect();
    assert_eq!(
        head,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let sleep = rows
        .iter()
        .find(|r| r.ends_with(&["sleep", "1000"]))
        .unwrap_or_else(|| panic!("no sleep in {out}"));
    assert_eq!(sleep[1], pid.to_string(), "{out}");
    assert_eq!(sleep[0], "root");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    assert!(
        stat.contains("(sleep)"),
        "PID {pid} is the sleep on the host: {stat}"
    );
    let (code, _, err) = docker(&sock, &["top", &name, "aux"]);
    assert_ne!(code, 0);
    assert!(err.contains("ps_args"), "{err}");

    // corral top: the same reading over Corral's API.
    let out = d.corral(&["top", &name]);
    assert!(out.starts_with("UID "), "{out}");
    assert!(
        out.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&pid.to_string().as_str()) && l.ends_with("sleep 1000")
        }),
        "{out}"
    );
    let procs: Vec<wire::ContainerProcess> =
        serde_json::from_str(&d.corral(&["top", &name, "--json"])).expect("top --json");
    assert!(
        procs
            .iter()
            .any(|p| p.pid == pid && p.command == "sleep 1000"),
        "{procs:?}"
    );

    // Stopped: top is Docker's 409 and Corral's conflict.
    docker_ok(&sock, &["stop", "-t", "1", &name]);
    let (code, _, err) = docker(&sock, &["top", &name]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("Container {name} is not running")),
        "{err}"
    );
    let out = d.cli(None, &["top", &name], "");
    assert!(
        !out.ok && out.stderr.contains("not running"),
        "{}",
        out.stderr
    );

    // docker events --since … --until …: the lifecycle so far, then the stream ends.
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 2)
    .to_string();
    let started = Instant::now();
    let (code, out, err) = docker(
        &sock,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            &format!("container={name}"),
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
        ],
    );
    let took = started.elapsed();
    assert_eq!(code, 0, "{err}");
    let actions: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default())
        .collect();
    assert_eq!(actions, ["create", "start", "die", "stop"], "{out}");
    assert!(out.lines().all(|l| l.starts_with("container ")), "{out}");
    assert!(
        out.lines()
            .any(|l| l == format!("container die {name} 137")),
        "sleep as PID 1 ends by KILL: {out}"
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(15),
        "--until ends the stream at its time: {took:?}"
    );
    let (_, out, _) = docker(
        &sock,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "event=start",
            "--filter",
            &format!("container={name}"),
            "--format",
            "{{.Action}}",
        ],
    );
    assert_eq!(out.trim(), "start");

    // A live stream hears the removal (by id, image and name) and ends with the daemon.
    let mut live = command(&sock)
        .args([
            "events",
            "--filter",
            "type=container",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.ID}}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker events");
    let stdout = live.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The stream is open once the CLI holds its answer: give it a moment.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let id = get(&c, &name).await.id;
    docker_ok(&sock, &["rm", &name]);
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("docker events printed the removal");
    assert!(line.starts_with(&format!("destroy {name} {id}")), "{line}");
    let stopped = Instant::now();
    assert!(d.stop().success(), "the daemon stops cleanly");
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "an open docker events does not hold the shutdown: {:?}",
        stopped.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = live.try_wait().expect("wait docker events") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = live.kill();
            break live.wait().expect("reap docker events");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        Instant::now() <= deadline,
        "docker events ended with the daemon ({status})"
    );
    let _ = reader.join();
}
