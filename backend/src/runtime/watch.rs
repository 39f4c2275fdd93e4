//! Exits noticed when they happen, not by polling: a pidfd of each live container's monitor
//! and init, awaited on the async runtime (a pidfd turns readable when its process exits,
//! also for processes that are not our children — monitors outlive the daemon). On a wake the
//! container is reconciled at once ([`Manager::reconcile_one`]: the exit recorded and billed,
//! its cgroup released, `--rm` and a restart after a lost monitor applied), and the watch is
//! armed again on the init a restart policy started.
//!
//! The periodic sweep ([`super::manager::SWEEP`]) stays as a safety net for what no pidfd
//! covers (a container whose watch could not be armed), at a cadence that costs nothing
//! noticeable at a thousand containers.
#![allow(unsafe_code)]

use std::{
    os::fd::{FromRawFd, OwnedFd},
    time::Duration,
};

use tokio::io::unix::AsyncFd;

use super::{Manager, manager::Record, state::alive};

/// How long to wait for the monitor's state file after an init exited while the monitor
/// lives (it writes the exit, then restarts the init or ends), at most.
const SETTLE: [Duration; 6] = [
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

/// `pidfd_open(pid)`, checked against the process's start time (a pid reused since is not
/// watched).
fn pidfd(pid: i32, start: u64) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers; the returned fd is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor the kernel just returned to us, owned nowhere else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Opened first, checked after: if the start time still matches, the fd is of that process.
    alive(pid, start).then_some(fd)
}

/// Resolves when the process behind `fd` has exited (or the fd cannot be polled).
async fn exited(fd: Option<&AsyncFd<OwnedFd>>) {
    match fd {
        Some(fd) => {
            let _ = fd.readable().await;
        }
        None => std::future::pending().await,
    }
}

impl Manager {
    /// Watches `r` until it is no longer live (one reconcile when it already is not, which
    /// applies `--rm`); a second call for a watched container does nothing. Needs the async runtime (from a blocking task too).
    pub(super) fn watch(&self, r: &Record) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.mark_watched(&r.id) {
            return;
        }
        let (m, id, name) = (self.clone(), r.id.clone(), r.name.clone());
        let (shim, init) = (r.shim_pid.zip(r.shim_start), r.init_pid.zip(r.init_start));
        rt.spawn(async move {
            m.watch_loop(&id, &name, shim, init).await;
            m.unmark_watched(&id);
        });
    }

    async fn watch_loop(
        &self,
        id: &str,
        name: &str,
        shim: Option<(i32, u64)>,
        init: Option<(i32, u64)>,
    ) {
        let open = |p: Option<(i32, u64)>| {
            let fd = p.and_then(|(pid, start)| pidfd(pid, start))?;
            // SAFETY: an OwnedFd's `as_raw_fd` is the same open descriptor for as long as the
            // AsyncFd owns it.
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
        };
        let mut shim_fd = open(shim);
        let mut init = init;
        let mut init_fd = open(init);
        if shim_fd.is_none() && init_fd.is_none() {
            // Both gone already (or never known): one reconcile records it.
            let _ = self.reconcile_one(name).await;
            return;
        }
        loop {
            // Both armed: any change of the record now comes through a write (this watch's
            // reconcile or an API action), so reads need not look at the monitor.
            self.set_armed(id, shim_fd.is_some() && init_fd.is_some());
            let monitor_ended = tokio::select! {
                () = exited(shim_fd.as_ref()) => true,
                () = exited(init_fd.as_ref()) => false,
            };
            // Settling: reads look at the monitor again until the watch is armed anew.
            self.set_armed(id, false);
            if monitor_ended {
                // Readable for good: the record says what comes next.
                shim_fd = None;
            }
            // The monitor writes the exit (and maybe starts the init again) a moment after the
            // init ended: look until the record moved on.
            let mut moved = false;
            for pause in SETTLE {
                tokio::time::sleep(pause).await;
                match self.reconcile_one(name).await {
                    Ok(Some(r)) if r.status().is_live() => {
                        let now = r.init_pid.zip(r.init_start);
                        if now != init {
                            // Restarted by its policy: watch the new init.
                            init = now;
                            init_fd = open(init);
                            moved = true;
                            break;
                        }
                    }
                    // Exited (and maybe removed): the watch is done.
                    Ok(_) => return,
                    Err(e) => {
                        tracing::debug!(container = name, error = %e, "watch: reconcile");
                        return;
                    }
                }
            }
            if !moved && !monitor_ended {
                // Still the same init after the monitor had its time: stop watching the dead
                // one; the monitor's exit (or the sweep) catches what comes next.
                init_fd = None;
            }
            if shim_fd.is_none() && init_fd.is_none() {
                return;
            }
        }
    }
}
