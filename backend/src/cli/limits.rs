//! The knob flags of `corral run` and `corral update`, in Docker's spellings, and their
//! translation into the API's limits: a `wire::LimitsPatch` for `update` (every flag also takes
//! `max`: back to no limit), a `wire::Limits` for `run`.

use anyhow::{Context, bail};
use clap::Args;
use wire::{Limits, LimitsPatch, Setting};

use super::containers::parse_size;
use crate::{
    cgroup::{IoMax, Max, parse_device, parse_io_max_line, units},
    client::ClientError,
};

/// Every limit a container can have; unnamed limits stay as they are (`update`) or unset
/// (`run`). In `corral update` each flag takes `max` to remove that limit.
#[derive(Debug, Clone, Args, Default)]
pub struct LimitArgs {
    /// CPUs worth of time, e.g. 0.5.
    #[arg(long, value_parser = cpus_or_max)]
    pub cpus: Option<Setting<f64>>,
    /// Relative CPU weight 1..10000 (default 100).
    #[arg(long, value_parser = count_or_max, conflicts_with = "cpu_shares")]
    pub cpu_weight: Option<Setting<u64>>,
    /// Docker's CPU shares 2..262144 (default 1024), converted to the weight.
    #[arg(long, value_parser = count_or_max)]
    pub cpu_shares: Option<Setting<u64>>,
    /// CPUs the container may run on, e.g. 0-1,3 (max: the parent's).
    #[arg(long, visible_alias = "cpuset", value_parser = list_or_max)]
    pub cpuset_cpus: Option<Setting<String>>,
    /// Memory nodes it may allocate from, e.g. 0 (max: the parent's).
    #[arg(long, value_parser = list_or_max)]
    pub cpuset_mems: Option<Setting<String>>,
    /// Hard memory limit, e.g. 256M, 1.5G.
    #[arg(short, long, value_parser = size_or_max)]
    pub memory: Option<Setting<u64>>,
    /// Memory throttling threshold (cgroup v2 memory.high).
    #[arg(long, value_parser = size_or_max)]
    pub memory_high: Option<Setting<u64>>,
    /// Best-effort memory protection (memory.low; v1 soft limit). Docker's
    /// --memory-reservation is the same knob on cgroup v2.
    #[arg(long, visible_alias = "memory-reservation", value_parser = size_or_max)]
    pub memory_low: Option<Setting<u64>>,
    /// Hard memory protection, never reclaimed (memory.min; cgroup v2 only, a v1 host
    /// refuses it; -1 or max: none).
    #[arg(long, value_parser = size_or_max, allow_hyphen_values = true)]
    pub memory_min: Option<Setting<u64>>,
    /// Swap on top of the memory limit.
    #[arg(long, value_parser = size_or_max, conflicts_with = "memory_swap")]
    pub swap: Option<Setting<u64>>,
    /// Docker's memory + swap total (needs a memory limit; -1 or max: unlimited swap).
    #[arg(long, value_parser = size_or_max, allow_hyphen_values = true)]
    pub memory_swap: Option<Setting<u64>>,
    /// Most processes and threads (-1 or max: no limit).
    #[arg(long, visible_alias = "pids", value_parser = count_or_max, allow_hyphen_values = true)]
    pub pids_limit: Option<Setting<u64>>,
    /// Relative IO weight 1..10000 (default 100).
    #[arg(long, value_parser = count_or_max, conflicts_with = "blkio_weight")]
    pub io_weight: Option<Setting<u64>>,
    /// Docker's block-IO weight 10..1000, converted to the IO weight.
    #[arg(long, value_parser = count_or_max)]
    pub blkio_weight: Option<Setting<u64>>,
    /// Read bytes per second of a device, DEVICE:RATE (e.g. /dev/vda:10M or 8:0:10M; RATE max
    /// removes it; a bare max removes it from every device). Repeatable.
    #[arg(long, value_name = "DEVICE:RATE")]
    pub device_read_bps: Vec<String>,
    /// Write bytes per second of a device, DEVICE:RATE. Repeatable.
    #[arg(long, value_name = "DEVICE:RATE")]
    pub device_write_bps: Vec<String>,
    /// Read operations per second of a device, DEVICE:RATE. Repeatable.
    #[arg(long, value_name = "DEVICE:RATE")]
    pub device_read_iops: Vec<String>,
    /// Write operations per second of a device, DEVICE:RATE. Repeatable.
    #[arg(long, value_name = "DEVICE:RATE")]
    pub device_write_iops: Vec<String>,
}

/// The flag of `corral run`/`update` that sets the API's limit field `field` (`limits.cpus`).
fn flag_of(field: &str) -> Option<&'static str> {
    Some(match field.strip_prefix("limits.")? {
        "cpus" => "--cpus",
        "cpu_weight" => "--cpu-weight/--cpu-shares",
        "cpuset_cpus" => "--cpuset-cpus",
        "cpuset_mems" => "--cpuset-mems",
        "memory_max" => "--memory",
        "memory_high" => "--memory-high",
        "memory_low" => "--memory-low",
        "memory_min" => "--memory-min",
        "swap_max" => "--swap/--memory-swap",
        "pids_max" => "--pids-limit",
        "io_weight" => "--io-weight/--blkio-weight",
        "io_max" => "--device-*",
        _ => return None,
    })
}

/// A daemon refusal of a limit, worded with the flag the user typed (`--cpus: 0 must be …`)
/// instead of the API's field name; any other error as it is.
pub fn name_the_flag(e: anyhow::Error) -> anyhow::Error {
    let flag = match e.downcast_ref::<ClientError>() {
        Some(ClientError::Api {
            field: Some(f),
            message,
            ..
        }) => flag_of(f).map(|flag| format!("{flag}: {message}")),
        _ => None,
    };
    match flag {
        Some(m) => anyhow::anyhow!(m),
        None => e,
    }
}

/// `max` (and Docker's `-1`) is "no limit".
fn or_max<T>(s: &str, f: impl Fn(&str) -> Result<T, String>) -> Result<Setting<T>, String> {
    if s.eq_ignore_ascii_case("max") || s == "-1" {
        Ok(Setting::Clear)
    } else {
        f(s).map(Setting::Set)
    }
}

pub(super) fn cpus_or_max(s: &str) -> Result<Setting<f64>, String> {
    or_max(s, |t| {
        t.parse::<f64>()
            .map_err(|_| format!("{t:?} is not a number of CPUs, e.g. 1.5, or max"))
    })
}

pub(super) fn count_or_max(s: &str) -> Result<Setting<u64>, String> {
    or_max(s, |t| {
        t.parse::<u64>()
            .map_err(|_| format!("{t:?} is not a whole number or max"))
    })
}

pub(super) fn size_or_max(s: &str) -> Result<Setting<u64>, String> {
    or_max(s, parse_size)
}

pub(super) fn list_or_max(s: &str) -> Result<Setting<String>, String> {
    or_max(s, |t| Ok(t.to_owned()))
}

/// Which `io.max` key a device flag sets.
#[derive(Clone, Copy)]
enum IoKey {
    Rbps,
    Wbps,
    Riops,
    Wiops,
}

impl LimitArgs {
    /// True when some flag needs the container's current limits (`--memory-swap` is a total
    /// over the memory limit; device flags change one key of one device's line).
    pub fn needs_current(&self) -> bool {
        self.memory_swap.is_some() || !self.io_flags().is_empty()
    }

    fn io_flags(&self) -> Vec<(IoKey, &str)> {
        let mut out = Vec::new();
        for (key, vals) in [
            (IoKey::Rbps, &self.device_read_bps),
            (IoKey::Wbps, &self.device_write_bps),
            (IoKey::Riops, &self.device_read_iops),
            (IoKey::Wiops, &self.device_write_iops),
        ] {
            out.extend(vals.iter().map(|v| (key, v.as_str())));
        }
        out
    }

    /// The patch these flags make over `current` (the container's stored limits).
    pub fn to_patch(&self, current: &Limits) -> anyhow::Result<LimitsPatch> {
        let keep = |o: &Option<Setting<u64>>| o.clone().unwrap_or_default();
        let convert = |o: &Option<Setting<u64>>, f: fn(u64) -> u64| match o {
            Some(Setting::Set(v)) => Setting::Set(f(*v)),
            other => other.clone().unwrap_or_default(),
        };
        let cpu_weight = match &self.cpu_shares {
            Some(_) => convert(&self.cpu_shares, units::shares_to_weight),
            None => keep(&self.cpu_weight),
        };
        let io_weight = match &self.blkio_weight {
            Some(_) => convert(&self.blkio_weight, units::blkio_weight_to_io_weight),
            None => keep(&self.io_weight),
        };
        let memory_max = keep(&self.memory);
        let swap_max = match &self.memory_swap {
            None => keep(&self.swap),
            Some(total) => swap_of_total(total, &memory_max, current.memory_max)?,
        };
        Ok(LimitsPatch {
            cpus: self.cpus.clone().unwrap_or_default(),
            cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
            cpuset_mems: self.cpuset_mems.clone().unwrap_or_default(),
            cpu_weight,
            memory_max,
            memory_high: keep(&self.memory_high),
            memory_low: keep(&self.memory_low),
            memory_min: keep(&self.memory_min),
            swap_max,
            pids_max: keep(&self.pids_limit),
            io_weight,
            io_max: self.io_patch(&current.io_max)?,
        })
    }

    /// The limits of a new container (`corral run`): `max` is refused, no limit is the absence
    /// of the flag.
    pub fn to_limits(&self) -> anyhow::Result<Limits> {
        let patch = self.to_patch(&Limits::default())?;
        let v = serde_json::to_value(&patch)?;
        if let Some(f) = v
            .as_object()
            .and_then(|o| o.iter().find(|(_, v)| v.is_null()))
        {
            bail!(
                "{}: max (no limit) is for corral update; leave the flag out instead",
                f.0
            );
        }
        Ok(patch.merge(&Limits::default()))
    }

    /// The device lines after the device flags, or `Keep` without any.
    fn io_patch(&self, current: &[String]) -> anyhow::Result<Setting<Vec<String>>> {
        let flags = self.io_flags();
        if flags.is_empty() {
            return Ok(Setting::Keep);
        }
        let mut lines: Vec<IoMax> = current
            .iter()
            .filter_map(|l| parse_io_max_line(l).ok())
            .collect();
        for (key, v) in flags {
            apply_io_flag(&mut lines, key, v)?;
        }
        let out: Vec<String> = lines.iter().filter_map(render_line).collect();
        Ok(if out.is_empty() {
            Setting::Clear
        } else {
            Setting::Set(out)
        })
    }
}

/// Docker's `--memory-swap` (memory + swap) as the swap part: needs the memory limit, the one
/// given or the container's.
fn swap_of_total(
    total: &Setting<u64>,
    memory: &Setting<u64>,
    current_memory: Option<u64>,
) -> anyhow::Result<Setting<u64>> {
    let Setting::Set(total) = total else {
        return Ok(Setting::Clear);
    };
    let memory = match memory {
        Setting::Set(m) => *m,
        Setting::Keep => current_memory.context("--memory-swap needs a memory limit (--memory)")?,
        Setting::Clear => bail!("--memory-swap needs a memory limit, not --memory max"),
    };
    if *total < memory {
        bail!("--memory-swap {total} is below the memory limit {memory}: it is memory + swap");
    }
    Ok(Setting::Set(total - memory))
}

/// The field of `m` that `key` names.
fn slot(m: &mut IoMax, key: IoKey) -> &mut Option<Max> {
    match key {
        IoKey::Rbps => &mut m.rbps,
        IoKey::Wbps => &mut m.wbps,
        IoKey::Riops => &mut m.riops,
        IoKey::Wiops => &mut m.wiops,
    }
}

/// Sets (or with `max` removes) one key of one device's line; a bare `max` removes the key
/// from every device.
fn apply_io_flag(lines: &mut Vec<IoMax>, key: IoKey, v: &str) -> anyhow::Result<()> {
    if v.eq_ignore_ascii_case("max") {
        for m in lines.iter_mut() {
            *slot(m, key) = None;
        }
        return Ok(());
    }
    let (dev, rate) = v
        .rsplit_once(':')
        .with_context(|| format!("{v:?} is not DEVICE:RATE, e.g. /dev/vda:10M or 8:0:1000"))?;
    // A /dev path is resolved on this machine: the daemon's when the CLI runs beside it.
    let device = parse_device("io_max", dev, std::path::Path::new("/sys"))?;
    let value = if rate.eq_ignore_ascii_case("max") {
        None
    } else {
        let n = match key {
            IoKey::Rbps | IoKey::Wbps => parse_size(rate).map_err(anyhow::Error::msg)?,
            IoKey::Riops | IoKey::Wiops => rate
                .parse::<u64>()
                .with_context(|| format!("{rate:?} is not a whole number of operations"))?,
        };
        if n == 0 {
            bail!("{v:?}: a rate must be positive (max removes it)");
        }
        Some(Max::Limit(n))
    };
    let i = match lines.iter().position(|m| m.device == device) {
        Some(i) => i,
        None => {
            lines.push(IoMax {
                device,
                rbps: None,
                wbps: None,
                riops: None,
                wiops: None,
            });
            lines.len() - 1
        }
    };
    *slot(&mut lines[i], key) = value;
    Ok(())
}

/// `MAJ:MIN key=N …` with only the limited keys; `None` when the device has none left.
fn render_line(m: &IoMax) -> Option<String> {
    let mut out = m.device.to_string();
    let mut any = false;
    for (k, v) in [
        ("rbps", m.rbps),
        ("wbps", m.wbps),
        ("riops", m.riops),
        ("wiops", m.wiops),
    ] {
        if let Some(Max::Limit(n)) = v {
            out.push_str(&format!(" {k}={n}"));
            any = true;
        }
    }
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_to_patch() {
        let a = LimitArgs {
            cpus: Some(cpus_or_max("1.5").unwrap()),
            memory: Some(size_or_max("max").unwrap()),
            pids_limit: Some(count_or_max("-1").unwrap()),
            cpu_shares: Some(count_or_max("1024").unwrap()),
            blkio_weight: Some(count_or_max("10").unwrap()),
            memory_low: Some(size_or_max("64M").unwrap()),
            memory_min: Some(size_or_max("-1").unwrap()),
            ..LimitArgs::default()
        };
        let p = a.to_patch(&Limits::default()).unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"cpus": 1.5, "memory_max": null, "pids_max": null,
                "cpu_weight": 100, "io_weight": 1, "memory_low": 64 << 20,
                "memory_min": null})
        );
        assert!(a.to_limits().is_err(), "max is refused at create");
    }

    #[test]
    fn a_refused_limit_names_its_flag() {
        let api = |field: &str| {
            anyhow::Error::new(ClientError::Api {
                status: hyper::StatusCode::BAD_REQUEST,
                code: "invalid".into(),
                message: "0 must be between 0.01 and 1024".into(),
                field: Some(field.into()),
            })
        };
        assert_eq!(
            name_the_flag(api("limits.cpus")).to_string(),
            "--cpus: 0 must be between 0.01 and 1024"
        );
        assert_eq!(
            name_the_flag(api("limits.memory_min")).to_string(),
            "--memory-min: 0 must be between 0.01 and 1024"
        );
        assert_eq!(
            name_the_flag(api("name")).to_string(),
            "0 must be between 0.01 and 1024",
            "not a limit: as the daemon said it"
        );
    }

    #[test]
    fn memory_swap_is_a_total() {
        let a = LimitArgs {
            memory: Some(Setting::Set(256 << 20)),
            memory_swap: Some(size_or_max("1G").unwrap()),
            ..LimitArgs::default()
        };
        assert_eq!(
            a.to_limits().unwrap().swap_max,
            Some((1 << 30) - (256 << 20))
        );
        let only_total = LimitArgs {
            memory_swap: Some(Setting::Set(1 << 30)),
            ..LimitArgs::default()
        };
        assert!(only_total.to_patch(&Limits::default()).is_err());
        let current = Limits {
            memory_max: Some(1 << 29),
            ..Limits::default()
        };
        assert_eq!(
            only_total.to_patch(&current).unwrap().swap_max,
            Setting::Set(1 << 29)
        );
        let unlimited = LimitArgs {
            memory_swap: Some(size_or_max("-1").unwrap()),
            ..LimitArgs::default()
        };
        assert_eq!(
            unlimited.to_patch(&current).unwrap().swap_max,
            Setting::Clear
        );
    }

    #[test]
    fn device_flags_change_one_key() {
        let current = vec!["8:0 rbps=1000 wiops=5".to_owned()];
        let set = LimitArgs {
            device_write_bps: vec!["8:0:10M".into()],
            device_read_bps: vec!["8:0:max".into()],
            ..LimitArgs::default()
        };
        // 8:0 may be missing on a test host: only check when the kernel has it.
        if std::path::Path::new("/sys/dev/block/8:0").exists()
            && !std::path::Path::new("/sys/dev/block/8:0/partition").exists()
        {
            assert_eq!(
                set.io_patch(&current).unwrap(),
                Setting::Set(vec![format!("8:0 wbps={} wiops=5", 10 << 20)])
            );
        }
        let clear = LimitArgs {
            device_write_iops: vec!["max".into()],
            ..LimitArgs::default()
        };
        assert_eq!(
            clear.io_patch(&["8:0 wiops=5".to_owned()]).unwrap(),
            Setting::Clear
        );
        assert_eq!(
            LimitArgs::default().io_patch(&current).unwrap(),
            Setting::Keep
        );
        let bad = LimitArgs {
            device_read_bps: vec!["10M".into()],
            ..LimitArgs::default()
        };
        assert!(bad.io_patch(&[]).is_err());
    }
}
