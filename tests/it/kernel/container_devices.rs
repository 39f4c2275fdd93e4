//! The device allowlist, attacked as issue #12 found it: root in a default container creates a
//! node for the host's disk (`mknod /dev/hd b 7 0`) and reads it. The "disk" is a loop device
//! holding a secret, made by the test (on this host and in the pure cgroup-v2 VM); the test
//! first proves the host can read the secret through it, so the container's refusal is the
//! defence and not an accident of the host.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{path::PathBuf, process::Command, time::Duration};

use tests::{
    Daemon, TempDir,
    containers::{Reaper, create, facts, logs, remove, wait_exited},
    rootfs::Rootfs,
};

/// A loop device over a file holding `secret`, detached on drop.
struct Loop {
    dev: String,
    _dir: TempDir,
}

impl Loop {
    fn new(secret: &str) -> Loop {
        let dir = TempDir::new("corral-it-loop");
        let file = dir.path().join("disk.img");
        let mut data = secret.as_bytes().to_vec();
        data.resize(1 << 20, 0);
        std::fs::write(&file, data).unwrap();
        // `losetup -f` then `losetup DEV FILE`: both util-linux and busybox say it so.
        let free = Command::new("losetup").arg("-f").output().unwrap();
        assert!(free.status.success(), "losetup -f: {free:?}");
        let dev = String::from_utf8_lossy(&free.stdout).trim().to_owned();
        let set = Command::new("losetup")
            .arg(&dev)
            .arg(&file)
            .status()
            .unwrap();
        assert!(set.success(), "losetup {dev} {}", file.display());
        Loop { dev, _dir: dir }
    }

    /// (major, minor) of the device.
    fn numbers(&self) -> (u64, u64) {
        let name = PathBuf::from(&self.dev);
        let name = name.file_name().unwrap().to_string_lossy();
        let text = std::fs::read_to_string(format!("/sys/block/{name}/dev")).unwrap();
        let (maj, min) = text.trim().split_once(':').unwrap();
        (maj.parse().unwrap(), min.parse().unwrap())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

#[tokio::test]
async fn a_container_cannot_mknod_and_read_a_host_disk() {
    let secret = tests::unique("corral-secret");
    let disk = Loop::new(&secret);
    let (major, minor) = disk.numbers();
    // Without a defence this is what the container would get: the host reads the secret.
    let host_read = std::fs::read(&disk.dev).unwrap();
    assert!(
        host_read.starts_with(secret.as_bytes()),
        "the host reads the secret through {}",
        disk.dev
    );

    let daemon = Daemon::start();
    let _reaper = Reaper::new(&daemon);
    let c = daemon.unix_client();
    let host: serde_json::Value = c.get("/api/v1/host").await.unwrap();
    let enforcement = host["devices"]["enforcement"].as_array().unwrap();
    assert!(
        !enforcement.is_empty(),
        "a device cgroup is in force on this host: {host}"
    );
    assert_eq!(host["devices"]["nodev"], true);

    let rootfs = Rootfs::new();
    // One stream: busybox writes an error message in pieces, and the log interleaves stdout
    // and stderr chunks (seen: "/bin/sh: open_null2=1").
    let script = format!(
        "exec 2>&1
         mknod /dev/hd b {major} {minor}; echo mknod_dev=$?
         head -c 64 /dev/hd; r=$?; echo; echo read_dev=$r
         mknod /tmp/hd b {major} {minor}; echo mknod_tmp=$?
         head -c 64 /tmp/hd; r=$?; echo; echo read_tmp=$r
         mknod /dev/shm/hd b {major} {minor}; echo mknod_shm=$?
         mknod /tmp/mem c 1 1; echo mknod_mem=$?
         mknod /tmp/null2 c 1 3; echo mknod_null=$?
         echo x > /tmp/null2; echo open_null2=$?
         echo x > /dev/null; echo null=$?
         echo zero=$(head -c 8 /dev/zero | wc -c)
         echo urandom=$(head -c 8 /dev/urandom | wc -c)
         echo random=$(head -c 8 /dev/random | wc -c)
         echo x > /dev/full; echo full=$?
         : 3<>/dev/ptmx; echo ptmx=$?
         true"
    );
    let name = tests::unique("ct");
    create(
        &c,
        serde_json::json!({
            "name": name,
            "rootfs": rootfs.path(),
            "command": ["/bin/sh", "-c", script],
            "start": true,
        }),
    )
    .await;
    wait_exited(&c, &name, Duration::from_secs(30)).await;
    let out = logs(&c, &name).await;
    remove(&c, &name).await;

    assert!(
        !out.contains(&secret),
        "the container read the host's disk:\n{out}"
    );
    let f = facts(&out);
    let code = |k: &str| -> i32 {
        f.get(k)
            .unwrap_or_else(|| panic!("{k} missing in:\n{out}"))
            .parse()
            .unwrap()
    };
    // The block device can be created nowhere, and nothing the container makes opens.
    for k in ["mknod_dev", "mknod_tmp", "mknod_shm", "mknod_mem"] {
        assert_ne!(code(k), 0, "{k}: refused by the device cgroup\n{out}");
    }
    for k in ["read_dev", "read_tmp"] {
        assert_ne!(code(k), 0, "{k}\n{out}");
    }
    assert!(
        out.contains("Operation not permitted"),
        "the device cgroup answers EPERM:\n{out}"
    );
    // mknod of an allowed device passes the cgroup, but a node outside the container's own
    // /dev nodes cannot be opened (every writable mount is nodev).
    assert_eq!(code("mknod_null"), 0, "mknod of c 1:3 is allowed\n{out}");
    assert_ne!(code("open_null2"), 0, "a new node on a nodev mount\n{out}");
    // The allowed nodes work.
    assert_eq!(code("null"), 0, "{out}");
    assert_eq!(code("zero"), 8, "{out}");
    assert_eq!(code("urandom"), 8, "{out}");
    assert_eq!(code("random"), 8, "{out}");
    assert_ne!(code("full"), 0, "/dev/full is full\n{out}");
    assert_eq!(code("ptmx"), 0, "/dev/ptmx opens\n{out}");
}
