//! Checkpoint and restore through CRIU (issue 18): whether this host can, found once.
//!
//! Corral does not reimplement process dumping: like Podman it drives Debian's `criu`. Whether
//! that works depends on the kernel (criu 3.17's `criu check` fails on 6.18 with
//! "Unexpected rt vDSO area bounds"), so the daemon finds `criu` on its PATH and runs
//! `criu check` once, bounded in time, and keeps the answer ([`support`]). `corral info` and
//! `GET /api/v1/host` show it; the checkpoint and restore routes answer with its reason and
//! change nothing when it says no — never a half-made checkpoint.
#![allow(unsafe_code)]

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// How long `criu check` (and `criu --version`) may take before the probe gives up.
const PROBE_DEADLINE: Duration = Duration::from_secs(20);

/// The probe's answer, kept for the daemon's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    pub available: bool,
    /// Why not (empty when available).
    pub reason: String,
    pub version: Option<String>,
    pub path: Option<PathBuf>,
}

static SUPPORT: OnceLock<Support> = OnceLock::new();

/// Whether checkpoints work here: the first call probes (blocking, at most about 40 s: run it
/// off the async runtime), later ones answer at once.
pub fn support() -> &'static Support {
    SUPPORT.get_or_init(probe)
}

/// Finds `criu` on the PATH and asks it.
fn probe() -> Support {
    let Some(path) = find_on_path("criu", std::env::var_os("PATH").as_deref()) else {
        return Support {
            available: false,
            reason: "criu is not installed (not found on the daemon's PATH; apt-get install criu)"
                .to_owned(),
            version: None,
            path: None,
        };
    };
    let version = run_bounded(&path, &["--version"])
        .ok()
        .and_then(|(_, out)| parse_version(&out));
    let (available, reason) = match run_bounded(&path, &["check"]) {
        Ok((true, _)) => (true, String::new()),
        Ok((false, out)) => (false, format!("criu check failed: {}", check_reason(&out))),
        Err(e) => (false, format!("criu check could not run: {e}")),
    };
    if !available {
        tracing::info!(%reason, "checkpoint and restore are unavailable");
    }
    Support {
        available,
        reason,
        version,
        path: Some(path),
    }
}

/// The first executable file `name` in the `:`-separated `path` list.
fn find_on_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `bin args` with no input, stdout and stderr together, killed at [`PROBE_DEADLINE`]:
/// (exited with 0, its output).
fn run_bounded(bin: &Path, args: &[&str]) -> Result<(bool, String), String> {
    run_for(bin, args, PROBE_DEADLINE)
}

/// [`run_bounded`] with its own deadline.
fn run_for(bin: &Path, args: &[&str], deadline: Duration) -> Result<(bool, String), String> {
    let (mut reader, writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let writer2 = writer.try_clone().map_err(|e| format!("pipe: {e}"))?;
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {} took longer than {} s",
                    bin.display(),
                    args.join(" "),
                    deadline.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", bin.display())),
        }
    };
    // The child is gone and `Command` dropped its copies of the writing ends: EOF follows.
    let mut out = Vec::new();
    let _ = reader.by_ref().take(64 * 1024).read_to_end(&mut out);
    Ok((status.success(), String::from_utf8_lossy(&out).into_owned()))
}

/// `Version: 3.17.1` → `3.17.1`.
fn parse_version(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// criu's error lines without their `Error (file.c:NN): ` prefixes and the uninformative
/// `exited, status=N` of its helper children, joined with `; `.
fn check_reason(out: &str) -> String {
    let lines: Vec<&str> = out
        .lines()
        .map(|l| {
            let l = l.trim();
            match l.strip_prefix("Error (").and_then(|r| r.split_once("): ")) {
                Some((_, msg)) => msg.trim(),
                None => l,
            }
        })
        .filter(|l| !l.is_empty() && !l.starts_with("exited, status="))
        .collect();
    if lines.is_empty() {
        "it said nothing".to_owned()
    } else {
        lines.join("; ")
    }
}

/// How long a dump may take before it is given up (criu is killed; the container's processes
/// are resumed by the kernel when their tracer dies).
const DUMP_DEADLINE: Duration = Duration::from_secs(600);

/// The key under which a container's own network namespace is dumped as external: its
/// restore joins a namespace the daemon prepared (the bridge address, routes and published
/// ports set up as for a start) instead of recreating one.
pub const EXTERNAL_NETNS: &str = "extnetns";

/// A stored checkpoint: `<state>/checkpoints/<name>/`, kept after the container is removed so
/// it can be restored (under its own name or another).
#[derive(Debug, Clone)]
pub struct Stored(pub PathBuf);

impl Stored {
    /// criu's image files.
    pub fn images(&self) -> PathBuf {
        self.0.join("images")
    }
    /// [`Meta`] as JSON.
    pub fn meta(&self) -> PathBuf {
        self.0.join("checkpoint.json")
    }
    /// The container's writable layer as an OCI layer tarball (whiteouts as `.wh.` entries).
    pub fn rootfs_diff(&self) -> PathBuf {
        self.0.join("rootfs-diff.tar")
    }
    pub fn read_meta(&self) -> Result<Meta, String> {
        let p = self.meta();
        let data = std::fs::read(&p).map_err(|e| format!("read {}: {e}", p.display()))?;
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", p.display()))
    }
}

/// What a checkpoint knows of the container it was taken of.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// The format's version (1).
    pub version: u32,
    pub id: String,
    pub name: String,
    pub team: String,
    /// The container's spec: a restore under another name creates the container from it.
    pub spec: wire::CreateContainer,
    /// When the dump ended (unix seconds).
    pub created_at: i64,
    /// The init's standard descriptors that are pipes to the monitor: `(fd, "pipe:[INODE]")`.
    /// A restore hands criu new pipes in their place (`--inherit-fd`).
    pub pipes: Vec<(i32, String)>,
    /// The container had a network namespace of its own, dumped as [`EXTERNAL_NETNS`].
    pub external_netns: bool,
    pub criu_version: Option<String>,
    /// Bytes of the images and the layer, counted once when written (0 in a checkpoint
    /// written before this field: then counted on reading).
    #[serde(default)]
    pub size_bytes: u64,
}

/// What the monitor needs to restore instead of starting: written by the daemon to
/// `restore.json` in the container's directory, removed once the restore was tried.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RestorePlan {
    pub criu: PathBuf,
    pub images: PathBuf,
    pub pipes: Vec<(i32, String)>,
    pub external_netns: bool,
}

/// The inode of `/proc/PID/ns/net`, when it differs from ours (the container has its own).
pub fn own_netns_inode(pid: i32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?.ino();
    let ours = std::fs::metadata("/proc/self/ns/net").ok()?.ino();
    (theirs != ours).then_some(theirs)
}

/// fds 0-2 of `pid` that are pipes: `(fd, "pipe:[INODE]")`.
pub fn std_pipes(pid: i32) -> Vec<(i32, String)> {
    (0..3)
        .filter_map(|fd| {
            let l = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
            let l = l.to_str()?.to_owned();
            l.starts_with("pipe:[").then_some((fd, l))
        })
        .collect()
}

/// Options both dump and restore take: criu's log, bind mounts from the host (device nodes,
/// /etc/hosts, volumes) found and re-bound by path, and the cgroups left to Corral (the
/// daemon made the container's cgroup with its limits; the restore runs inside it).
fn common_args(args: &mut Vec<String>, log: &str) {
    for a in [
        "-o",
        log,
        "-v4",
        "--ext-mount-map",
        "auto",
        "--enable-external-masters",
        "--manage-cgroups=ignore",
        "--tcp-close",
        "--file-locks",
        "--network-lock",
        "nftables",
    ] {
        args.push(a.to_owned());
    }
}

/// Dumps the process tree of `pid` into `images` (which must exist and be empty). criu stops
/// the tree for the dump and kills it after, unless `leave_running`. On failure the tree runs
/// on and the error is the end of criu's log.
pub fn dump(
    criu: &Path,
    pid: i32,
    images: &Path,
    work: &Path,
    leave_running: bool,
    netns: Option<u64>,
) -> Result<(), String> {
    std::fs::create_dir_all(work).map_err(|e| format!("mkdir {}: {e}", work.display()))?;
    let mut args = vec![
        "dump".to_owned(),
        "-t".to_owned(),
        pid.to_string(),
        "-D".to_owned(),
        images.display().to_string(),
        "-W".to_owned(),
        work.display().to_string(),
    ];
    common_args(&mut args, "dump.log");
    if let Some(ino) = netns {
        // Its links, addresses and routes are Corral's to make again (the restore joins a
        // namespace set up as for a start): criu neither dumps nor restores them.
        args.push("--external".to_owned());
        args.push(format!("net[{ino}]:{EXTERNAL_NETNS}"));
        args.push("--empty-ns".to_owned());
        args.push("net".to_owned());
    }
    if leave_running {
        args.push("--leave-running".to_owned());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    match run_for(criu, &argv, DUMP_DEADLINE) {
        Ok((true, _)) => Ok(()),
        Ok((false, out)) => Err(format!(
            "criu dump failed: {}{}",
            log_tail(&work.join("dump.log"), &out),
            said(&out)
        )),
        Err(e) => Err(e),
    }
}

/// criu locks a dumped tree's network with an nftables table (`CRIU-…`, dropping every
/// packet) and, when it ends the tree, leaves the lock for its restore to lift. A namespace of
/// Corral's outlives the tree (the bridge's, kept for the next start or restore), and criu's
/// restore does not unlock a namespace it did not make: so the lock goes right after the dump.
/// `netns` is the namespace (opened before the dump).
pub fn drop_network_lock(netns: &std::fs::File) -> Result<(), String> {
    use std::os::{fd::AsRawFd, unix::process::CommandExt};
    let nft = crate::network::nat::nft_binary().ok_or("nft is not installed")?;
    let fd = netns.as_raw_fd();
    let run = |args: &[&str]| -> Result<String, String> {
        let mut cmd = Command::new(&nft);
        cmd.args(args).stdin(Stdio::null());
        // SAFETY: between fork and exec only setns(2) runs, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd
            .output()
            .map_err(|e| format!("{}: {e}", nft.display()))?;
        if !out.status.success() {
            return Err(format!(
                "nft {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let tables = run(&["list", "tables"])?;
    for (family, name) in criu_lock_tables(&tables) {
        run(&["delete", "table", family, name])?;
    }
    Ok(())
}

/// `(family, name)` of the tables criu's network lock made, from `nft list tables`.
fn criu_lock_tables(listing: &str) -> Vec<(&str, &str)> {
    listing
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("table"), Some(family), Some(name)) if name.starts_with("CRIU") => {
                    Some((family, name))
                }
                _ => None,
            }
        })
        .collect()
}

/// The arguments of `criu restore` for `plan`, with the monitor's descriptors: the new pipes
/// at `pipe_fds` (same order as `plan.pipes`) and the network namespace at `netns_fd`.
pub fn restore_args(
    plan: &RestorePlan,
    root: &Path,
    work: &Path,
    pidfile: &Path,
    pipe_fds: &[i32],
    netns_fd: Option<i32>,
) -> Vec<String> {
    let mut args = vec![
        "restore".to_owned(),
        "-D".to_owned(),
        plan.images.display().to_string(),
        "-W".to_owned(),
        work.display().to_string(),
        "--root".to_owned(),
        root.display().to_string(),
        "--restore-sibling".to_owned(),
        "--restore-detached".to_owned(),
        "--pidfile".to_owned(),
        pidfile.display().to_string(),
    ];
    common_args(&mut args, "restore.log");
    for ((_, res), fd) in plan.pipes.iter().zip(pipe_fds) {
        args.push("--inherit-fd".to_owned());
        args.push(format!("fd[{fd}]:{res}"));
    }
    if let Some(fd) = netns_fd {
        args.push("--inherit-fd".to_owned());
        args.push(format!("fd[{fd}]:{EXTERNAL_NETNS}"));
    }
    args
}

/// The last error and warning lines of criu's log without their timestamps (or the log's last
/// lines, or its output, when it has none), then where the whole log is.
pub fn log_tail(log: &Path, out: &str) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let strip = |l: &str| -> String {
        let l = l.trim();
        match l.strip_prefix('(').and_then(|r| r.split_once(") ")) {
            Some((ts, rest)) if ts.chars().all(|c| c.is_ascii_digit() || c == '.') => {
                rest.to_owned()
            }
            _ => l.to_owned(),
        }
    };
    let lines: Vec<String> = text.lines().map(strip).collect();
    let mut pick: Vec<&String> = lines
        .iter()
        .filter(|l| {
            (l.starts_with("Error") || l.starts_with("Warn"))
                && !l.ends_with("Dumping FAILED.")
                && !l.ends_with("Restoring FAILED.")
        })
        .collect();
    if pick.is_empty() {
        pick = lines.iter().filter(|l| !l.is_empty()).collect();
    }
    let pick: Vec<String> = pick[pick.len().saturating_sub(8)..]
        .iter()
        .map(|l| (*l).clone())
        .collect();
    let mut r = if pick.is_empty() {
        check_reason(out)
    } else {
        check_reason(&pick.join("\n"))
    };
    if r.len() > 2000 {
        let cut = r.len() - 2000;
        let cut = (cut..r.len())
            .find(|i| r.is_char_boundary(*i))
            .unwrap_or(cut);
        r = format!("…{}", &r[cut..]);
    }
    if log.exists() {
        r.push_str(&format!(" (criu's log: {})", log.display()));
    }
    r
}

/// What criu printed itself (not into its log), as `; criu said: …`, or nothing.
fn said(out: &str) -> String {
    let out = out.trim();
    if out.is_empty() {
        String::new()
    } else {
        format!("; criu said: {}", check_reason(out))
    }
}

/// Writes the writable layer `upper` as an OCI layer tarball at `out`: overlayfs whiteouts
/// (0:0 character devices) become `.wh.NAME` files and opaque directories get `.wh..wh..opq`,
/// so [`crate::image::unpack::unpack_layer`] turns it back into the same layer. Returns its
/// size.
pub fn write_layer(upper: &Path, out: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let f = private_file(out)?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    b.follow_symlinks(false);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = upper.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let name = rel.join(e.file_name());
            let m = e.metadata()?;
            let ft = m.file_type();
            if ft.is_char_device() && m.rdev() == 0 {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o644);
                h.set_mtime(m.mtime().max(0) as u64);
                let wh = rel.join(format!(".wh.{}", e.file_name().to_string_lossy()));
                b.append_data(&mut h, wh, std::io::empty())?;
                continue;
            }
            if ft.is_socket() {
                continue;
            }
            b.append_path_with_name(e.path(), &name)?;
            if ft.is_dir() {
                if is_opaque(&e.path()) {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(0);
                    h.set_mode(0o644);
                    b.append_data(&mut h, name.join(".wh..wh..opq"), std::io::empty())?;
                }
                stack.push(name);
            }
        }
    }
    finish(b)
}

/// Ends a tarball written to a new file: flushed, synced; its size.
fn finish(b: tar::Builder<std::io::BufWriter<std::fs::File>>) -> std::io::Result<u64> {
    let mut w = b.into_inner()?;
    std::io::Write::flush(&mut w)?;
    let f = w
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    f.sync_all()?;
    f.metadata().map(|m| m.len())
}

/// Whether overlayfs marked `dir` opaque (`trusted.overlay.opaque` = `y`).
fn is_opaque(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut v = [0u8; 2];
    // SAFETY: both strings are NUL-terminated and `v` is a buffer of the length passed.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}

/// A new file only root may read (0600, whatever the umask): a checkpoint holds the
/// container's memory and files, secrets included.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes the stored checkpoint `from` as one tarball at `to` (which must not exist).
pub fn export(from: &Stored, to: &Path) -> std::io::Result<u64> {
    let f = private_file(to)?;
    let made = (|| {
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        b.follow_symlinks(false);
        b.append_dir_all(".", &from.0)?;
        finish(b)
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(to);
    }
    made
}

/// Unpacks an exported checkpoint `from` into the empty directory `into` (with the image
/// layers' safe extractor: nothing outside `into`, no device nodes).
pub fn import(from: &Path, into: &Path) -> Result<Stored, String> {
    let f = std::fs::File::open(from).map_err(|e| format!("open {}: {e}", from.display()))?;
    crate::image::unpack::unpack_layer(std::io::BufReader::new(f), into, false)
        .map_err(|e| format!("{}: {e}", from.display()))?;
    let s = Stored(into.to_owned());
    for need in [s.meta(), s.rootfs_diff(), s.images().join("inventory.img")] {
        if !need.exists() {
            return Err(format!(
                "{} is no Corral checkpoint: it lacks {}",
                from.display(),
                need.strip_prefix(into).unwrap_or(&need).display()
            ));
        }
    }
    Ok(s)
}

/// Bytes under `dir` (files only).
pub fn size_of(dir: &Path) -> u64 {
    crate::image::tree_size(dir)
}

impl Support {
    /// The wire form (`GET /api/v1/host`'s `checkpoint`).
    pub fn to_wire(&self) -> wire::CheckpointSupport {
        wire::CheckpointSupport {
            available: self.available,
            reason: self.reason.clone(),
            version: self.version.clone(),
            path: self.path.as_ref().map(|p| p.display().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_3_17s_vdso_failure_is_said_in_its_own_words() {
        let out = "Error (criu/util.c:642): exited, status=1\n\
                   Error (criu/util.c:642): exited, status=1\n\
                   Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n\
                   Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable\n\
                   Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing kerndat.\n\
                   Error (criu/crtools.c:260): Could not initialize kernel features detection.\n";
        assert_eq!(
            check_reason(out),
            "vdso: Unexpected rt vDSO area bounds; vdso: Failed to fill self vdso symtable; \
             kerndat_vdso_fill_symtable failed when initializing kerndat.; \
             Could not initialize kernel features detection."
        );
        assert_eq!(check_reason("\n"), "it said nothing");
        assert_eq!(
            check_reason("Warn: something odd\n"),
            "Warn: something odd",
            "a line without criu's prefix is kept as it is"
        );
    }

    #[test]
    fn an_export_and_a_layer_are_readable_by_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("corral-ckpt-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let stored = Stored(dir.join("stored"));
        std::fs::create_dir_all(stored.images()).unwrap();
        std::fs::write(stored.images().join("pages-1.img"), b"secret memory").unwrap();
        let upper = dir.join("upper");
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::write(upper.join("token"), b"secret file").unwrap();
        let tar = dir.join("export.tar");
        assert!(export(&stored, &tar).unwrap() > 0);
        let layer = dir.join("layer.tar");
        assert!(write_layer(&upper, &layer).unwrap() > 0);
        for f in [&tar, &layer] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        assert!(
            export(&stored, &tar).is_err(),
            "an existing file is never overwritten"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn criu_lock_tables_are_found_among_others() {
        let listing = "table inet corral-nat\ntable inet CRIU-1234\ntable ip filter\n";
        assert_eq!(criu_lock_tables(listing), vec![("inet", "CRIU-1234")]);
        assert!(criu_lock_tables("").is_empty());
    }

    #[test]
    fn version_and_path_lookup() {
        assert_eq!(
            parse_version("Version: 3.17.1\n").as_deref(),
            Some("3.17.1")
        );
        assert_eq!(parse_version("GitID: v3.17\n"), None);
        let dir = std::env::temp_dir().join(format!("corral-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(find_on_path("criu", Some(dir.as_os_str())), None);
        let sh = find_on_path("sh", Some(std::ffi::OsStr::new("/nonexistent:/bin")));
        assert_eq!(sh.as_deref(), Some(Path::new("/bin/sh")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_commands_output_and_exit_status_are_read() {
        let (ok, out) =
            run_bounded(Path::new("/bin/sh"), &["-c", "echo out; echo err >&2"]).expect("runs");
        assert!(ok);
        assert_eq!(out, "out\nerr\n");
        let (ok, _) = run_bounded(Path::new("/bin/sh"), &["-c", "exit 1"]).expect("runs");
        assert!(!ok);
    }
}
