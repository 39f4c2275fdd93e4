//! Freezing a group: core `cgroup.freeze` on cgroup2 (also on hybrid hosts, whose unified tree
//! has it), `freezer.state` on v1. Both wait until the kernel reports the new state.

use std::time::{Duration, Instant};

use super::{CgroupError, Controller, Group, fs};

/// v2: write `1` to freeze, `0` to thaw.
pub const V2_FREEZE: &str = "cgroup.freeze";
/// v2: `frozen 0|1` and `populated 0|1`.
pub const V2_EVENTS: &str = "cgroup.events";
/// v1: `THAWED`, `FREEZING` or `FROZEN`.
pub const V1_STATE: &str = "freezer.state";

const TIMEOUT: Duration = Duration::from_secs(5);

/// The file this host freezes with, if any.
pub(crate) fn method(g: &Group) -> Option<&'static str> {
    g.place(Controller::Freezer)
        .map(|p| if p.v2 { V2_FREEZE } else { V1_STATE })
}

fn no_freezer() -> CgroupError {
    CgroupError::Unsupported {
        field: "freeze",
        reason: "neither cgroup.freeze nor the v1 freezer is available".into(),
    }
}

pub(crate) fn is_frozen(g: &Group) -> Option<bool> {
    let p = g.place(Controller::Freezer)?;
    if p.v2 {
        fs::read_opt(&p.dir.join(V2_EVENTS))
            .and_then(|t| fs::flat_get(&t, "frozen"))
            .map(|f| f == 1)
    } else {
        fs::read_opt(&p.dir.join(V1_STATE)).map(|t| t.trim() == "FROZEN")
    }
}

pub(crate) fn freeze(g: &Group) -> Result<(), CgroupError> {
    set(g, true)
}

pub(crate) fn thaw(g: &Group) -> Result<(), CgroupError> {
    set(g, false)
}

fn set(g: &Group, frozen: bool) -> Result<(), CgroupError> {
    let p = g.place(Controller::Freezer).ok_or_else(no_freezer)?;
    let (file, value, what) = if p.v2 {
        (
            p.dir.join(V2_FREEZE),
            if frozen { "1" } else { "0" },
            if frozen { "frozen 1" } else { "frozen 0" },
        )
    } else {
        (
            p.dir.join(V1_STATE),
            if frozen { "FROZEN" } else { "THAWED" },
            if frozen { "FROZEN" } else { "THAWED" },
        )
    };
    let start = Instant::now();
    let mut delay = Duration::from_micros(200);
    fs::write(&file, value)?;
    loop {
        if is_frozen(g) == Some(frozen) {
            return Ok(());
        }
        if start.elapsed() > TIMEOUT {
            if frozen {
                // Leave the group running rather than half frozen.
                let _ = fs::write(&file, if p.v2 { "0" } else { "THAWED" });
            }
            return Err(CgroupError::Timeout {
                path: file,
                what,
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
        // v1 may stay FREEZING while a task is in an uninterruptible sleep: ask again (runc).
        if !p.v2 && frozen {
            fs::write(&file, value)?;
        }
    }
}
