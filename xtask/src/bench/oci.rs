//! The one busybox root filesystem every runtime runs: a directory (the OCI bundles' `rootfs`),
//! the same files as a `docker save` tarball for Corral's image import, and the OCI bundles of
//! runc and crun (their own `spec` output, adjusted).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// busybox-static: /bin/busybox or /usr/bin/busybox.
fn busybox() -> Result<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("busybox-static is needed (apt-get install busybox-static)")
}

/// A root filesystem with busybox and all its applet links, as the integration tests build it
/// (`tests::rootfs::Rootfs`).
pub fn rootfs(dir: &Path) -> Result<()> {
    for d in ["bin", "etc", "tmp", "root", "proc", "sys", "dev", "mnt"] {
        fs::create_dir_all(dir.join(d))?;
    }
    let bb = busybox()?;
    fs::copy(&bb, dir.join("bin/busybox")).context("copy busybox")?;
    let list = Command::new(&bb).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))?;
        }
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    Ok(())
}

fn sha(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

fn add_file(t: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    t.append_data(&mut h, path, data)?;
    Ok(())
}

/// A `docker save` tarball (one layer: the files of `rootfs`) tagged `tag`, written to `out`.
pub fn docker_save(rootfs: &Path, tag: &str, out: &Path) -> Result<()> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", rootfs)
        .with_context(|| format!("tar {}", rootfs.display()))?;
    let layer = b.into_inner()?;
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(&layer))]},
    }))?;
    let manifest = serde_json::json!([{
        "Config": format!("{}.json", sha(&cfg)),
        "RepoTags": [tag],
        "Layers": [format!("blobs/sha256/{}", sha(&layer))],
    }]);
    let mut t = tar::Builder::new(Vec::new());
    add_file(&mut t, "manifest.json", &serde_json::to_vec(&manifest)?)?;
    add_file(&mut t, &format!("{}.json", sha(&cfg)), &cfg)?;
    add_file(&mut t, &format!("blobs/sha256/{}", sha(&layer)), &layer)?;
    fs::write(out, t.into_inner()?).with_context(|| format!("write {}", out.display()))?;
    Ok(())
}

/// An OCI bundle in `bundle` for `runtime` (`runc` or `crun`): its own `spec` output with
/// `rootfs` (a copy of `rootfs`), `/bin/true` as the process, no terminal, and the cgroup
/// path `cgroups_path` (inside the benchmark's own subtree).
pub fn bundle(runtime: &str, rootfs_src: &Path, bundle: &Path, cgroups_path: &str) -> Result<()> {
    fs::create_dir_all(bundle)?;
    let ok = Command::new("cp")
        .arg("-a")
        .arg(rootfs_src)
        .arg(bundle.join("rootfs"))
        .status()?
        .success();
    if !ok {
        bail!("cp -a {} into {}", rootfs_src.display(), bundle.display());
    }
    let out = Command::new(runtime)
        .arg("spec")
        .current_dir(bundle)
        .output()
        .with_context(|| format!("run {runtime} spec"))?;
    if !out.status.success() {
        bail!(
            "{runtime} spec failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = bundle.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)?;
    cfg["root"]["path"] = "rootfs".into();
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] = serde_json::json!(["/bin/true"]);
    cfg["linux"]["cgroupsPath"] = cgroups_path.into();
    fs::write(&path, serde_json::to_vec_pretty(&cfg)?)?;
    Ok(())
}
