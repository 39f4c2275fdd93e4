//! Hostile images against the real daemon (issue #12): archive members that are links or
//! devices (a config that is a symlink to /dev/zero grew the daemon until OOM), a gzip bomb
//! layer, tampered blobs, whiteouts naming a directory or its parent. Each is refused with an
//! error naming what was wrong, the daemon's memory stays flat, and the store is left as it
//! was (no layer, no temp file); a legitimate archive with links between its own members
//! still imports and runs.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use backend::client::{Client, ClientError};
use hyper::Method;
use tests::{
    Daemon, TempDir,
    containers::{Reaper, call, create, logs, remove, wait_exited},
    rootfs::{
        Member, add_busybox, add_file, diff_id, docker_save_members, gzip, gzip_bomb, header,
        image_config, sha,
    },
};

/// A runnable layer: busybox, sh/cat/ls, `etc/stay` and `etc/sub/file`.
fn base_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin", "etc", "etc/sub", "tmp"] {
        b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), d, &[][..])
            .unwrap();
    }
    add_busybox(&mut b, &["sh", "cat", "ls"]);
    add_file(&mut b, "etc/stay", b"stay\n");
    add_file(&mut b, "etc/sub/file", b"sub\n");
    b.into_inner().unwrap()
}

/// A layer of one entry `name` (a whiteout, as attackers write them).
fn layer_with(name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 0o644, 0);
    // Raw name bytes: nothing in the builder may tidy it up.
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    b.into_inner().unwrap()
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes of the files under `p` (apparent sizes).
fn usage(p: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => usage(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn names(p: &Path) -> Vec<String> {
    fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Samples a number every few milliseconds on a thread, keeping the peak.
struct Peak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    killed: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peak {
    /// `sample` every 2 ms; when it passes `kill_above`, SIGKILL `pid` (the daemon this test
    /// started): a regression must fail the test, not take the machine down.
    fn watch(sample: impl Fn() -> u64 + Send + 'static, kill_above: Option<(u64, u32)>) -> Self {
        let (stop, peak, killed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (s, p, k) = (stop.clone(), peak.clone(), killed.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let v = sample();
                p.fetch_max(v, Ordering::Relaxed);
                if let Some((limit, pid)) = kill_above
                    && v > limit
                    && !k.swap(true, Ordering::Relaxed)
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Peak {
            stop,
            peak,
            killed,
            thread: Some(thread),
        }
    }

    /// The peak, and whether the watched daemon had to be killed.
    fn finish(mut self) -> (u64, bool) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.peak.load(Ordering::Relaxed),
            self.killed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Imports `path` (waiting at most 120 s).
async fn import(c: &Client, path: &Path) -> Result<wire::Image, ClientError> {
    tokio::time::timeout(Duration::from_secs(120), tests::containers::import(c, path))
        .await
        .unwrap_or_else(|_| panic!("import of {} did not answer in 120 s", path.display()))
}

/// The API error's message (400, field `path`); a panic when it imported.
fn refusal(path: &Path, r: Result<wire::Image, ClientError>) -> String {
    match r {
        Err(ClientError::Api {
            status,
            message,
            field,
            ..
        }) => {
            assert_eq!(status.as_u16(), 400, "{message}");
            assert_eq!(field.as_deref(), Some("path"), "{message}");
            message
        }
        other => panic!("{}: {other:?}", path.display()),
    }
}

async fn refused(c: &Client, path: &Path) -> String {
    refusal(path, import(c, path).await)
}

async fn run_image(c: &Client, image: &str, cmd: &[&str]) -> (i32, String) {
    let name = tests::unique("img");
    create(
        c,
        serde_json::json!({"name": name, "image": image, "command": cmd, "start": true}),
    )
    .await;
    let ct = wait_exited(c, &name, Duration::from_secs(20)).await;
    let out = logs(c, &name).await;
    remove(c, &name).await;
    (ct.exit_code.unwrap(), out)
}

/// The store holds no image, no layer and no temporary file.
async fn store_is_empty(c: &Client, images: &Path) {
    let list: Vec<wire::Image> = call(c, Method::GET, "/api/v1/images", None).await.unwrap();
    assert!(list.is_empty(), "{list:?}");
    assert_eq!(
        names(&images.join("layers")),
        Vec::<String>::new(),
        "layers"
    );
    assert_eq!(names(&images.join("tmp")), Vec::<String>::new(), "tmp");
}

#[tokio::test]
async fn import_refuses_archive_members_that_are_links_or_devices() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let pid = daemon.pid().unwrap();
    let images = daemon.state.path().join("state/images");
    let work = TempDir::new("corral-img");
    let layer = base_layer();
    let cfg = image_config(&[diff_id(&layer)], &["cat", "/etc/stay"]);
    let cfg_name = format!("{}.json", sha(&cfg));
    let blob = format!("blobs/sha256/{}", sha(&layer));
    let _: Vec<wire::Image> = call(&c, Method::GET, "/api/v1/images", None).await.unwrap();
    let base = rss_kib(pid);
    let cases: Vec<(&str, &str, Member, &str)> = vec![
        (
            "config symlink to /dev/zero",
            &cfg_name,
            Member::Symlink("/dev/zero".into()),
            "outside the archive",
        ),
        (
            "config symlink climbing out",
            &cfg_name,
            Member::Symlink("../../../../../../../../dev/zero".into()),
            "outside the archive",
        ),
        (
            "config hard link to /dev/zero",
            &cfg_name,
            Member::HardLink("/dev/zero".into()),
            "outside the archive",
        ),
        (
            "config as /dev/zero itself",
            &cfg_name,
            Member::CharDevice(1, 5),
            "character device",
        ),
        ("config as a fifo", &cfg_name, Member::Fifo, "fifo"),
        (
            "layer symlink to /dev/zero",
            &blob,
            Member::Symlink("/dev/zero".into()),
            "outside the archive",
        ),
    ];
    for (i, (what, member, evil, want)) in cases.into_iter().enumerate() {
        let mut members = vec![
            (cfg_name.clone(), Member::File(cfg.clone())),
            (blob.clone(), Member::File(layer.clone())),
        ];
        members.retain(|m| m.0 != member);
        members.push((member.to_owned(), evil));
        let tarball = work.path().join(format!("evil{i}.tar"));
        docker_save_members(
            &tarball,
            "evil:1",
            &cfg_name,
            std::slice::from_ref(&blob),
            members,
        );
        // Without the defence the daemon reads /dev/zero until the OOM killer comes: the
        // watch kills it at +512 MiB instead.
        let watch = Peak::watch(move || rss_kib(pid), Some((base + (512 << 10), pid)));
        let started = Instant::now();
        let r = import(&c, &tarball).await;
        let (peak, killed) = watch.finish();
        assert!(
            !killed,
            "{what}: the daemon grew from {base} KiB past {peak} KiB and was killed"
        );
        let msg = refusal(&tarball, r);
        eprintln!(
            "{what}: refused in {:?}, daemon RSS {base} KiB before, peak {peak} KiB: {msg}",
            started.elapsed()
        );
        assert!(msg.contains(want) && msg.contains(member), "{what}: {msg}");
        assert!(
            peak < base + (64 << 10),
            "{what}: RSS grew from {base} to {peak} KiB"
        );
        store_is_empty(&c, &images).await;
    }

    // An OCI layout directory of the host whose config blob is a symlink to /dev/zero.
    let oci = work.path().join("oci");
    let blobs = oci.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha(&cfg)), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{}", sha(&layer)), "size": layer.len()}],
    }))
    .unwrap();
    fs::write(blobs.join(sha(&layer)), &layer).unwrap();
    fs::write(blobs.join(sha(&manifest)), &manifest).unwrap();
    std::os::unix::fs::symlink("/dev/zero", blobs.join(sha(&cfg))).unwrap();
    fs::write(
        oci.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", sha(&manifest)), "size": manifest.len()}]}))
        .unwrap(),
    )
    .unwrap();
    let watch = Peak::watch(move || rss_kib(pid), Some((base + (512 << 10), pid)));
    let r = import(&c, &oci).await;
    let (peak, killed) = watch.finish();
    assert!(
        !killed,
        "OCI layout: the daemon grew from {base} KiB past {peak} KiB and was killed"
    );
    let msg = refusal(&oci, r);
    eprintln!("OCI config symlink: daemon RSS {base} KiB before, peak {peak} KiB: {msg}");
    assert!(msg.contains("symlink") && msg.contains(&sha(&cfg)), "{msg}");
    store_is_empty(&c, &images).await;
    let after = rss_kib(pid);
    eprintln!("daemon RSS after the attacks: {after} KiB");

    // Links between the archive's own members are fine (docker save links a repeated layer
    // as `<id>/layer.tar -> ../<other id>/layer.tar`): imported and run.
    let tarball = work.path().join("linked.tar");
    docker_save_members(
        &tarball,
        "linked:1",
        &cfg_name,
        &["v1/layer.tar".to_owned()],
        vec![
            (cfg_name.clone(), Member::File(cfg.clone())),
            (blob.clone(), Member::File(layer.clone())),
            ("v0/layer.tar".into(), Member::Symlink(format!("../{blob}"))),
            ("v1".into(), Member::Symlink("v0".into())),
        ],
    );
    let img = import(&c, &tarball).await.unwrap();
    assert_eq!(img.tags, vec!["linked:1".to_owned()]);
    let (code, out) = run_image(&c, "linked:1", &["cat", "/etc/stay"]).await;
    assert_eq!((code, out.as_str()), (0, "stay\n"));
}

#[tokio::test]
async fn import_stops_a_gzip_bomb_at_the_layer_cap() {
    let daemon = Daemon::start_with(&["--max-layer-size", "64M"]);
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let images = daemon.state.path().join("state/images");
    let work = TempDir::new("corral-img");
    // 1 GiB of zeros in about 1 MiB. Its diff_id is not checked before the cap stops it.
    let bomb = gzip_bomb(1 << 30);
    let cfg = image_config(&[diff_id(b"1 GiB of zeros")], &["true"]);
    let cfg_name = format!("{}.json", sha(&cfg));
    let blob = format!("blobs/sha256/{}", sha(&bomb));
    let tarball = work.path().join("bomb.tar");
    docker_save_members(
        &tarball,
        "bomb:1",
        &cfg_name,
        std::slice::from_ref(&blob),
        vec![
            (cfg_name.clone(), Member::File(cfg)),
            (blob.clone(), Member::File(bomb.clone())),
        ],
    );
    let before = usage(&images);
    let tmp = images.join("tmp");
    let watch = Peak::watch(move || usage(&tmp), None);
    let started = Instant::now();
    // Streamed (as `corral image import` asks): no request timeout however slow the machine.
    let events = tests::containers::import_streamed(&c, &tarball).await;
    let took = started.elapsed();
    let last = events.last().unwrap();
    assert_eq!(last.status, "error", "{events:?}");
    let msg = last.error.as_ref().unwrap().message.clone();
    let (peak, _) = watch.finish();
    eprintln!(
        "gzip bomb ({} bytes, 1 GiB unpacked): refused after {took:?}, at most {peak} bytes under images/tmp: {msg}",
        bomb.len()
    );
    assert!(
        msg.contains("--max-layer-size") && msg.contains("64 MiB") && msg.contains(&blob),
        "{msg}"
    );
    assert!(
        peak <= (64 << 20) + 2 * bomb.len() as u64 + (1 << 20),
        "{peak} bytes written before the refusal"
    );
    assert_eq!(usage(&images), before, "disk usage back to before");
    store_is_empty(&c, &images).await;

    // A normal image under the lowered cap still imports and runs.
    let tarball = work.path().join("busy.tar");
    tests::rootfs::docker_save(&tarball, "busy:cap", &["sh", "-c", "echo fine"]);
    let img = import(&c, &tarball).await.unwrap();
    assert_eq!(img.tags, vec!["busy:cap".to_owned()]);
    let (code, out) = run_image(&c, "busy:cap", &["sh", "-c", "echo fine"]).await;
    assert_eq!((code, out.as_str()), (0, "fine\n"));
}

#[tokio::test]
async fn import_of_a_tampered_layer_stores_nothing() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let images = daemon.state.path().join("state/images");
    let work = TempDir::new("corral-img");
    let before = usage(&images);
    let l1 = base_layer();
    let l2 = layer_with("etc/two");
    let (b1, b2) = (gzip(&l1), gzip(&l2));
    let tampered = gzip(&layer_with("etc/evil"));
    let name = |b: &[u8]| format!("blobs/sha256/{}", sha(b));
    // (what, diff_ids, blobs by name): layer 1 is good and new each time, layer 2 is not.
    type Blobs = Vec<(String, Vec<u8>)>;
    let cases: Vec<(&str, Vec<String>, Blobs)> = vec![
        (
            "blob that does not hash to its name",
            vec![diff_id(&l1), diff_id(&l2)],
            vec![(name(&b1), b1.clone()), (name(&b2), tampered.clone())],
        ),
        (
            "diff_id that does not match the layer",
            vec![diff_id(&l1), diff_id(b"another layer")],
            vec![(name(&b1), b1.clone()), (name(&b2), b2.clone())],
        ),
    ];
    for (what, diff_ids, blobs) in cases {
        let cfg = image_config(&diff_ids, &["true"]);
        let cfg_name = format!("{}.json", sha(&cfg));
        let mut members = vec![(cfg_name.clone(), Member::File(cfg))];
        members.extend(
            blobs
                .iter()
                .map(|(n, b)| (n.clone(), Member::File(b.clone()))),
        );
        let tarball = work.path().join("tampered.tar");
        docker_save_members(
            &tarball,
            "tampered:1",
            &cfg_name,
            &blobs.iter().map(|b| b.0.clone()).collect::<Vec<_>>(),
            members,
        );
        let msg = refused(&c, &tarball).await;
        eprintln!("{what}: {msg}");
        assert!(
            msg.contains("digest mismatch") && msg.contains(&name(&b2)),
            "{what}: {msg}"
        );
        // Layer 1 was fine and stored first: a failed import takes it away again.
        store_is_empty(&c, &images).await;
        assert_eq!(usage(&images), before, "{what}: disk usage back to before");
    }

    // OCI layout: the manifest's descriptor names another digest than the blob's.
    let oci = work.path().join("oci");
    let blobs = oci.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let cfg = image_config(&[diff_id(&l1), diff_id(&l2)], &["true"]);
    let wrong = format!("sha256:{}", sha(b"not the blob"));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha(&cfg)), "size": cfg.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", sha(&b1)), "size": b1.len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": wrong, "size": b2.len()},
        ],
    }))
    .unwrap();
    for b in [&b1, &cfg, &manifest] {
        fs::write(blobs.join(sha(b)), b).unwrap();
    }
    fs::write(blobs.join(sha(b"not the blob")), &b2).unwrap();
    fs::write(
        oci.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", sha(&manifest)), "size": manifest.len()}]}))
        .unwrap(),
    )
    .unwrap();
    let msg = refused(&c, &oci).await;
    assert!(
        msg.contains("digest mismatch") && msg.contains(&wrong),
        "{msg}"
    );
    store_is_empty(&c, &images).await;
    assert_eq!(usage(&images), before, "disk usage back to before");
}

#[tokio::test]
async fn import_refuses_whiteouts_of_a_directory_or_its_parent() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let images = daemon.state.path().join("state/images");
    let work = TempDir::new("corral-img");
    let l1 = base_layer();
    let save = |out: &PathBuf, tag: &str, layers: &[&Vec<u8>]| {
        let cfg = image_config(
            &layers.iter().map(|l| diff_id(l)).collect::<Vec<_>>(),
            &["true"],
        );
        let cfg_name = format!("{}.json", sha(&cfg));
        let names: Vec<String> = layers
            .iter()
            .map(|l| format!("blobs/sha256/{}", sha(l)))
            .collect();
        let mut members = vec![(cfg_name.clone(), Member::File(cfg))];
        members.extend(
            layers
                .iter()
                .zip(&names)
                .map(|(l, n)| (n.clone(), Member::File((*l).clone()))),
        );
        docker_save_members(out, tag, &cfg_name, &names, members);
    };
    let base = work.path().join("base.tar");
    save(&base, "base:1", &[&l1]);
    let img: wire::Image = tests::containers::import(&c, &base).await.unwrap();
    let lower = images
        .join("layers")
        .join(img.layers[0].trim_start_matches("sha256:"));
    for (i, bad) in ["etc/.wh..", "etc/.wh...", ".wh...", ".wh..", "etc/sub/.wh."]
        .into_iter()
        .enumerate()
    {
        let evil = layer_with(bad);
        let tarball = work.path().join(format!("wh{i}.tar"));
        save(&tarball, &format!("wh:{i}"), &[&l1, &evil]);
        let msg = refused(&c, &tarball).await;
        eprintln!("{bad}: {msg}");
        assert!(
            msg.contains("whiteout") && msg.contains(&format!("{bad:?}")),
            "{bad}: {msg}"
        );
        assert_eq!(
            fs::read(lower.join("etc/stay")).unwrap(),
            b"stay\n",
            "{bad}"
        );
        assert_eq!(fs::read(lower.join("etc/sub/file")).unwrap(), b"sub\n");
        assert_eq!(
            names(&images.join("tmp")),
            Vec::<String>::new(),
            "{bad}: tmp"
        );
        assert_eq!(names(&images.join("layers")).len(), 1, "{bad}: layers");
    }
    let list: Vec<wire::Image> = call(&c, Method::GET, "/api/v1/images", None).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let (code, out) = run_image(&c, "base:1", &["sh", "-c", "cat /etc/stay; ls /etc/sub"]).await;
    assert_eq!((code, out.as_str()), (0, "stay\nfile\n"));

    // A whiteout of an entry, and an opaque directory, still hide what is below.
    let good = {
        let mut b = tar::Builder::new(Vec::new());
        add_file(&mut b, "etc/.wh.stay", b"");
        add_file(&mut b, "etc/sub/.wh..wh..opq", b"");
        add_file(&mut b, "etc/sub/new", b"new\n");
        b.into_inner().unwrap()
    };
    let tarball = work.path().join("good.tar");
    save(&tarball, "wh:good", &[&l1, &good]);
    let _: wire::Image = tests::containers::import(&c, &tarball).await.unwrap();
    let (code, out) = run_image(
        &c,
        "wh:good",
        &[
            "sh",
            "-c",
            "ls /etc; ls /etc/sub; test -e /etc/stay && echo BROKEN; true",
        ],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "sub\nnew\n"), "{out}");
}
