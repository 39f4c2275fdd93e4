//! Block-IO limits and usage (`io` on v2, `blkio` on v1).

use std::collections::BTreeMap;

use super::{
    CgroupError, Controller, Group,
    caps::Knob,
    fs,
    limits::{IoMax, Limits, LimitsUpdate, Plan},
    stats::{IoDeviceStats, Kind, Source, Stats},
    units::{self, Device, Max, parse_maj_min},
};

/// v2: one line per device, `MAJ:MIN rbps=N wbps=N riops=N wiops=N` (`max` = none).
pub const MAX: &str = "io.max";
/// v2: `default N` (1..=10000) plus per-device lines.
pub const WEIGHT: &str = "io.weight";
/// v2: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N` per device.
pub const STAT: &str = "io.stat";
/// v1 throttling, one `MAJ:MIN N` line per device (0 removes the rule).
pub const V1_READ_BPS: &str = "blkio.throttle.read_bps_device";
pub const V1_WRITE_BPS: &str = "blkio.throttle.write_bps_device";
pub const V1_READ_IOPS: &str = "blkio.throttle.read_iops_device";
pub const V1_WRITE_IOPS: &str = "blkio.throttle.write_iops_device";
/// v1 weight with the BFQ scheduler (1..=1000), and the CFQ one on old kernels (10..=1000).
pub const V1_BFQ_WEIGHT: &str = "blkio.bfq.weight";
pub const V1_WEIGHT: &str = "blkio.weight";
/// v1 usage, `MAJ:MIN Read|Write|Sync|Async|Discard|Total N` lines.
pub const V1_BYTES: &str = "blkio.throttle.io_service_bytes_recursive";
pub const V1_IOS: &str = "blkio.throttle.io_serviced_recursive";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatFile {
    Stat,
    V1Bytes,
    V1Ios,
}

const KEYS: [&str; 4] = ["rbps", "wbps", "riops", "wiops"];
const V1_FILES: [&str; 4] = [V1_READ_BPS, V1_WRITE_BPS, V1_READ_IOPS, V1_WRITE_IOPS];

fn fields(m: &IoMax) -> [Option<Max>; 4] {
    [m.rbps, m.wbps, m.riops, m.wiops]
}

/// Parses v2 `io.max` into one entry per device.
pub fn parse_io_max(text: &str) -> Vec<IoMax> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let device = parse_maj_min(it.next()?)?;
            let mut m = IoMax {
                device,
                rbps: None,
                wbps: None,
                riops: None,
                wiops: None,
            };
            for kv in it {
                let (k, v) = kv.split_once('=')?;
                let v = Max::parse_v2(v);
                match k {
                    "rbps" => m.rbps = v,
                    "wbps" => m.wbps = v,
                    "riops" => m.riops = v,
                    "wiops" => m.wiops = v,
                    _ => {}
                }
            }
            Some(m)
        })
        .collect()
}

/// Parses one `io.max` line of the API, `MAJ:MIN [rbps=N] [wbps=N] [riops=N] [wiops=N]`
/// (`max` for no limit): strictly, unlike the kernel file's reader above.
pub fn parse_io_max_line(line: &str) -> Result<IoMax, CgroupError> {
    const ALLOWED: &str = "MAJ:MIN followed by rbps=N, wbps=N, riops=N or wiops=N (N a positive number or max), e.g. 8:0 rbps=1048576";
    let bad = || CgroupError::Invalid {
        field: "io_max",
        value: line.to_owned(),
        allowed: ALLOWED.into(),
    };
    let mut it = line.split_whitespace();
    let device = it.next().and_then(parse_maj_min).ok_or_else(bad)?;
    let mut m = IoMax {
        device,
        rbps: None,
        wbps: None,
        riops: None,
        wiops: None,
    };
    let mut any = false;
    for kv in it {
        let (k, v) = kv.split_once('=').ok_or_else(bad)?;
        let v = Some(Max::parse_v2(v).ok_or_else(bad)?);
        match k {
            "rbps" => m.rbps = v,
            "wbps" => m.wbps = v,
            "riops" => m.riops = v,
            "wiops" => m.wiops = v,
            _ => return Err(bad()),
        }
        any = true;
    }
    if !any {
        return Err(bad());
    }
    Ok(m)
}

/// The API's line for one device (only the fields that are set).
pub fn render_io_max(m: &IoMax) -> String {
    let mut s = m.device.to_string();
    for (key, v) in KEYS.iter().zip(fields(m)) {
        if let Some(v) = v {
            s.push_str(&format!(" {key}={}", v.to_v2()));
        }
    }
    s
}

/// Parses a v1 `MAJ:MIN N` file.
fn parse_v1_device_file(text: &str) -> BTreeMap<Device, u64> {
    text.lines()
        .filter_map(|l| {
            let (d, n) = l.trim().split_once(' ')?;
            Some((parse_maj_min(d)?, n.trim().parse().ok()?))
        })
        .collect()
}

pub(crate) fn plan(g: &Group, u: &LimitsUpdate, plan: &mut Plan) -> Result<(), CgroupError> {
    if u.io_max.is_empty() && u.io_weight.is_none() {
        return Ok(());
    }
    let field = if u.io_max.is_empty() {
        "io_weight"
    } else {
        "io_max"
    };
    let p = g
        .place(Controller::Io)
        .ok_or_else(|| CgroupError::Unsupported {
            field,
            reason: "the io (v1 blkio) controller is not available to Corral's cgroups".into(),
        })?;
    for m in &u.io_max {
        units::parse_device("io_max.device", &m.device.to_string(), g.sys())?;
        for (key, v) in KEYS.iter().zip(fields(m)) {
            if v == Some(Max::Limit(0)) {
                return Err(CgroupError::Invalid {
                    field: "io_max",
                    value: format!("{}={key}=0", m.device),
                    allowed: "a positive number or max".into(),
                });
            }
        }
    }
    if p.v2 {
        let file = p.dir.join(MAX);
        let old = parse_io_max(&fs::read(&file)?);
        for m in &u.io_max {
            let mut value = m.device.to_string();
            for (key, v) in KEYS.iter().zip(fields(m)) {
                if let Some(v) = v {
                    value.push_str(&format!(" {key}={}", v.to_v2()));
                }
            }
            let before = old.iter().find(|o| o.device == m.device);
            let mut undo = m.device.to_string();
            for (i, key) in KEYS.iter().enumerate() {
                let v = before.and_then(|b| fields(b)[i]).unwrap_or(Max::Unlimited);
                undo.push_str(&format!(" {key}={}", v.to_v2()));
            }
            plan.push(file.clone(), value, undo);
        }
    } else {
        for m in &u.io_max {
            for (name, v) in V1_FILES.iter().zip(fields(m)) {
                let Some(v) = v else { continue };
                let file = p.dir.join(name);
                let old = parse_v1_device_file(&fs::read(&file)?);
                let undo = format!("{} {}", m.device, old.get(&m.device).copied().unwrap_or(0));
                let n = match v {
                    Max::Limit(n) => n,
                    Max::Unlimited => 0,
                };
                plan.push(file, format!("{} {n}", m.device), undo);
            }
        }
    }
    if let Some(w) = u.io_weight {
        if !(1..=10_000).contains(&w) {
            return Err(CgroupError::Invalid {
                field: "io_weight",
                value: w.to_string(),
                allowed: "1 to 10000 (default 100)".into(),
            });
        }
        if p.v2 {
            let file = p.dir.join(WEIGHT);
            let old = fs::flat_get(&fs::read(&file)?, "default").unwrap_or(100);
            plan.push(file, format!("default {w}"), format!("default {old}"));
        } else {
            let file = v1_weight_file(p.dir).ok_or_else(|| CgroupError::Unsupported {
                field: "io_weight",
                reason: "no blkio weight file (the disk scheduler is not BFQ or CFQ)".into(),
            })?;
            plan.set(file, units::io_weight_to_blkio_weight(w).to_string())?;
        }
    }
    Ok(())
}

fn v1_weight_file(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    [V1_BFQ_WEIGHT, V1_WEIGHT]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
}

pub(crate) fn read(g: &Group, l: &mut Limits) {
    let Some(p) = g.place(Controller::Io) else {
        return;
    };
    if p.v2 {
        l.io_max = fs::read_opt(&p.dir.join(MAX))
            .map(|t| parse_io_max(&t))
            .unwrap_or_default();
        l.io_weight = fs::read_opt(&p.dir.join(WEIGHT)).and_then(|t| fs::flat_get(&t, "default"));
    } else {
        let mut by_dev: BTreeMap<Device, [Option<Max>; 4]> = BTreeMap::new();
        for (i, name) in V1_FILES.iter().enumerate() {
            let text = fs::read_opt(&p.dir.join(name)).unwrap_or_default();
            for (d, n) in parse_v1_device_file(&text) {
                by_dev.entry(d).or_insert([Some(Max::Unlimited); 4])[i] = Some(Max::Limit(n));
            }
        }
        l.io_max = by_dev
            .into_iter()
            .map(|(device, f)| IoMax {
                device,
                rbps: f[0],
                wbps: f[1],
                riops: f[2],
                wiops: f[3],
            })
            .collect();
        l.io_weight = v1_weight_file(p.dir)
            .and_then(|f| fs::read_opt(&f))
            .and_then(|t| {
                t.trim()
                    .parse()
                    .ok()
                    .or_else(|| fs::flat_get(&t, "default"))
            })
            .map(units::blkio_weight_to_io_weight);
    }
}

pub(crate) fn sources(g: &Group, out: &mut Vec<Source>) {
    if let Some(p) = g.place(Controller::Io) {
        if p.v2 {
            out.push(Source {
                kind: Kind::Io(StatFile::Stat),
                path: p.dir.join(STAT),
            });
        } else {
            out.push(Source {
                kind: Kind::Io(StatFile::V1Bytes),
                path: p.dir.join(V1_BYTES),
            });
            out.push(Source {
                kind: Kind::Io(StatFile::V1Ios),
                path: p.dir.join(V1_IOS),
            });
        }
    }
}

fn entry(s: &mut Stats, device: Device) -> &mut IoDeviceStats {
    let i = match s.io.iter().position(|d| d.device == Some(device)) {
        Some(i) => i,
        None => {
            s.io.push(IoDeviceStats {
                device: Some(device),
                ..Default::default()
            });
            s.io.len() - 1
        }
    };
    &mut s.io[i]
}

pub(crate) fn parse(f: StatFile, text: &str, s: &mut Stats) {
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(device) = it.next().and_then(parse_maj_min) else {
            continue;
        };
        match f {
            StatFile::Stat => {
                let e = entry(s, device);
                for kv in it {
                    let Some((k, v)) = kv.split_once('=') else {
                        continue;
                    };
                    let v = v.parse().ok();
                    match k {
                        "rbytes" => e.rbytes = v,
                        "wbytes" => e.wbytes = v,
                        "rios" => e.rios = v,
                        "wios" => e.wios = v,
                        _ => {}
                    }
                }
            }
            StatFile::V1Bytes | StatFile::V1Ios => {
                let (Some(op), Some(n)) = (it.next(), it.next().and_then(|n| n.parse().ok()))
                else {
                    continue;
                };
                let e = entry(s, device);
                match (f, op) {
                    (StatFile::V1Bytes, "Read") => e.rbytes = Some(n),
                    (StatFile::V1Bytes, "Write") => e.wbytes = Some(n),
                    (StatFile::V1Ios, "Read") => e.rios = Some(n),
                    (StatFile::V1Ios, "Write") => e.wios = Some(n),
                    _ => {}
                }
            }
        }
    }
}

pub(crate) fn knobs(g: &Group, out: &mut Vec<Knob>) {
    let p = g.place(Controller::Io);
    match p {
        Some(pl) if !pl.v2 => {
            out.push(Knob::probe(
                "io_max",
                "io",
                p,
                &V1_FILES,
                Some("v1 blkio.throttle.* files"),
            ));
            let weight = v1_weight_file(pl.dir)
                .and_then(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| V1_WEIGHT.to_owned());
            out.push(Knob::probe(
                "io_weight",
                "io",
                p,
                &[weight.as_str()],
                Some("v1 blkio weight 10..1000, converted: 1 + (w - 10) * 9999 / 990"),
            ));
        }
        _ => {
            out.push(Knob::probe("io_max", "io", p, &[MAX], None));
            out.push(Knob::probe(
                "io_weight",
                "io",
                p,
                &[WEIGHT],
                Some("takes effect with the io.cost controller or the BFQ scheduler"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_max_text() {
        let m = parse_io_max("8:0 rbps=1048576 wbps=max riops=max wiops=100\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].device, Device { major: 8, minor: 0 });
        assert_eq!(m[0].rbps, Some(Max::Limit(1 << 20)));
        assert_eq!(m[0].wbps, Some(Max::Unlimited));
        assert_eq!(m[0].wiops, Some(Max::Limit(100)));
        assert!(parse_io_max("").is_empty());
    }

    #[test]
    fn stats_both_versions() {
        let mut s = Stats::default();
        parse(
            StatFile::Stat,
            "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
            &mut s,
        );
        assert_eq!(s.io[0].wbytes, Some(8192));
        let mut s = Stats::default();
        parse(
            StatFile::V1Bytes,
            "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 0\n254:0 Async 12288\n254:0 Discard 0\n254:0 Total 12288\nTotal 12288\n",
            &mut s,
        );
        parse(
            StatFile::V1Ios,
            "254:0 Read 1\n254:0 Write 2\nTotal 3\n",
            &mut s,
        );
        assert_eq!(s.io.len(), 1);
        assert_eq!(
            (s.io[0].rbytes, s.io[0].wbytes, s.io[0].rios, s.io[0].wios),
            (Some(4096), Some(8192), Some(1), Some(2))
        );
    }
}
