//! `DIR/state.json`: what the monitor tells the daemon (and a restarted daemon) about the
//! container. Written tmp -> fsync -> rename -> fsync dir, so a reader sees an old or a new
//! state, never half of one.

use std::{
    fs,
    io::Write,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// The monitor's view of its container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimState {
    /// The monitor's PID and its start time (clock ticks since boot, /proc/PID/stat field 22).
    pub shim_pid: i32,
    pub shim_start: u64,
    /// The container init's host PID and start time, while it runs.
    pub init_pid: i32,
    pub init_start: u64,
    pub status: ShimStatus,
    pub exit_code: Option<i32>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub restart_count: u32,
    /// The monitor has finished: no restart will follow.
    pub done: bool,
}

/// Where the monitor is with its container's init; `state.json` keeps the lowercase names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShimStatus {
    /// The monitor is up; the init is not running yet.
    #[default]
    Starting,
    Running,
    /// The init has exited (a restart may follow unless `done`).
    Exited,
}

impl ShimState {
    pub fn read(path: &Path) -> Option<Self> {
        let data = fs::read(path).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Writes `self` to `path` atomically and durably.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(path, &data)
    }
}

/// tmp -> fsync -> rename -> fsync dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The start time of `pid` (field 22 of /proc/PID/stat), or `None` when it does not exist.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts with " state ..." = field 3; start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is alive, started at `start`, and not a zombie.
pub fn alive(pid: i32, start: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let mut fields = stat[close + 1..].split_whitespace();
    let state = fields.next().unwrap_or("X");
    if state == "Z" || state == "X" {
        return false;
    }
    proc_start_time(pid) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_stable_and_alive() {
        let pid = std::process::id() as i32;
        let t = proc_start_time(pid).unwrap();
        assert_eq!(proc_start_time(pid), Some(t));
        assert!(alive(pid, t));
        assert!(!alive(pid, t + 1));
        assert_eq!(proc_start_time(-1), None);
    }

    #[test]
    fn atomic_write_round_trips() {
        let dir = std::env::temp_dir().join(format!("corral-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.json");
        let s = ShimState {
            status: ShimStatus::Running,
            init_pid: 7,
            ..Default::default()
        };
        s.write(&p).unwrap();
        assert_eq!(ShimState::read(&p), Some(s));
        fs::remove_dir_all(&dir).unwrap();
    }
}
