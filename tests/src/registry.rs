//! A real registry for pull tests: Debian's `docker-registry` (the distribution registry)
//! serving a temporary directory on a free loopback port, plain HTTP, optionally behind
//! htpasswd basic auth; filled with `skopeo copy` (Debian's `skopeo`) from `docker save`
//! archives and OCI layouts built here. Stopped (by its PID) and removed on drop.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{TempDir, free_port, rootfs};

/// A running `docker-registry serve`.
pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
    /// `user:password` when the registry wants basic auth.
    pub creds: Option<String>,
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

impl Registry {
    /// Whether `docker-registry` and `skopeo` are installed (`cargo xtask test` installs
    /// them on the host; the pure-v2 VM has neither).
    pub fn available() -> bool {
        on_path("docker-registry") && on_path("skopeo")
    }

    /// An anonymous registry.
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// A registry that wants `user`/`password` (htpasswd, bcrypt) for everything.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::spawn(Some((user, password)))
    }

    fn spawn(auth: Option<(&str, &str)>) -> Self {
        let dir = TempDir::new("registry");
        let port = free_port();
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).expect("registry storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((user, password)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success(), "htpasswd: {out:?}");
            let file = dir.path().join("htpasswd");
            fs::write(&file, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: corral-test\n    path: {}\n",
                file.display()
            ));
        }
        let cfg = dir.path().join("config.yml");
        fs::write(&cfg, config).expect("write registry config");
        let log = fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry (apt-get install docker-registry)");
        let mut r = Registry {
            child: Some(child),
            port,
            dir,
            creds: auth.map(|(u, p)| format!("{u}:{p}")),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(s) = r.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("docker-registry exited with {s}: {}", r.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many blob GETs the registry has served (its access log).
    pub fn blob_gets(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .count()
    }

    /// `skopeo copy SRC docker://ADDR/DEST` (plain HTTP), with `--all` for an index.
    pub fn copy(&self, src: &str, dest: &str, all: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if all {
            cmd.arg("--all");
        }
        if let Some(c) = &self.creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd
            .arg(src)
            .arg(format!("docker://{}/{dest}", self.addr()))
            .output()
            .expect("run skopeo (apt-get install skopeo)");
        assert!(
            out.status.success(),
            "skopeo copy {src} {dest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Pushes a `docker save` archive of a busybox image whose command is `cmd` as `dest`
    /// (`repo:tag`).
    pub fn push_busybox(&self, dest: &str, cmd: &[&str]) {
        let tar = self
            .dir
            .path()
            .join(format!("{}.tar", crate::unique("img")));
        rootfs::docker_save(&tar, "pushed:1", cmd);
        self.copy(&format!("docker-archive:{}", tar.display()), dest, false);
        let _ = fs::remove_file(tar);
    }

    /// The file the registry keeps blob `digest` in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::terminate(&mut c);
        }
    }
}

/// One image of an OCI layout: `(os, architecture, variant)`, the uncompressed layer, and
/// the config's command.
pub struct PlatformImage<'a> {
    pub platform: (&'a str, &'a str, Option<&'a str>),
    pub layer: Vec<u8>,
    pub cmd: Vec<&'a str>,
}

/// The digests of an OCI layout [`oci_index_layout`] wrote: the index's, and each image's
/// manifest and config.
pub struct IndexDigests {
    pub index: String,
    pub manifests: Vec<String>,
    pub configs: Vec<String>,
}

fn put_blob(dir: &Path, data: &[u8]) -> String {
    let hex = rootfs::sha(data);
    fs::write(dir.join("blobs/sha256").join(&hex), data).expect("write blob");
    format!("sha256:{hex}")
}

/// Writes an OCI image layout at `dir` whose `index.json` names (as `tag`) a nested index of
/// `images`, one manifest per platform: what `skopeo copy --all oci:DIR:TAG` pushes as a
/// multi-platform image.
pub fn oci_index_layout(dir: &Path, tag: &str, images: &[PlatformImage<'_>]) -> IndexDigests {
    fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dir");
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let mut entries = Vec::new();
    let (mut manifests, mut configs) = (Vec::new(), Vec::new());
    for img in images {
        let (os, arch, variant) = img.platform;
        let layer = put_blob(dir, &img.layer);
        let cfg = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": os,
            "config": {"Env": ["PATH=/bin"], "Cmd": img.cmd},
            "rootfs": {"type": "layers", "diff_ids": [rootfs::diff_id(&img.layer)]},
        }))
        .expect("config");
        let config = put_blob(dir, &cfg);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": img.layer.len()}],
        }))
        .expect("manifest");
        let m = put_blob(dir, &manifest);
        let mut platform = serde_json::json!({"architecture": arch, "os": os});
        if let Some(v) = variant {
            platform["variant"] = serde_json::json!(v);
        }
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m, "size": manifest.len(), "platform": platform,
        }));
        manifests.push(m);
        configs.push(config);
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .expect("index");
    let index_digest = put_blob(dir, &index);
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(dir.join("index.json"), top.to_string()).expect("index.json");
    IndexDigests {
        index: index_digest,
        manifests,
        configs,
    }
}
