//! Image import on the real kernel: a `docker save` tarball and an OCI layout built here from
//! busybox (gzip, zstd and plain layers, whiteouts, an opaque directory), run as containers
//! through overlayfs; digests verified; path traversal refused; image removal.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{fs, io::Write, path::Path, time::Duration};

use backend::client::{Client, ClientError};
use hyper::Method;
use tests::{
    Daemon, TempDir,
    containers::{Reaper, call, create, logs, remove, wait_exited},
    rootfs::{add_busybox, add_file, header, sha},
};

/// Layer 1: busybox, a few applets, files the next layer deletes.
fn layer1() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin", "etc", "dir", "dir/keep", "tmp"] {
        b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), d, &[][..])
            .unwrap();
    }
    add_busybox(&mut b, &["sh", "cat", "ls", "echo", "test", "["]);
    for (p, data) in [
        ("etc/remove-me", &b"old"[..]),
        ("dir/keep/a", b"a"),
        ("etc/stay", b"stay"),
    ] {
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, data.len() as u64),
            p,
            data,
        )
        .unwrap();
    }
    b.into_inner().unwrap()
}

/// Layer 2: a whiteout, an opaque directory with new content, a new file.
fn layer2() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in [
        ("etc/.wh.remove-me", &b""[..]),
        ("dir/.wh..wh..opq", b""),
        ("dir/new", b"new"),
        ("etc/layer2", b"two"),
    ] {
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, data.len() as u64),
            p,
            data,
        )
        .unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

fn config(diff_ids: &[String], variant: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "comment": variant,
        "config": {"Env": ["PATH=/bin", "GREETING=hello from the image"],
                   "Cmd": ["sh", "-c", "echo $GREETING; cat /etc/stay /etc/layer2 /dir/new; test -e /etc/remove-me && echo WHITEOUT-BROKEN; test -e /dir/keep && echo OPAQUE-BROKEN; exit 0"],
                   "WorkingDir": "/tmp"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// A docker-save tarball: manifest.json, the config as `<hex>.json`, layers as blobs (one
/// gzip, one zstd). `corrupt` flips the recorded diff_id of the second layer.
fn docker_save(out: &Path, tag: &str, corrupt: bool) {
    let (l1, l2) = (layer1(), layer2());
    let mut diff_ids = vec![
        format!("sha256:{}", sha(&l1)),
        format!("sha256:{}", sha(&l2)),
    ];
    if corrupt {
        diff_ids[1] = format!("sha256:{}", sha(b"something else"));
    }
    let (b1, b2) = (gzip(&l1), zstd(&l2));
    let cfg = config(&diff_ids, "docker-save");
    let manifest = serde_json::json!([{
        "Config": format!("{}.json", sha(&cfg)),
        "RepoTags": [tag],
        "Layers": [format!("blobs/sha256/{}", sha(&b1)), format!("blobs/sha256/{}", sha(&b2))],
    }]);
    let mut b = tar::Builder::new(Vec::new());
    add_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    add_file(&mut b, &format!("{}.json", sha(&cfg)), &cfg);
    add_file(&mut b, &format!("blobs/sha256/{}", sha(&b1)), &b1);
    add_file(&mut b, &format!("blobs/sha256/{}", sha(&b2)), &b2);
    fs::write(out, b.into_inner().unwrap()).unwrap();
}

/// An OCI image layout directory (plain and gzip layers).
fn oci_layout(dir: &Path, tag: &str) {
    let (l1, l2) = (layer1(), layer2());
    let diff_ids = vec![
        format!("sha256:{}", sha(&l1)),
        format!("sha256:{}", sha(&l2)),
    ];
    let (b1, b2) = (l1.clone(), gzip(&l2));
    let cfg = config(&diff_ids, "oci");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha(&cfg)), "size": cfg.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{}", sha(&b1)), "size": b1.len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", sha(&b2)), "size": b2.len()},
        ],
    }))
    .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{}", sha(&manifest)), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    });
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    for b in [&b1, &b2, &cfg, &manifest] {
        fs::write(blobs.join(sha(b)), b).unwrap();
    }
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

async fn run_image(c: &Client, image: &str) -> (i32, String) {
    let name = tests::unique("img");
    create(
        c,
        serde_json::json!({"name": name, "image": image, "start": true}),
    )
    .await;
    let ct = wait_exited(c, &name, Duration::from_secs(20)).await;
    let out = logs(c, &name).await;
    remove(c, &name).await;
    (ct.exit_code.unwrap(), out)
}

#[tokio::test]
async fn docker_save_and_oci_layout_import_and_run() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let work = TempDir::new("corral-img");
    let tarball = work.path().join("busy.tar");
    docker_save(&tarball, "busy:save", false);
    let img: wire::Image = tests::containers::import(&c, &tarball).await.unwrap();
    assert_eq!(img.tags, vec!["busy:save".to_owned()]);
    assert_eq!(img.layers.len(), 2);
    let (code, out) = run_image(&c, "busy:save").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out, "hello from the image\nstaytwonew",
        "image config, layers, whiteout and opaque dir:\n{out}"
    );

    let oci = work.path().join("oci");
    oci_layout(&oci, "busy:oci");
    let img2: wire::Image = tests::containers::import(&c, &oci).await.unwrap();
    assert_eq!(img2.tags, vec!["busy:oci".to_owned()]);
    assert_eq!(
        img2.layers, img.layers,
        "same layers, stored once (content-addressed)"
    );
    let (code, out) = run_image(&c, "busy:oci").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("hello from the image"), "{out}");

    let list: Vec<wire::Image> = call(&c, Method::GET, "/api/v1/images", None).await.unwrap();
    assert_eq!(list.len(), 2);

    // In use: refused; once the container is gone, removed with its layers.
    let _: wire::Container = call(&c, Method::POST, "/api/v1/containers",
        Some(serde_json::json!({"name": "user1", "image": "busy:save", "command": ["sh", "-c", "sleep 100"], "start": true}))).await.unwrap();
    let err = call::<serde_json::Value>(&c, Method::DELETE, "/api/v1/images/busy:save", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Api { status, .. } if status.as_u16() == 409),
        "{err:?}"
    );
    let _: serde_json::Value = call(
        &c,
        Method::DELETE,
        "/api/v1/containers/user1?force=true",
        None,
    )
    .await
    .unwrap();
    let _: serde_json::Value = call(&c, Method::DELETE, "/api/v1/images/busy:save", None)
        .await
        .unwrap();
    let _: serde_json::Value = call(&c, Method::DELETE, "/api/v1/images/busy:oci", None)
        .await
        .unwrap();
    let layers = daemon.state.path().join("state/images/layers");
    assert_eq!(
        fs::read_dir(&layers).unwrap().count(),
        0,
        "layers garbage-collected"
    );
}

#[tokio::test]
async fn import_refuses_bad_digests_and_path_traversal() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let work = TempDir::new("corral-img");
    let bad = work.path().join("bad.tar");
    docker_save(&bad, "bad:digest", true);
    let err = tests::containers::import(&c, &bad).await.unwrap_err();
    match err {
        ClientError::Api {
            status,
            message,
            field,
            ..
        } => {
            assert_eq!(status.as_u16(), 400);
            assert_eq!(field.as_deref(), Some("path"));
            assert!(message.contains("digest mismatch"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A layer that climbs out with `..`.
    let mut lb = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 0o644, 1);
    h.as_old_mut().name[..12].copy_from_slice(b"../../escape");
    h.set_cksum();
    lb.append(&h, &b"x"[..]).unwrap();
    let layer = lb.into_inner().unwrap();
    let cfg = config(&[format!("sha256:{}", sha(&layer))], "evil");
    let manifest = serde_json::json!([{"Config": format!("{}.json", sha(&cfg)), "RepoTags": ["evil:1"],
        "Layers": ["l/layer.tar"]}]);
    let mut b = tar::Builder::new(Vec::new());
    add_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    add_file(&mut b, &format!("{}.json", sha(&cfg)), &cfg);
    add_file(&mut b, "l/layer.tar", &layer);
    let evil = work.path().join("evil.tar");
    fs::write(&evil, b.into_inner().unwrap()).unwrap();
    let err = tests::containers::import(&c, &evil).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status, message, .. } if status.as_u16() == 400 && message.contains("..")),
        "{err:?}"
    );
    let list: Vec<wire::Image> = call(&c, Method::GET, "/api/v1/images", None).await.unwrap();
    assert!(list.is_empty());
    assert!(
        !daemon.state.path().join("escape").exists()
            && !daemon.state.path().join("state/escape").exists()
    );
}

#[tokio::test]
async fn cli_image_import_images_and_run() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let work = TempDir::new("corral-img");
    let tarball = work.path().join("busy.tar");
    docker_save(&tarball, "busy:cli", false);
    let host = format!("unix://{}", daemon.socket.display());
    let corral = |args: &[&str]| {
        std::process::Command::new(tests::corral_bin())
            .arg("--host")
            .arg(&host)
            .args(args)
            .output()
            .unwrap()
    };
    let imp = corral(&["image", "import", tarball.to_str().unwrap()]);
    assert!(imp.status.success(), "{imp:?}");
    assert_eq!(
        String::from_utf8_lossy(&imp.stdout),
        "Loaded image: busy:cli\n"
    );
    // Not a terminal: one line per finished step, as `docker load` prints them.
    let progress = String::from_utf8_lossy(&imp.stderr);
    let size = fs::metadata(&tarball).unwrap().len();
    assert!(
        progress.contains("Reading file [========================================]")
            && progress.contains("Loading layer 1/2 ")
            && progress.contains("Loading layer 2/2 "),
        "{progress}"
    );
    assert!(size > 500_000, "big enough to report progress: {size}");
    let list = corral(&["images"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("busy:cli"),
        "{list:?}"
    );
    let run = corral(&["run", "--rm", "busy:cli"]);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stdout).starts_with("hello from the image\n"),
        "{run:?}"
    );
    let run = corral(&[
        "run",
        "--rm",
        "-e",
        "X=1",
        "busy:cli",
        "sh",
        "-c",
        "echo $X $GREETING; exit 4",
    ]);
    assert_eq!(run.status.code(), Some(4), "{run:?}");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "1 hello from the image\n"
    );
    let rm = corral(&["image", "rm", "busy:cli"]);
    assert!(rm.status.success(), "{rm:?}");
    let list = corral(&["images"]);
    assert!(!String::from_utf8_lossy(&list.stdout).contains("busy:cli"));
}

/// `Accept: application/x-ndjson`: the import streams bytes read of the file and of each layer,
/// then `done` with the image (or `error` with the reason).
#[tokio::test]
async fn import_streams_progress() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let work = TempDir::new("corral-img");
    let tarball = work.path().join("busy.tar");
    docker_save(&tarball, "busy:progress", false);
    let size = fs::metadata(&tarball).unwrap().len();
    let body = serde_json::to_vec(&serde_json::json!({"path": tarball})).unwrap();
    let mut events = Vec::new();
    let (status, _) = c
        .request_lines(
            Method::POST,
            "/api/v1/images/import",
            Some(body),
            &mut |l| events.push(serde_json::from_slice::<wire::ImportProgress>(l).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
    let unpack: Vec<&wire::ImportProgress> =
        events.iter().filter(|e| e.status == "unpack").collect();
    assert!(
        unpack.len() >= 3,
        "several reports while reading: {events:?}"
    );
    assert!(unpack.windows(2).all(|w| w[0].current <= w[1].current));
    assert!(unpack.iter().all(|e| e.total == size));
    assert_eq!(unpack.last().unwrap().current, size, "the whole file read");
    for i in [1, 2] {
        let l: Vec<&wire::ImportProgress> = events
            .iter()
            .filter(|e| e.status == "layer" && e.layer == Some(i))
            .collect();
        let last = l.last().unwrap_or_else(|| panic!("layer {i}: {events:?}"));
        assert_eq!(last.layers, Some(2));
        assert!(last.total > 0 && last.current == last.total, "{last:?}");
        assert!(last.id.as_deref().unwrap().starts_with("sha256:"));
    }
    let done = events.last().unwrap();
    assert_eq!(done.status, "done", "{events:?}");
    assert_eq!(
        done.image.as_ref().unwrap().tags,
        vec!["busy:progress".to_owned()]
    );

    // A bad layer: the stream ends with the reason.
    let bad = work.path().join("bad.tar");
    docker_save(&bad, "busy:bad", true);
    let events = tests::containers::import_streamed(&c, &bad).await;
    let last = events.last().unwrap();
    assert_eq!(last.status, "error", "{events:?}");
    let err = last.error.as_ref().unwrap();
    assert!(err.message.contains("digest"), "{err:?}");
    // Errors found before the stream begins answer as usual.
    let body = serde_json::to_vec(&serde_json::json!({"path": "/nonexistent/x.tar"})).unwrap();
    let err = c
        .request_lines(
            Method::POST,
            "/api/v1/images/import",
            Some(body),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status, .. } if status.as_u16() == 400),
        "{err:?}"
    );
}

/// An OCI archive whose index names its image by a bare tag only (`ref.name` = `latest`, as
/// `skopeo copy … oci-archive:x.tar:latest` writes it — skopeo itself makes it when installed),
/// uploaded by `corral image import` over TCP with a token, as a remote client would: named
/// after the file (`app.tar` → `app:latest`, not `latest:latest`), `--tag web` takes the
/// archive's tag (`web:latest`), `--tag NAME:TAG` names it alone; the image runs, and the
/// upload leaves no file behind.
#[tokio::test]
async fn cli_uploads_an_oci_archive_named_by_a_bare_tag() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let work = TempDir::new("corral-img");
    let layout = work.path().join("layout");
    oci_layout(&layout, "latest");
    let archive = work.path().join("app.tar");
    let by_skopeo = std::process::Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("oci-archive:{}:latest", archive.display()))
        .output()
        .is_ok_and(|o| o.status.success());
    if !by_skopeo {
        eprintln!("skopeo is not installed: the archive is the layout tarred by hand");
        let mut b = tar::Builder::new(fs::File::create(&archive).unwrap());
        b.append_dir_all(".", &layout).unwrap();
        b.finish().unwrap();
    }
    let token = daemon.admin_token();
    let corral = |args: &[&str]| {
        std::process::Command::new(tests::corral_bin())
            .args(["--host", &daemon.url(), "--token", &token])
            .args(args)
            .output()
            .unwrap()
    };
    let file = archive.to_str().unwrap();
    let imp = corral(&["image", "import", file]);
    assert!(imp.status.success(), "{imp:?}");
    assert_eq!(
        String::from_utf8_lossy(&imp.stdout),
        "Loaded image: app:latest\n"
    );
    let progress = String::from_utf8_lossy(&imp.stderr);
    assert!(
        progress.contains("Uploading [========================================]")
            && progress.contains("Loading layer 2/2 "),
        "{progress}"
    );
    let imp = corral(&["image", "import", "--tag", "web", file]);
    assert!(imp.status.success(), "{imp:?}");
    assert!(
        String::from_utf8_lossy(&imp.stdout).contains("Loaded image: web:latest\n"),
        "{imp:?}"
    );
    let imp = corral(&["image", "import", "--tag", "web:prod", file]);
    let list: Vec<wire::Image> = call(&c, Method::GET, "/api/v1/images", None).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        list[0].tags,
        ["app:latest", "web:latest", "web:prod"],
        "{imp:?}"
    );
    assert!(
        !list[0].tags.iter().any(|t| t.starts_with("latest")),
        "a bare tag is not a name"
    );
    let (code, out) = run_image(&c, "web:prod").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("hello from the image"), "{out}");
    let tmp = daemon.state.path().join("state/images/tmp");
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "no upload left");
    let _: serde_json::Value = call(&c, Method::DELETE, "/api/v1/images/app:latest", None)
        .await
        .unwrap();
}
