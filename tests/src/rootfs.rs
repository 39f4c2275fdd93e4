//! Root filesystems and images for container tests, built from the host's busybox-static:
//! a directory rootfs with every applet, and `docker save` tarballs (tar, digests, manifest).

use std::{
    fs,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use crate::TempDir;

/// busybox-static: /bin/busybox in the VM, /usr/bin/busybox or /bin/busybox on Debian hosts.
pub fn busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("busybox-static is needed (apt-get install busybox-static)")
}

/// A root filesystem with busybox and all its applet links, removed on drop.
pub struct Rootfs {
    pub dir: TempDir,
}

impl Rootfs {
    pub fn new() -> Self {
        let dir = TempDir::new("corral-rootfs");
        let root = dir.path();
        for d in ["bin", "etc", "tmp", "root", "proc", "sys", "dev", "mnt"] {
            fs::create_dir_all(root.join(d)).expect("rootfs dir");
        }
        fs::copy(busybox(), root.join("bin/busybox")).expect("copy busybox");
        let list = std::process::Command::new(busybox())
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let applet = applet.trim();
            if !applet.is_empty() && applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
            }
        }
        fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
        fs::write(root.join("etc/image-file"), "from the image\n").expect("image-file");
        Rootfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Rootfs {
    fn default() -> Self {
        Self::new()
    }
}

/// Lowercase hex SHA-256.
pub fn sha(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

/// A tar header owned by root with a fixed mtime.
pub fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Appends a regular 0644 file.
pub fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o644, data.len() as u64),
        path,
        data,
    )
    .expect("tar append");
}

/// Appends busybox as `bin/busybox` and `applets` as links to it.
pub fn add_busybox(b: &mut tar::Builder<Vec<u8>>, applets: &[&str]) {
    let bb = fs::read(busybox()).expect("read busybox");
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o755, bb.len() as u64),
        "bin/busybox",
        &bb[..],
    )
    .expect("tar append");
    for a in applets {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")
            .expect("tar link");
    }
}

/// A `docker save` tarball of one layer (busybox and a few applets) whose default command is
/// `cmd`.
pub fn docker_save(out: &Path, tag: &str, cmd: &[&str]) {
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin", "tmp"] {
        b.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), d, &[][..])
            .expect("tar dir");
    }
    add_busybox(&mut b, &["sh", "sleep", "echo", "cat"]);
    let layer = b.into_inner().expect("tar");
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(&layer))]},
    }))
    .expect("config json");
    let manifest = serde_json::json!([{
        "Config": format!("{}.json", sha(&cfg)),
        "RepoTags": [tag],
        "Layers": [format!("blobs/sha256/{}", sha(&layer))],
    }]);
    let mut t = tar::Builder::new(Vec::new());
    add_file(
        &mut t,
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("manifest json"),
    );
    add_file(&mut t, &format!("{}.json", sha(&cfg)), &cfg);
    add_file(&mut t, &format!("blobs/sha256/{}", sha(&layer)), &layer);
    fs::write(out, t.into_inner().expect("tar")).expect("write image tarball");
}

/// gzip of `data` (fast level).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// An image config whose layers have `diff_ids` and whose default command is `cmd`.
pub fn image_config(diff_ids: &[String], cmd: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("config json")
}

/// `sha256:<hex>` of an uncompressed layer tar: its diff_id.
pub fn diff_id(layer: &[u8]) -> String {
    format!("sha256:{}", sha(layer))
}

/// A `docker save` tarball of one image, written member by member: manifest.json naming
/// `config_name` and the `layers` member names, then `members` (name, tar entry) in order.
/// Attack tests use it to put links, devices or tampered blobs where files belong.
pub fn docker_save_members(
    out: &Path,
    tag: &str,
    config_name: &str,
    layers: &[String],
    members: Vec<(String, Member)>,
) {
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": [tag], "Layers": layers,
    }]);
    let mut t = tar::Builder::new(Vec::new());
    add_file(
        &mut t,
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("manifest json"),
    );
    for (name, m) in members {
        match m {
            Member::File(data) => add_file(&mut t, &name, &data),
            Member::Symlink(target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                t.append_link(&mut h, &name, target).expect("tar symlink");
            }
            Member::HardLink(target) => {
                let mut h = header(tar::EntryType::Link, 0o644, 0);
                t.append_link(&mut h, &name, target).expect("tar link");
            }
            Member::CharDevice(major, minor) => {
                let mut h = header(tar::EntryType::Char, 0o644, 0);
                h.set_device_major(major).expect("major");
                h.set_device_minor(minor).expect("minor");
                t.append_data(&mut h, &name, &[][..]).expect("tar char");
            }
            Member::Fifo => {
                t.append_data(&mut header(tar::EntryType::Fifo, 0o644, 0), &name, &[][..])
                    .expect("tar fifo");
            }
        }
    }
    fs::write(out, t.into_inner().expect("tar")).expect("write image tarball");
}

/// A member of an image tarball built by [`docker_save_members`].
pub enum Member {
    File(Vec<u8>),
    Symlink(String),
    HardLink(String),
    CharDevice(u32, u32),
    Fifo,
}

/// A layer blob that gunzips to a tar holding one file of `zeros` zero bytes (`zeros` a
/// multiple of 8 MiB): one gzip member of 8 MiB of zeros repeated, so 1 GiB compresses to
/// about 1 MiB and is built in a moment.
pub fn gzip_bomb(zeros: u64) -> Vec<u8> {
    const CHUNK: u64 = 8 << 20;
    assert!(zeros.is_multiple_of(CHUNK), "a multiple of 8 MiB");
    let mut h = header(tar::EntryType::Regular, 0o644, zeros);
    h.set_path("zeros").expect("path");
    h.set_cksum();
    let mut out = gzip(h.as_bytes());
    let chunk = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; CHUNK as usize]).expect("gzip");
        e.finish().expect("gzip")
    };
    for _ in 0..zeros / CHUNK {
        out.extend_from_slice(&chunk);
    }
    // End of archive: two zero blocks.
    out.extend_from_slice(&gzip(&[0u8; 1024]));
    out
}
