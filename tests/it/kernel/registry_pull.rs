//! Registry pull (issue 18) against a real registry: Debian's `docker-registry` on a loopback
//! port, filled by `skopeo copy`. A pulled image runs; a second pull is "up to date" and
//! fetches no blob; an index yields the linux/amd64 image, an index without it a clear
//! "no matching platform"; an unknown tag, a registry that wants credentials before `corral
//! login`, a plain-HTTP registry not listed with `--insecure-registry`, and a tampered blob
//! are each refused with their cause and leave nothing in the store; a download cut half-way
//! resumes. Prints the cold and warm pull times and the transfer rate of a 32 MiB layer.
//!
//! The pure-v2 VM has no docker-registry: there these tests return at once. On the host they
//! need it (`cargo xtask test` installs docker-registry, skopeo and apache2-utils).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    fs,
    time::{Duration, Instant},
};

use backend::client::{Client, ClientError};
use hyper::Method;
use tests::{
    Daemon, TempDir,
    containers::{Reaper, call, create, logs, remove, wait_exited},
    registry::{PlatformImage, Registry, oci_index_layout},
    rootfs::{add_busybox, add_file, header},
};

/// Whether to run: always on the host (where a missing registry fails the test), never in
/// the pure-v2 VM, which carries no docker-registry.
fn registry_here() -> bool {
    if Registry::available() {
        return true;
    }
    assert!(
        super::team_pool::in_vm(),
        "docker-registry and skopeo are needed for the pull tests: apt-get install \
         docker-registry skopeo apache2-utils (cargo xtask test does)"
    );
    eprintln!("skipped: the VM has no docker-registry");
    false
}

/// Runs `image` to its end: exit code and output.
async fn run(c: &Client, image: &str) -> (i32, String) {
    let name = tests::unique("pulled");
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

async fn pull_api(c: &Client, reference: &str) -> Result<wire::Pulled, ClientError> {
    call(
        c,
        Method::POST,
        "/api/v1/images/pull",
        Some(serde_json::json!({ "reference": reference })),
    )
    .await
}

/// The status and code of an API refusal.
fn refusal(e: ClientError) -> (u16, String, String) {
    match e {
        ClientError::Api {
            status,
            code,
            message,
            ..
        } => (status.as_u16(), code, message),
        other => panic!("not an API refusal: {other:?}"),
    }
}

async fn images(c: &Client) -> Vec<wire::Image> {
    call(c, Method::GET, "/api/v1/images", None).await.unwrap()
}

/// The store holds no layer and no temporary file.
fn store_is_empty(d: &Daemon) {
    let root = d.state.path().join("state/images");
    for sub in ["layers", "tmp"] {
        let left: Vec<_> = fs::read_dir(root.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "left in images/{sub}: {left:?}");
    }
}

/// A busybox layer with `echo` and `sh`, plus `extra` files.
fn busybox_layer(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin", "tmp"] {
        b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), d, &[][..])
            .unwrap();
    }
    add_busybox(&mut b, &["sh", "echo", "cat", "wc"]);
    for (p, data) in extra {
        add_file(&mut b, p, data);
    }
    b.into_inner().unwrap()
}

/// A `docker save` archive of one image with `layer` and command `cmd`.
fn docker_archive(path: &std::path::Path, layer: &[u8], cmd: &[&str]) {
    let cfg = tests::rootfs::image_config(&[tests::rootfs::diff_id(layer)], cmd);
    let cfg_name = format!("{}.json", tests::rootfs::sha(&cfg));
    let layer_name = format!("blobs/sha256/{}", tests::rootfs::sha(layer));
    tests::rootfs::docker_save_members(
        path,
        "archive:1",
        &cfg_name,
        std::slice::from_ref(&layer_name),
        vec![
            (cfg_name.clone(), tests::rootfs::Member::File(cfg)),
            (
                layer_name.clone(),
                tests::rootfs::Member::File(layer.to_vec()),
            ),
        ],
    );
}

#[tokio::test]
async fn pull_runs_the_image_then_is_up_to_date_and_refuses_unknown_tags() {
    if !registry_here() {
        return;
    }
    let reg = Registry::start();
    reg.push_busybox("app:1", &["echo", "pulled and running"]);
    let d = Daemon::start_with(&["--insecure-registry", &reg.addr()]);
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let image = format!("{}/app:1", reg.addr());

    // Cold: every layer downloaded, in docker pull's words; the image runs.
    let t = Instant::now();
    let out = d.cli(None, &["pull", &image], "");
    let cold = t.elapsed();
    assert!(out.ok, "{}", out.stderr);
    for want in [
        "1: Pulling from app",
        "Pulling fs layer",
        "Download complete",
        "Pull complete",
        "Digest: sha256:",
        &format!("Status: Downloaded newer image for {image}"),
    ] {
        assert!(out.stdout.contains(want), "no {want:?} in {}", out.stdout);
    }
    let (code, log) = run(&c, &image).await;
    assert_eq!((code, log.trim()), (0, "pulled and running"));

    // Warm: up to date, and not one blob fetched.
    let gets = reg.blob_gets();
    assert!(
        gets >= 2,
        "the cold pull fetched config and layer: {}",
        reg.log()
    );
    let t = Instant::now();
    let out = d.cli(None, &["pull", &image], "");
    let warm = t.elapsed();
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("Status: Image is up to date for {image}")),
        "{}",
        out.stdout
    );
    let p = pull_api(&c, &image).await.unwrap();
    assert!(p.up_to_date && p.downloaded == 0, "{p:?}");
    assert_eq!(p.name, image);
    assert_eq!(reg.blob_gets(), gets, "an up-to-date pull fetched a blob");

    // An unknown tag: a clear refusal, from the CLI and the API, and nothing stored.
    let before = images(&c).await;
    let missing = format!("{}/app:nope", reg.addr());
    let out = d.cli(None, &["pull", &missing], "");
    assert!(!out.ok);
    assert!(
        out.stderr.contains("is not in the registry") && out.stderr.contains("app:nope"),
        "{}",
        out.stderr
    );
    let (status, code, _) = refusal(pull_api(&c, &missing).await.unwrap_err());
    assert_eq!((status, code.as_str()), (404, "image_unknown"));
    let (status, code, _) = refusal(pull_api(&c, "Not/A Reference").await.unwrap_err());
    assert_eq!((status, code.as_str()), (400, "invalid_value"));
    assert_eq!(images(&c).await, before);
    assert!(
        fs::read_dir(d.state.path().join("state/images/tmp"))
            .unwrap()
            .next()
            .is_none()
    );

    // The transfer rate: an image with a 32 MiB layer of random bytes.
    let mut big = vec![0u8; 32 << 20];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut big))
        .unwrap();
    let layer = busybox_layer(&[("big", &big)]);
    drop(big);
    let tar = reg.dir.path().join("big.tar");
    docker_archive(&tar, &layer, &["wc", "-c", "/big"]);
    reg.copy(&format!("docker-archive:{}", tar.display()), "big:1", false);
    let big_image = format!("{}/big:1", reg.addr());
    let t = Instant::now();
    let out = d.cli(None, &["pull", "--json", &big_image], "");
    let big_cold = t.elapsed();
    assert!(out.ok, "{}", out.stderr);
    let p: wire::Pulled = serde_json::from_str(&out.stdout).unwrap();
    assert!(!p.up_to_date && p.downloaded > 32 << 20, "{p:?}");
    let t = Instant::now();
    let out = d.cli(None, &["pull", &big_image], "");
    let big_warm = t.elapsed();
    assert!(out.stdout.contains("up to date"), "{}", out.stdout);
    let (code, log) = run(&c, &big_image).await;
    assert_eq!(
        (code, log.trim()),
        (0, format!("{} /big", 32u64 << 20).as_str())
    );
    println!(
        "pull from the local registry: busybox image cold {:.0} ms, warm {:.0} ms; \
         {:.1} MB image cold {:.0} ms = {:.0} MB/s, warm (up to date) {:.0} ms",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3,
        p.downloaded as f64 / 1e6,
        big_cold.as_secs_f64() * 1e3,
        p.downloaded as f64 / 1e6 / big_cold.as_secs_f64(),
        big_warm.as_secs_f64() * 1e3,
    );

    // Audited as root's, like an import.
    let rows: Vec<wire::AuditEntry> = call(&c, Method::GET, "/api/v1/audit?limit=200", None)
        .await
        .unwrap();
    assert!(
        rows.iter().any(|r| r.action == "image.pull"
            && r.actor == "root"
            && r.result == "ok"
            && r.target.as_deref() == Some(format!("image:{image}").as_str())),
        "no image.pull row"
    );
    assert!(
        rows.iter()
            .any(|r| r.action == "image.pull" && r.result != "ok"),
        "the refused pull is not audited"
    );
}

#[tokio::test]
async fn pull_picks_linux_amd64_from_an_index_or_names_the_platforms_there_are() {
    if !registry_here() {
        return;
    }
    let reg = Registry::start();
    let dir = TempDir::new("oci-index");
    let layer = busybox_layer(&[]);
    let multi = oci_index_layout(
        &dir.path().join("multi"),
        "multi",
        &[
            PlatformImage {
                platform: ("linux", "arm64", Some("v8")),
                layer: layer.clone(),
                cmd: vec!["echo", "arm64"],
            },
            PlatformImage {
                platform: ("linux", "amd64", None),
                layer: layer.clone(),
                cmd: vec!["echo", "amd64"],
            },
        ],
    );
    reg.copy(
        &format!("oci:{}:multi", dir.path().join("multi").display()),
        "multi:1",
        true,
    );
    oci_index_layout(
        &dir.path().join("foreign"),
        "foreign",
        &[
            PlatformImage {
                platform: ("linux", "arm64", Some("v8")),
                layer: layer.clone(),
                cmd: vec!["echo", "arm64"],
            },
            PlatformImage {
                platform: ("linux", "s390x", None),
                layer,
                cmd: vec!["echo", "s390x"],
            },
        ],
    );
    reg.copy(
        &format!("oci:{}:foreign", dir.path().join("foreign").display()),
        "foreign:1",
        true,
    );
    let d = Daemon::start_with(&["--insecure-registry", &reg.addr()]);
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();

    let image = format!("{}/multi:1", reg.addr());
    let p = pull_api(&c, &image).await.unwrap();
    assert_eq!(p.image.id, multi.configs[1], "not the amd64 image");
    let (code, log) = run(&c, &image).await;
    assert_eq!((code, log.trim()), (0, "amd64"));

    let foreign = format!("{}/foreign:1", reg.addr());
    let (status, code, message) = refusal(pull_api(&c, &foreign).await.unwrap_err());
    assert_eq!((status, code.as_str()), (424, "no_matching_platform"));
    assert!(
        message.contains("no matching platform")
            && message.contains("linux/amd64")
            && message.contains("available: linux/arm64/v8, linux/s390x"),
        "{message}"
    );
    let out = d.cli(None, &["pull", &foreign], "");
    assert!(
        !out.ok && out.stderr.contains("no matching platform"),
        "{}",
        out.stderr
    );
    assert_eq!(images(&c).await.len(), 1);
}

#[tokio::test]
async fn pull_from_a_registry_with_credentials_needs_corral_login() {
    if !registry_here() {
        return;
    }
    let reg = Registry::start_with_auth("puller", "s3cret pass");
    reg.push_busybox("private:1", &["echo", "private"]);
    let d = Daemon::start_with(&["--insecure-registry", &reg.addr()]);
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let image = format!("{}/private:1", reg.addr());

    let out = d.cli(None, &["pull", &image], "");
    assert!(!out.ok);
    assert!(
        out.stderr.contains("refused access") && out.stderr.contains("corral login"),
        "{}",
        out.stderr
    );
    let (status, code, _) = refusal(pull_api(&c, &image).await.unwrap_err());
    assert_eq!((status, code.as_str()), (424, "registry_unauthorized"));

    // A wrong password is refused by the registry and not stored.
    let out = d.cli(
        None,
        &["login", &reg.addr(), "-u", "puller", "--password-stdin"],
        "wrong\n",
    );
    assert!(!out.ok, "{}", out.stdout);
    let auth = d.state.path().join("state/registries/auth.json");
    assert!(!auth.exists());

    let out = d.cli(
        None,
        &["login", &reg.addr(), "-u", "puller", "--password-stdin"],
        "s3cret pass\n",
    );
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&auth), 0o600);
    assert_eq!(mode(auth.parent().unwrap()), 0o700);

    let out = d.cli(None, &["pull", &image], "");
    assert!(out.ok, "{}", out.stderr);
    let (code, log) = run(&c, &image).await;
    assert_eq!((code, log.trim()), (0, "private"));

    // Logged out: refused again (the stored image stays).
    let out = d.cli(None, &["logout", &reg.addr()], "");
    assert!(
        out.ok && out.stdout.contains("Removed login credentials"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let other = format!("{}/private:2", reg.addr());
    let (status, code, _) = refusal(pull_api(&c, &other).await.unwrap_err());
    assert_eq!((status, code.as_str()), (424, "registry_unauthorized"));

    // The password is in no audit row.
    let rows: Vec<wire::AuditEntry> = call(&c, Method::GET, "/api/v1/audit?limit=200", None)
        .await
        .unwrap();
    assert!(
        rows.iter()
            .any(|r| r.action == "registry.login" && r.result == "ok")
    );
    let all = serde_json::to_string(&rows).unwrap();
    assert!(!all.contains("s3cret"), "a password reached the audit log");
}

#[tokio::test]
async fn pull_refuses_plain_http_unless_listed_and_a_tampered_blob() {
    if !registry_here() {
        return;
    }
    let reg = Registry::start();
    // A layer of its own, so tampering with it touches no other image.
    let layer = busybox_layer(&[("unique", tests::unique("tamper").as_bytes())]);
    let tar = reg.dir.path().join("t.tar");
    docker_archive(&tar, &layer, &["echo", "tampered"]);
    reg.copy(&format!("docker-archive:{}", tar.display()), "t:1", false);
    let image = format!("{}/t:1", reg.addr());

    // Not listed: HTTPS is tried and fails, naming the flag that allows plain HTTP.
    let d = Daemon::start();
    let c = d.unix_client();
    let t = Instant::now();
    let out = d.cli(None, &["pull", &image], "");
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains(&format!("--insecure-registry {}", reg.addr())),
        "{}",
        out.stderr
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the refusal took {:?}",
        t.elapsed()
    );
    let (status, code, _) = refusal(pull_api(&c, &image).await.unwrap_err());
    assert_eq!((status, code.as_str()), (424, "registry_tls"));
    store_is_empty(&d);
    drop(d);

    // Listed, but the registry's copy of the layer was changed (same size): the digest
    // check refuses it as it streams; nothing is imported.
    let d = Daemon::start_with(&["--insecure-registry", &reg.addr()]);
    let c = d.unix_client();
    let manifest = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let digest = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let file = reg.blob_file(&digest);
    let mut data = fs::read(&file).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0xff;
    fs::write(&file, &data).unwrap();
    let out = d.cli(None, &["pull", &image], "");
    assert!(!out.ok);
    assert!(
        out.stderr.contains("digest mismatch") && out.stderr.contains(&digest),
        "{}",
        out.stderr
    );
    let (status, code, _) = refusal(pull_api(&c, &image).await.unwrap_err());
    assert_eq!((status, code.as_str()), (424, "digest_mismatch"));
    assert!(images(&c).await.is_empty());
    store_is_empty(&d);
}

#[tokio::test]
async fn a_download_cut_half_way_resumes_with_range() {
    if !registry_here() {
        return;
    }
    let reg = Registry::start();
    let mut noise = vec![0u8; 4 << 20];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut noise))
        .unwrap();
    let layer = busybox_layer(&[("noise", &noise)]);
    let tar = reg.dir.path().join("r.tar");
    docker_archive(&tar, &layer, &["wc", "-c", "/noise"]);
    reg.copy(
        &format!("docker-archive:{}", tar.display()),
        "resume:1",
        false,
    );
    // The daemon breaks off its first download of each blob half-way (fault injection).
    let d = Daemon::start_with_env(
        &["--insecure-registry", &reg.addr()],
        &[("CORRAL_FAULT_REGISTRY_CUT", "1")],
    );
    let _reaper = Reaper::new(&d);
    let c = d.unix_client();
    let image = format!("{}/resume:1", reg.addr());
    let out = d.cli(None, &["pull", &image], "");
    assert!(out.ok, "{}", out.stderr);
    let log = d.log();
    assert!(
        log.contains("blob download broke off: resuming")
            && log.contains("blob download resumed with Range"),
        "no Range resume in the daemon's log: {log}"
    );
    let (code, log) = run(&c, &image).await;
    assert_eq!(
        (code, log.trim()),
        (0, format!("{} /noise", 4u64 << 20).as_str())
    );
}
