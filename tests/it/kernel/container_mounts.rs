//! Bind and tmpfs mounts under attack: a bind source swapped for a symlink (or another
//! directory) between two starts, nested mounts under a `:ro` bind, and mount destinations that
//! reach /proc, /sys or /dev through the image's own symlinks. Run as root with
//! `--test-threads=1`; they work on this hybrid host and in the pure cgroup-v2 VM.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{fs, path::PathBuf, time::Duration};

use backend::client::{Client, ClientError};
use hyper::Method;
use tests::{
    Daemon, TempDir,
    containers::{Reaper, call, create, facts, get, logs, remove, wait_exited},
    rootfs::Rootfs,
};

/// A tmpfs the test mounts on the host, detached on drop (declare it after the directory it
/// lives in, so it goes first).
struct HostMount(PathBuf);

impl HostMount {
    fn tmpfs(at: PathBuf) -> Self {
        fs::create_dir_all(&at).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m,mode=0777"),
        )
        .unwrap();
        HostMount(at)
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `POST /api/v1/containers/{name}/start`, expecting a refusal; returns its message.
async fn start_refused(c: &Client, name: &str) -> String {
    let r = call::<wire::Container>(
        c,
        Method::POST,
        &format!("/api/v1/containers/{name}/start"),
        None,
    )
    .await;
    match r {
        Err(ClientError::Api { message, .. }) => message,
        other => panic!("start of {name} was not refused: {other:?}"),
    }
}

/// Runs `script` in a new container to completion; returns (exit code, output).
async fn run(
    c: &Client,
    rootfs: &Rootfs,
    mounts: serde_json::Value,
    script: &str,
) -> (i32, String) {
    let name = tests::unique("mnt");
    create(
        c,
        serde_json::json!({
            "name": name,
            "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", script],
            "mounts": mounts,
            "start": true,
        }),
    )
    .await;
    let ct = wait_exited(c, &name, Duration::from_secs(30)).await;
    let out = logs(c, &name).await;
    remove(c, &name).await;
    (ct.exit_code.expect("exit code"), out)
}

#[tokio::test]
async fn bind_source_swapped_between_starts_is_refused() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    // Stand-in for the host root: what the attacker wants the container to see.
    let host_root = TempDir::new("corral-hostroot");
    fs::write(host_root.path().join("secret"), "host secret\n").unwrap();
    let dir = TempDir::new("corral-vol");
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("data"), "volume data\n").unwrap();

    let name = tests::unique("swap");
    create(
        &c,
        serde_json::json!({
            "name": name,
            "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", "cat /mnt/*"],
            "mounts": [{"type": "bind", "source": src, "destination": "/mnt"}],
            "start": true,
        }),
    )
    .await;
    wait_exited(&c, &name, Duration::from_secs(30)).await;
    assert_eq!(logs(&c, &name).await, "volume data\n");

    // The owner of the source's parent swaps it for a symlink to "the host root".
    fs::rename(&src, dir.path().join("orig")).unwrap();
    std::os::unix::fs::symlink(host_root.path(), &src).unwrap();
    let msg = start_refused(&c, &name).await;
    assert!(
        msg.contains("/mnt") && msg.contains("symbolic link"),
        "the refusal names the mount and why: {msg}"
    );
    let ct = get(&c, &name).await;
    assert_ne!(ct.status, "running", "{ct:?}");
    assert!(
        !logs(&c, &name).await.contains("host secret"),
        "the container never saw the swapped-in tree"
    );

    // A real directory put in its place (same path, another inode) is refused too.
    fs::remove_file(&src).unwrap();
    fs::create_dir(&src).unwrap();
    fs::write(src.join("secret"), "host secret\n").unwrap();
    let msg = start_refused(&c, &name).await;
    assert!(
        msg.contains("/mnt") && msg.contains("no longer the file recorded at create"),
        "{msg}"
    );
    assert!(!logs(&c, &name).await.contains("host secret"));

    // The original back in place: the container starts again and sees its volume.
    fs::remove_dir_all(&src).unwrap();
    fs::rename(dir.path().join("orig"), &src).unwrap();
    call::<wire::Container>(
        &c,
        Method::POST,
        &format!("/api/v1/containers/{name}/start"),
        None,
    )
    .await
    .unwrap();
    wait_exited(&c, &name, Duration::from_secs(30)).await;
    assert_eq!(logs(&c, &name).await, "volume data\nvolume data\n");
    remove(&c, &name).await;
}

#[tokio::test]
async fn bind_source_symlink_is_resolved_once_at_create() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let dir = TempDir::new("corral-vol");
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::write(real.join("data"), "real\n").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // A source given through a symlink is recorded (and shown) as its canonical path.
    let ct = create(
        &c,
        serde_json::json!({
            "name": tests::unique("canon"),
            "rootfs": rootfs.path(),
            "command": ["/bin/cat", "/mnt/data"],
            "mounts": [{"type": "bind", "source": link, "destination": "/mnt"}],
        }),
    )
    .await;
    let shown = serde_json::to_value(&ct).unwrap();
    let shown = shown.to_string();
    assert!(
        shown.contains(&fs::canonicalize(&real).unwrap().display().to_string()),
        "{shown}"
    );
    // Re-pointing the symlink afterwards changes nothing: the canonical path is bound.
    let other = dir.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("data"), "other\n").unwrap();
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&other, &link).unwrap();
    tests::containers::action(&c, &ct.name, "start").await;
    wait_exited(&c, &ct.name, Duration::from_secs(30)).await;
    assert_eq!(logs(&c, &ct.name).await, "real\n");
    remove(&c, &ct.name).await;
}

#[tokio::test]
async fn readonly_bind_is_readonly_nosuid_nodev_all_the_way_down() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    let vol = TempDir::new("corral-vol");
    fs::write(vol.path().join("top"), "top\n").unwrap();
    let _nested = HostMount::tmpfs(vol.path().join("nested"));
    fs::write(vol.path().join("nested/inner"), "inner\n").unwrap();
    let rw = TempDir::new("corral-vol");
    let _rw_nested = HostMount::tmpfs(rw.path().join("nested"));

    let script = r#"
        echo inner=$(cat /data/nested/inner)
        (echo x > /data/nested/new) 2>/dev/null && echo nested_write=ok || echo nested_write=refused
        (echo x > /data/new) 2>/dev/null && echo top_write=ok || echo top_write=refused
        echo nested_opts=$(grep ' /data/nested ' /proc/self/mounts | cut -d' ' -f4)
        echo rw_nested_opts=$(grep ' /rw/nested ' /proc/self/mounts | cut -d' ' -f4)
        (echo x > /rw/nested/new) 2>/dev/null && echo rw_nested_write=ok || echo rw_nested_write=refused
    "#;
    let (code, out) = run(
        &c,
        &rootfs,
        serde_json::json!([
            {"type": "bind", "source": vol.path(), "destination": "/data", "readonly": true},
            {"type": "bind", "source": rw.path(), "destination": "/rw"},
        ]),
        script,
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let f = facts(&out);
    assert_eq!(f["inner"], "inner", "{out}");
    assert_eq!(f["top_write"], "refused", "{out}");
    assert_eq!(
        f["nested_write"], "refused",
        "a mount nested under a :ro bind is read-only too: {out}"
    );
    assert!(!vol.path().join("nested/new").exists());
    let opts = |k: &str| f[k].split(',').map(str::to_owned).collect::<Vec<_>>();
    for flag in ["ro", "nosuid", "nodev"] {
        assert!(
            opts("nested_opts").iter().any(|o| o == flag),
            "{flag}: {out}"
        );
    }
    // Under a read-write bind, nested mounts stay writable but lose suid and devices.
    assert_eq!(f["rw_nested_write"], "ok", "{out}");
    for flag in ["rw", "nosuid", "nodev"] {
        assert!(
            opts("rw_nested_opts").iter().any(|o| o == flag),
            "{flag}: {out}"
        );
    }
}

#[tokio::test]
async fn image_symlinks_cannot_point_a_mount_at_proc_sys_or_dev() {
    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let rootfs = Rootfs::new();
    // The image's own symlinks, resolved inside the root, lead into the runtime's mounts.
    std::os::unix::fs::symlink("/proc/sys/kernel", rootfs.path().join("k")).unwrap();
    std::os::unix::fs::symlink("/dev", rootfs.path().join("d")).unwrap();
    std::os::unix::fs::symlink("/", rootfs.path().join("r")).unwrap();
    let vol = TempDir::new("corral-vol");
    for (mount, resolved) in [
        (
            serde_json::json!({"type": "tmpfs", "destination": "/k"}),
            "/proc/sys/kernel",
        ),
        (
            serde_json::json!({"type": "tmpfs", "destination": "/d/shm"}),
            "/dev/shm",
        ),
        (
            serde_json::json!({"type": "bind", "source": vol.path(), "destination": "/r"}),
            "/ ",
        ),
    ] {
        let name = tests::unique("mntsym");
        let r = call::<wire::Container>(
            &c,
            Method::POST,
            "/api/v1/containers",
            Some(serde_json::json!({
                "name": name,
                "rootfs": rootfs.path(),
                "command": ["/bin/true"],
                "mounts": [mount],
                "start": true,
            })),
        )
        .await;
        let msg = match r {
            Err(ClientError::Api { message, .. }) => message,
            other => panic!("{mount} was not refused: {other:?}"),
        };
        assert!(
            msg.contains(&format!("resolves to {resolved}")),
            "{mount}: {msg}"
        );
        let ct = get(&c, &name).await;
        assert_ne!(ct.status, "running");
        remove(&c, &name).await;
    }
}
