//! Checkpoint and restore through CRIU (issue 18): whether this host can, found once.
//!
//! Corral does not reimplement process dumping: like Podman it drives Debian's `criu`. Whether
//! that works depends on the kernel (criu 3.17's `criu check` fails on 6.18 with
//! "Unexpected rt vDSO area bounds"), so the daemon finds `criu` on its PATH and runs
//! `criu check` once, bounded in time, and keeps the answer ([`support`]). `corral info` and
//! `GET /api/v1/host` show it; the checkpoint and restore routes answer with its reason and
//! change nothing when it says no — never a half-made checkpoint.

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
            Ok(None) if start.elapsed() < PROBE_DEADLINE => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {} took longer than {} s",
                    bin.display(),
                    args.join(" "),
                    PROBE_DEADLINE.as_secs()
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
