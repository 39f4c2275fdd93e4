//! The limits a group can carry, and the all-or-nothing plan that writes them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    CgroupError, fs,
    units::{CpuMax, Device, Max},
};

/// Every limit Corral sets, by its meaning (v1 and v2 file names differ, see each controller).
///
/// Read back ([`super::Group::limits`]): `None` means this host does not have the knob.
/// As an update ([`LimitsUpdate`]): `None` means "leave as it is".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// CPU bandwidth (`cpu.max`; v1 `cpu.cfs_quota_us` + `cpu.cfs_period_us`).
    pub cpu_max: Option<CpuMax>,
    /// CPU weight 1..=10000, default 100 (`cpu.weight`; v1 `cpu.shares`, converted).
    pub cpu_weight: Option<u64>,
    /// CPUs the group may run on, e.g. `0-1` (empty: the parent's).
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the group may allocate from, e.g. `0`.
    pub cpuset_mems: Option<String>,
    /// Hard memory limit in bytes (`memory.max`; v1 `memory.limit_in_bytes`).
    pub memory_max: Option<Max>,
    /// Throttling threshold (`memory.high`; no v1 equivalent).
    pub memory_high: Option<Max>,
    /// Best-effort protection (`memory.low`; v1 `memory.soft_limit_in_bytes`).
    pub memory_low: Option<Max>,
    /// Hard protection (`memory.min`; no v1 equivalent).
    pub memory_min: Option<Max>,
    /// Swap limit (`memory.swap.max`; v1 `memory.memsw.limit_in_bytes` = memory + swap).
    pub swap_max: Option<Max>,
    /// Maximum number of tasks (`pids.max`).
    pub pids_max: Option<Max>,
    /// Per-device bandwidth and IOPS limits (`io.max`; v1 `blkio.throttle.*`).
    pub io_max: Vec<IoMax>,
    /// IO weight 1..=10000, default 100 (`io.weight`; v1 `blkio.bfq.weight`/`blkio.weight`,
    /// converted).
    pub io_weight: Option<u64>,
}

/// An update of [`Limits`]: only the `Some` fields (and listed devices) change.
pub type LimitsUpdate = Limits;

/// The `io.max` line of one device. In an update, `None` fields are left as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoMax {
    pub device: Device,
    #[serde(default)]
    pub rbps: Option<Max>,
    #[serde(default)]
    pub wbps: Option<Max>,
    #[serde(default)]
    pub riops: Option<Max>,
    #[serde(default)]
    pub wiops: Option<Max>,
}

impl Limits {
    /// True when the update changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// One planned write with the value that undoes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    pub path: PathBuf,
    pub value: String,
    pub undo: String,
}

/// The writes of one update, built (and validated) before the first write happens.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub writes: Vec<Write>,
}

impl Plan {
    pub fn push(&mut self, path: PathBuf, value: String, undo: String) {
        self.writes.push(Write { path, value, undo });
    }

    /// Plans writing `value`, undone by writing back what the file holds now (trimmed).
    pub fn set(&mut self, path: PathBuf, value: String) -> Result<(), CgroupError> {
        let undo = fs::read(&path)?.trim_end().to_owned();
        self.push(path, value, undo);
        Ok(())
    }

    /// Writes everything in order; if the kernel refuses one, writes the undo values of the
    /// ones already done in reverse order, then returns the refusal.
    pub fn execute(self) -> Result<(), CgroupError> {
        for (i, w) in self.writes.iter().enumerate() {
            if let Err(e) = fs::write(&w.path, &w.value) {
                for done in self.writes[..i].iter().rev() {
                    if let Err(undo) = fs::write(&done.path, &done.undo) {
                        tracing::error!(error = %undo, "rolling back a refused cgroup change failed");
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_write_rolls_back_the_earlier_ones() {
        let dir = std::env::temp_dir().join(format!("corral-plan-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("not-a-file")).unwrap();
        std::fs::write(dir.join("a"), "old-a\n").unwrap();
        std::fs::write(dir.join("b"), "old-b\n").unwrap();
        let mut plan = Plan::default();
        plan.set(dir.join("a"), "new-a".into()).unwrap();
        plan.set(dir.join("b"), "new-b".into()).unwrap();
        // A directory cannot be written: the kernel-refusal stand-in.
        plan.push(dir.join("not-a-file"), "x".into(), String::new());
        let e = plan.execute().unwrap_err().to_string();
        assert!(e.contains("not-a-file"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.join("a")).unwrap().trim(),
            "old-a"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("b")).unwrap().trim(),
            "old-b"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn limits_json() {
        let l: Limits = serde_json::from_str(
            r#"{"cpu_max":{"quota":"max","period":100000},"memory_max":33554432,"io_max":[{"device":"8:0","rbps":1048576}]}"#,
        )
        .unwrap();
        assert_eq!(l.memory_max, Some(Max::Limit(32 << 20)));
        assert_eq!(l.io_max[0].device, Device { major: 8, minor: 0 });
        assert!(serde_json::from_str::<Limits>(r#"{"memroy_max":1}"#).is_err());
        assert!(Limits::default().is_empty());
    }
}
