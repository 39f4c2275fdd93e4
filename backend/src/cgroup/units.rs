//! Units users type and the kernel's number formats: sizes (`256M`, `1.5G`, `max`), CPUs
//! (`0.5`), devices (`8:0`, `/dev/sda`), CPU lists (`0-3,6`), and the pure conversions between
//! cgroup v1 and v2 scales (CPU shares ↔ weight, block-IO weight, memsw).

use std::{
    collections::BTreeSet,
    fmt,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::Path,
};

use serde::{Deserialize, Serialize};

use super::CgroupError;

/// A limit that is either a number or the kernel's `max` (no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Max {
    /// A finite limit (bytes, pids, microseconds, bytes/s or IO/s, by field).
    Limit(u64),
    /// No limit: `max` in v2, `-1` in v1.
    Unlimited,
}

impl Max {
    /// The number, or `u64::MAX` for `max` (for comparisons).
    pub fn as_u64(self) -> u64 {
        match self {
            Max::Limit(n) => n,
            Max::Unlimited => u64::MAX,
        }
    }

    /// The v2 file spelling: `max` or the decimal number.
    pub fn to_v2(self) -> String {
        match self {
            Max::Limit(n) => n.to_string(),
            Max::Unlimited => "max".to_owned(),
        }
    }

    /// The v1 file spelling: `-1` or the decimal number.
    pub fn to_v1(self) -> String {
        match self {
            Max::Limit(n) => n.to_string(),
            Max::Unlimited => "-1".to_owned(),
        }
    }

    /// Parses a v2 value (`max` or a number).
    pub fn parse_v2(s: &str) -> Option<Max> {
        let s = s.trim();
        if s == "max" {
            Some(Max::Unlimited)
        } else {
            s.parse().ok().map(Max::Limit)
        }
    }

    /// Parses a v1 byte value: `-1` and anything at or above the kernel's page-counter maximum
    /// (`PAGE_COUNTER_MAX * PAGE_SIZE`, 9223372036854771712 with 4 KiB pages) mean unlimited.
    pub fn parse_v1(s: &str) -> Option<Max> {
        let s = s.trim();
        if s == "-1" || s == "max" {
            return Some(Max::Unlimited);
        }
        let n: u64 = s.parse().ok()?;
        Some(if n >= V1_UNLIMITED_FLOOR {
            Max::Unlimited
        } else {
            Max::Limit(n)
        })
    }
}

/// Values at or above this in v1 byte files mean "no limit" (the page-counter maximum rounded
/// down to any page size up to 64 KiB).
pub const V1_UNLIMITED_FLOOR: u64 = (i64::MAX as u64) & !0xffff;

impl fmt::Display for Max {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_v2())
    }
}

impl Serialize for Max {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Max::Limit(n) => s.serialize_u64(*n),
            Max::Unlimited => s.serialize_str("max"),
        }
    }
}

impl<'de> Deserialize<'de> for Max {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Num(u64),
            Str(String),
        }
        match Repr::deserialize(d)? {
            Repr::Num(n) => Ok(Max::Limit(n)),
            Repr::Str(s) if s == "max" => Ok(Max::Unlimited),
            Repr::Str(s) => Err(serde::de::Error::custom(format!(
                "expected a number or \"max\", got {s:?}"
            ))),
        }
    }
}

/// A CPU bandwidth limit: `quota` microseconds of CPU time per `period` microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuMax {
    pub quota: Max,
    pub period: u64,
}

/// The default CFS period, 100 ms.
pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;

impl CpuMax {
    /// The limit as a number of CPUs (`None` when unlimited).
    pub fn cpus(&self) -> Option<f64> {
        match self.quota {
            Max::Limit(q) if self.period > 0 => Some(q as f64 / self.period as f64),
            _ => None,
        }
    }
}

/// A block device by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Device {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_maj_min(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("expected MAJ:MIN, got {s:?}")))
    }
}

/// Parses `MAJ:MIN` (no check that the device exists).
pub fn parse_maj_min(s: &str) -> Option<Device> {
    let (a, b) = s.trim().split_once(':')?;
    Some(Device {
        major: a.parse().ok()?,
        minor: b.parse().ok()?,
    })
}

fn invalid(field: &'static str, value: &str, allowed: &str) -> CgroupError {
    CgroupError::Invalid {
        field,
        value: value.to_owned(),
        allowed: allowed.to_owned(),
    }
}

const SIZE_ALLOWED: &str =
    "a byte count like 1048576, 256M, 1.5G (suffixes K, M, G, T, P; powers of 1024) or max";

/// Parses a size users type: `1048576`, `512K`, `256M`, `1.5G`, `2T`, optionally followed by
/// `B`/`iB` (`256MiB`), or `max`/`unlimited`. Suffixes are powers of 1024; fractions round down
/// to whole bytes. `field` names the request field in the error.
pub fn parse_size(field: &'static str, s: &str) -> Result<Max, CgroupError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("max") || t.eq_ignore_ascii_case("unlimited") {
        return Ok(Max::Unlimited);
    }
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult): (&str, u64) = match t.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'P' => 1 << 50,
                _ => return Err(invalid(field, s, SIZE_ALLOWED)),
            };
            (&t[..t.len() - 1], m)
        }
        _ => (t, 1),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(invalid(field, s, SIZE_ALLOWED));
    }
    let bytes = match num.split_once('.') {
        None => num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)),
        Some((int, frac)) => {
            let int: u64 = if int.is_empty() {
                0
            } else {
                int.parse().ok().unwrap_or(u64::MAX)
            };
            if frac.is_empty() || frac.len() > 9 || frac.contains('.') {
                return Err(invalid(field, s, SIZE_ALLOWED));
            }
            let frac_n: u64 = frac.parse().map_err(|_| invalid(field, s, SIZE_ALLOWED))?;
            let scale = 10u64.pow(frac.len() as u32);
            int.checked_mul(mult).and_then(|whole| {
                // frac_n / scale * mult without overflow: mult ≤ 2^50, frac_n < 10^9 < 2^30.
                let part = (u128::from(frac_n) * u128::from(mult) / u128::from(scale)) as u64;
                whole.checked_add(part)
            })
        }
    };
    match bytes {
        Some(b) if b <= i64::MAX as u64 => Ok(Max::Limit(b)),
        _ => Err(invalid(field, s, "a size up to 8E (2^63-1 bytes) or max")),
    }
}

/// Parses a CPU count like `--cpus 0.5` into a quota per the default 100 ms period
/// (`0.5` → 50000/100000), or `max` → no limit. Allowed: 0.01 to 1024 CPUs with at most
/// 3 decimals.
pub fn parse_cpus(s: &str) -> Result<CpuMax, CgroupError> {
    const ALLOWED: &str = "a number of CPUs from 0.01 to 1024 (e.g. 0.5, 2) or max";
    let t = s.trim();
    if t.eq_ignore_ascii_case("max") {
        return Ok(CpuMax {
            quota: Max::Unlimited,
            period: DEFAULT_CPU_PERIOD_US,
        });
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let ok_digits = |x: &str| x.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !ok_digits(int) || !ok_digits(frac) || frac.len() > 3
    {
        return Err(invalid("cpus", s, ALLOWED));
    }
    let int: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| invalid("cpus", s, ALLOWED))?
    };
    let milli = if frac.is_empty() {
        0
    } else {
        frac.parse::<u64>()
            .map_err(|_| invalid("cpus", s, ALLOWED))?
            * 10u64.pow(3 - frac.len() as u32)
    };
    let millicpus = int.checked_mul(1000).and_then(|x| x.checked_add(milli));
    match millicpus {
        Some(m) if (10..=1_024_000).contains(&m) => Ok(CpuMax {
            quota: Max::Limit(m * DEFAULT_CPU_PERIOD_US / 1000),
            period: DEFAULT_CPU_PERIOD_US,
        }),
        _ => Err(invalid("cpus", s, ALLOWED)),
    }
}

/// Resolves a block device given as `MAJ:MIN` or as a `/dev/...` path, and checks that the
/// kernel knows it (`<sys>/dev/block/MAJ:MIN` exists). `sys` is normally `/sys`.
pub fn parse_device(field: &'static str, s: &str, sys: &Path) -> Result<Device, CgroupError> {
    const ALLOWED: &str = "a block device as MAJ:MIN (e.g. 8:0) or a /dev path (e.g. /dev/sda)";
    let t = s.trim();
    let dev = if t.starts_with('/') {
        let meta = std::fs::metadata(t).map_err(|_| invalid(field, s, ALLOWED))?;
        if !meta.file_type().is_block_device() {
            return Err(invalid(field, s, "a block device; this path is not one"));
        }
        let rdev = meta.rdev();
        Device {
            major: nix::sys::stat::major(rdev) as u32,
            minor: nix::sys::stat::minor(rdev) as u32,
        }
    } else {
        parse_maj_min(t).ok_or_else(|| invalid(field, s, ALLOWED))?
    };
    let known = sys.join("dev/block").join(dev.to_string());
    if !known.exists() {
        return Err(invalid(
            field,
            s,
            &format!(
                "a block device this host has; {dev} is unknown ({} is missing)",
                known.display()
            ),
        ));
    }
    if known.join("partition").exists() {
        return Err(invalid(
            field,
            s,
            &format!("a whole disk; {dev} is a partition and cgroups limit whole disks"),
        ));
    }
    Ok(dev)
}

/// Parses a kernel CPU or memory-node list (`0-3,6`, or empty) into a set. Ids above 65535
/// are rejected.
pub fn parse_id_list(s: &str) -> Option<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        if a > b || b > 65535 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

/// Converts cgroup v1 `cpu.shares` (2..=262144, default 1024) to v2 `cpu.weight` (1..=10000,
/// default 100) with the log-quadratic rule runc and crun use, which keeps the defaults aligned:
/// 2→1, 1024→100, 262144→10000 (the old linear rule mapped 1024 to 39). 0 means unset and maps
/// to 0; values outside the range clamp to its ends.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
}

/// The inverse of [`shares_to_weight`] for writing a v2 weight (1..=10000, default 100) into v1
/// `cpu.shares`: the share count nearest the exact inverse of the rule whose weight is `weight`,
/// so reading the shares back gives the same weight (1→2, 100→1024, 10000→262144).
/// Out-of-range weights clamp.
pub fn weight_to_shares(weight: u64) -> u64 {
    let w = weight.clamp(1, 10_000);
    // Solve (l² + 125·l)/612 − 7/34 = log10(w) for l = log2(shares).
    let c = 612.0 * ((w as f64).log10() + 7.0 / 34.0);
    let l = (-125.0 + (125.0f64 * 125.0 + 4.0 * c).sqrt()) / 2.0;
    let mut s = (2f64.powf(l).round() as u64).clamp(2, 262_144);
    // The rule rounds up and its slope is below 1 share per weight: step onto `w`.
    while s > 2 && shares_to_weight(s) > w {
        s -= 1;
    }
    while s < 262_144 && shares_to_weight(s) < w {
        s += 1;
    }
    s
}

/// Converts a v1 block-IO weight (10..=1000, default 500) to v2 `io.weight` (1..=10000, default
/// 100 on v2 but 500 maps to 4545): `1 + (w − 10)·9999/990`. Out-of-range values clamp.
pub fn blkio_weight_to_io_weight(blkio: u64) -> u64 {
    let b = blkio.clamp(10, 1000);
    1 + (b - 10) * 9999 / 990
}

/// The inverse of [`blkio_weight_to_io_weight`]: v2 `io.weight` (1..=10000) to the v1 block-IO
/// weight (10..=1000), `10 + (w − 1)·990/9999` rounded to nearest. The v1 scale is coarser, so a
/// read-back may differ from the requested v2 weight by up to 5.
pub fn io_weight_to_blkio_weight(weight: u64) -> u64 {
    let w = weight.clamp(1, 10_000);
    10 + ((w - 1) * 990 + 9999 / 2) / 9999
}

/// v1 has no swap limit of its own: `memory.memsw.limit_in_bytes` is memory + swap. Returns
/// `Unlimited` when either part is unlimited.
pub fn memsw(memory: Max, swap: Max) -> Max {
    match (memory, swap) {
        (Max::Limit(m), Max::Limit(s)) => Max::Limit(m.saturating_add(s)),
        _ => Max::Unlimited,
    }
}

/// The swap part of a v1 memsw limit: memsw − memory; `Unlimited` when memsw is unlimited.
pub fn swap_from_memsw(memory: Max, memsw: Max) -> Max {
    match (memory, memsw) {
        (Max::Limit(m), Max::Limit(t)) => Max::Limit(t.saturating_sub(m)),
        (_, Max::Unlimited) => Max::Unlimited,
        (Max::Unlimited, Max::Limit(t)) => Max::Limit(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_table() {
        for (shares, weight) in [
            (0, 0),
            (1, 1),
            (2, 1),
            (3, 2),
            (512, 59),
            (1024, 100),
            (2048, 174),
            (262_144, 10_000),
            (1_000_000, 10_000),
        ] {
            assert_eq!(shares_to_weight(shares), weight, "shares {shares}");
        }
    }

    #[test]
    fn weight_to_shares_round_trips_every_weight() {
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(100), 1024);
        assert_eq!(weight_to_shares(10_000), 262_144);
        assert_eq!(weight_to_shares(0), 2, "clamps below");
        assert_eq!(weight_to_shares(20_000), 262_144, "clamps above");
        for w in 1..=10_000 {
            assert_eq!(shares_to_weight(weight_to_shares(w)), w, "weight {w}");
        }
    }

    #[test]
    fn io_weight_table() {
        for (blkio, io) in [
            (0, 1),
            (10, 1),
            (100, 910),
            (500, 4950),
            (1000, 10_000),
            (5000, 10_000),
        ] {
            assert_eq!(blkio_weight_to_io_weight(blkio), io, "blkio {blkio}");
        }
        for (io, blkio) in [
            (0, 10),
            (1, 10),
            (100, 20),
            (4950, 500),
            (10_000, 1000),
            (99_999, 1000),
        ] {
            assert_eq!(io_weight_to_blkio_weight(io), blkio, "io {io}");
        }
        for b in 10..=1000 {
            assert_eq!(io_weight_to_blkio_weight(blkio_weight_to_io_weight(b)), b);
        }
    }

    #[test]
    fn memsw_is_memory_plus_swap() {
        let m = Max::Limit(32 << 20);
        assert_eq!(memsw(m, Max::Limit(0)), m);
        assert_eq!(memsw(m, Max::Limit(16 << 20)), Max::Limit(48 << 20));
        assert_eq!(memsw(m, Max::Unlimited), Max::Unlimited);
        assert_eq!(memsw(Max::Unlimited, Max::Limit(1)), Max::Unlimited);
        assert_eq!(
            swap_from_memsw(m, Max::Limit(48 << 20)),
            Max::Limit(16 << 20)
        );
        assert_eq!(swap_from_memsw(m, Max::Unlimited), Max::Unlimited);
    }

    #[test]
    fn sizes() {
        for (s, want) in [
            ("0", Max::Limit(0)),
            ("1048576", Max::Limit(1 << 20)),
            ("512K", Max::Limit(512 << 10)),
            ("256M", Max::Limit(256 << 20)),
            ("256m", Max::Limit(256 << 20)),
            ("256MiB", Max::Limit(256 << 20)),
            ("256MB", Max::Limit(256 << 20)),
            ("1.5G", Max::Limit(3 << 29)),
            ("0.5K", Max::Limit(512)),
            ("2T", Max::Limit(2 << 40)),
            ("max", Max::Unlimited),
            ("unlimited", Max::Unlimited),
        ] {
            assert_eq!(parse_size("memory_max", s).unwrap(), want, "{s}");
        }
        for bad in [
            "",
            "-1",
            "M",
            "1.5.5G",
            "12X",
            "1e9",
            "99999999999P",
            "1.G",
            " 1 G",
        ] {
            let e = parse_size("memory_max", bad).unwrap_err();
            assert!(e.to_string().contains("memory_max"), "{bad}: {e}");
        }
    }

    #[test]
    fn cpus() {
        let q = |s| parse_cpus(s).unwrap();
        assert_eq!(
            q("0.5"),
            CpuMax {
                quota: Max::Limit(50_000),
                period: 100_000
            }
        );
        assert_eq!(
            q("2"),
            CpuMax {
                quota: Max::Limit(200_000),
                period: 100_000
            }
        );
        assert_eq!(q(".25").quota, Max::Limit(25_000));
        assert_eq!(q("0.01").quota, Max::Limit(1_000));
        assert_eq!(q("1024").quota, Max::Limit(102_400_000));
        assert_eq!(q("max").quota, Max::Unlimited);
        assert_eq!(q("0.5").cpus(), Some(0.5));
        for bad in [
            "", "0", "0.001", "0.009", "1025", "-1", "1,5", "abc", "0.5.1",
        ] {
            let e = parse_cpus(bad).unwrap_err();
            assert!(e.to_string().contains("cpus"), "{bad}: {e}");
        }
    }

    #[test]
    fn id_lists() {
        assert_eq!(parse_id_list("").unwrap(), BTreeSet::new());
        assert_eq!(parse_id_list("0-3,6\n").unwrap(), [0, 1, 2, 3, 6].into());
        assert_eq!(parse_id_list("1").unwrap(), [1].into());
        assert!(parse_id_list("3-1").is_none());
        assert!(parse_id_list("a").is_none());
        assert!(parse_id_list("0-99999").is_none());
    }

    #[test]
    fn devices() {
        let sys = std::env::temp_dir().join(format!("corral-units-{}", std::process::id()));
        std::fs::create_dir_all(sys.join("dev/block/8:0")).unwrap();
        std::fs::create_dir_all(sys.join("dev/block/8:1")).unwrap();
        std::fs::write(sys.join("dev/block/8:1/partition"), "1\n").unwrap();
        assert_eq!(
            parse_device("io_max", "8:0", &sys).unwrap(),
            Device { major: 8, minor: 0 }
        );
        let e = parse_device("io_max", "8:1", &sys).unwrap_err().to_string();
        assert!(e.contains("partition"), "{e}");
        let e = parse_device("io_max", "9:9", &sys).unwrap_err().to_string();
        assert!(e.contains("io_max") && e.contains("unknown"), "{e}");
        let e = parse_device("io_max", "sda", &sys).unwrap_err().to_string();
        assert!(e.contains("MAJ:MIN"), "{e}");
        let e = parse_device("io_max", "/dev/null", &sys)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not one"), "{e}");
        std::fs::remove_dir_all(&sys).unwrap();
    }

    #[test]
    fn max_serde() {
        assert_eq!(serde_json::to_string(&Max::Unlimited).unwrap(), "\"max\"");
        assert_eq!(serde_json::to_string(&Max::Limit(5)).unwrap(), "5");
        assert_eq!(
            serde_json::from_str::<Max>("\"max\"").unwrap(),
            Max::Unlimited
        );
        assert_eq!(serde_json::from_str::<Max>("7").unwrap(), Max::Limit(7));
        assert!(serde_json::from_str::<Max>("\"7\"").is_err());
        assert_eq!(Max::parse_v1("9223372036854771712"), Some(Max::Unlimited));
        assert_eq!(Max::parse_v1("33554432"), Some(Max::Limit(33_554_432)));
        assert_eq!(Max::parse_v1("-1"), Some(Max::Unlimited));
    }
}
