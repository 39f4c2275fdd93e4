//! Fault injection for the crash tests, in builds with the `fault-injection` feature only (the
//! tests crate turns it on; release builds have no such hook): when `DIR/.crash-at` holds
//! `point`, the file is removed and the daemon SIGKILLs itself there, as a crash would. The
//! file lives in the root-only state directory; nothing else writes it.

use std::path::Path;

/// The marker's name in the directory the caller names.
pub const CRASH_AT: &str = ".crash-at";

#[cfg(not(feature = "fault-injection"))]
pub fn crash_point(_dir: &Path, _point: &str) {}

#[cfg(feature = "fault-injection")]
pub fn crash_point(dir: &Path, point: &str) {
    let marker = dir.join(CRASH_AT);
    if std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == point) {
        let _ = std::fs::remove_file(&marker);
        tracing::warn!(point, "fault injection: killing the daemon");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
}
