//! CPU bandwidth and weight (`cpu`), and CPU usage accounting (core `cpu.stat` on v2,
//! `cpuacct` on v1).

use super::{
    CgroupError, Controller, Group,
    caps::Knob,
    fs,
    limits::{Limits, LimitsUpdate, Plan},
    stats::{Kind, Source, Stats},
    units::{self, CpuMax, Max},
};

/// v2: `QUOTA PERIOD` or `max PERIOD`, µs.
pub const MAX: &str = "cpu.max";
/// v2: 1..=10000, default 100.
pub const WEIGHT: &str = "cpu.weight";
/// v2 (core and cpu controller) and v1 (`cpu` hierarchy) statistics, flat-keyed.
pub const STAT: &str = "cpu.stat";
/// v1: quota in µs, `-1` for none.
pub const V1_QUOTA: &str = "cpu.cfs_quota_us";
/// v1: period in µs.
pub const V1_PERIOD: &str = "cpu.cfs_period_us";
/// v1: 2..=262144, default 1024.
pub const V1_SHARES: &str = "cpu.shares";
/// v1 cpuacct: total, user and system time in ns.
pub const V1_USAGE: &str = "cpuacct.usage";
pub const V1_USAGE_USER: &str = "cpuacct.usage_user";
pub const V1_USAGE_SYS: &str = "cpuacct.usage_sys";

/// Period range the kernel accepts, µs (1 ms .. 1 s); quota must be at least 1 ms.
const PERIOD_RANGE: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
const MIN_QUOTA: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatFile {
    V2Stat,
    V1Stat,
    V1Usage,
    V1User,
    V1Sys,
}

fn unsupported(field: &'static str) -> CgroupError {
    CgroupError::Unsupported {
        field,
        reason: "the cpu controller is not available to Corral's cgroups".into(),
    }
}

/// Validates `cpu_max` and `cpu_weight` and plans their writes.
pub(crate) fn plan(g: &Group, u: &LimitsUpdate, plan: &mut Plan) -> Result<(), CgroupError> {
    if let Some(m) = u.cpu_max {
        validate_max(m)?;
        let p = g
            .place(Controller::Cpu)
            .ok_or_else(|| unsupported("cpu_max"))?;
        if p.v2 {
            plan.set(p.dir.join(MAX), format!("{} {}", m.quota.to_v2(), m.period))?;
        } else {
            // Quota -1 first so a shorter period never meets an old, now too large quota.
            let quota = p.dir.join(V1_QUOTA);
            let old_quota = fs::read(&quota)?.trim().to_owned();
            plan.push(quota.clone(), "-1".into(), old_quota.clone());
            plan.set(p.dir.join(V1_PERIOD), m.period.to_string())?;
            plan.push(quota, m.quota.to_v1(), "-1".into());
        }
    }
    if let Some(w) = u.cpu_weight {
        if !(1..=10_000).contains(&w) {
            return Err(CgroupError::Invalid {
                field: "cpu_weight",
                value: w.to_string(),
                allowed: "1 to 10000 (default 100)".into(),
            });
        }
        let p = g
            .place(Controller::Cpu)
            .ok_or_else(|| unsupported("cpu_weight"))?;
        if p.v2 {
            plan.set(p.dir.join(WEIGHT), w.to_string())?;
        } else {
            plan.set(
                p.dir.join(V1_SHARES),
                units::weight_to_shares(w).to_string(),
            )?;
        }
    }
    Ok(())
}

fn validate_max(m: CpuMax) -> Result<(), CgroupError> {
    if !PERIOD_RANGE.contains(&m.period) {
        return Err(CgroupError::Invalid {
            field: "cpu_max.period",
            value: m.period.to_string(),
            allowed: "1000 to 1000000 µs".into(),
        });
    }
    if let Max::Limit(q) = m.quota
        && !(MIN_QUOTA..=m.period.saturating_mul(1024)).contains(&q)
    {
        return Err(CgroupError::Invalid {
            field: "cpu_max.quota",
            value: q.to_string(),
            allowed: format!("1000 µs to 1024 periods ({} µs), or max", m.period * 1024),
        });
    }
    Ok(())
}

/// Parses v2 `cpu.max`.
pub fn parse_cpu_max(text: &str) -> Option<CpuMax> {
    let mut it = text.split_whitespace();
    let quota = Max::parse_v2(it.next()?)?;
    let period = it.next()?.parse().ok()?;
    Some(CpuMax { quota, period })
}

/// Reads `cpu_max` and `cpu_weight` back.
pub(crate) fn read(g: &Group, l: &mut Limits) {
    let Some(p) = g.place(Controller::Cpu) else {
        return;
    };
    if p.v2 {
        l.cpu_max = fs::read_opt(&p.dir.join(MAX)).and_then(|t| parse_cpu_max(&t));
        l.cpu_weight = fs::read_u64(&p.dir.join(WEIGHT));
    } else {
        let quota = fs::read_opt(&p.dir.join(V1_QUOTA)).and_then(|t| Max::parse_v1(&t));
        let period = fs::read_u64(&p.dir.join(V1_PERIOD));
        if let (Some(quota), Some(period)) = (quota, period) {
            l.cpu_max = Some(CpuMax { quota, period });
        }
        l.cpu_weight = fs::read_u64(&p.dir.join(V1_SHARES)).map(units::shares_to_weight);
    }
}

pub(crate) fn sources(g: &Group, out: &mut Vec<Source>) {
    if let Some(p) = g.place(Controller::Cpuacct) {
        if p.v2 {
            out.push(Source {
                kind: Kind::Cpu(StatFile::V2Stat),
                path: p.dir.join(STAT),
            });
        } else {
            for (f, name) in [
                (StatFile::V1Usage, V1_USAGE),
                (StatFile::V1User, V1_USAGE_USER),
                (StatFile::V1Sys, V1_USAGE_SYS),
            ] {
                out.push(Source {
                    kind: Kind::Cpu(f),
                    path: p.dir.join(name),
                });
            }
        }
    }
    // v1 keeps throttling counters in the cpu hierarchy's own cpu.stat.
    if let Some(p) = g.place(Controller::Cpu)
        && !p.v2
    {
        out.push(Source {
            kind: Kind::Cpu(StatFile::V1Stat),
            path: p.dir.join(STAT),
        });
    }
}

pub(crate) fn parse(f: StatFile, text: &str, s: &mut Stats) {
    let ns_to_us = |ns: u64| ns / 1000;
    match f {
        StatFile::V2Stat => {
            s.cpu_usage_usec = fs::flat_get(text, "usage_usec");
            s.cpu_user_usec = fs::flat_get(text, "user_usec");
            s.cpu_system_usec = fs::flat_get(text, "system_usec");
            // Present only with the cpu controller enabled.
            s.cpu_nr_periods = fs::flat_get(text, "nr_periods").or(s.cpu_nr_periods);
            s.cpu_nr_throttled = fs::flat_get(text, "nr_throttled").or(s.cpu_nr_throttled);
            s.cpu_throttled_usec = fs::flat_get(text, "throttled_usec").or(s.cpu_throttled_usec);
        }
        StatFile::V1Stat => {
            s.cpu_nr_periods = fs::flat_get(text, "nr_periods");
            s.cpu_nr_throttled = fs::flat_get(text, "nr_throttled");
            s.cpu_throttled_usec = fs::flat_get(text, "throttled_time").map(ns_to_us);
        }
        StatFile::V1Usage => s.cpu_usage_usec = text.trim().parse().ok().map(ns_to_us),
        StatFile::V1User => s.cpu_user_usec = text.trim().parse().ok().map(ns_to_us),
        StatFile::V1Sys => s.cpu_system_usec = text.trim().parse().ok().map(ns_to_us),
    }
}

pub(crate) fn knobs(g: &Group, out: &mut Vec<Knob>) {
    let p = g.place(Controller::Cpu);
    let (max_files, weight_files): (&[&str], &[&str]) = match p {
        Some(p) if !p.v2 => (&[V1_QUOTA, V1_PERIOD], &[V1_SHARES]),
        _ => (&[MAX], &[WEIGHT]),
    };
    out.push(Knob::probe("cpu_max", "cpu", p, max_files, None));
    out.push(Knob::probe(
        "cpu_weight",
        "cpu",
        p,
        weight_files,
        p.filter(|p| !p.v2)
            .map(|_| "v1 cpu.shares, converted with the log-quadratic rule (1024 = weight 100)"),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_cpu_stat_captured() {
        let mut s = Stats::default();
        parse(
            StatFile::V2Stat,
            "usage_usec 81234\nuser_usec 70000\nsystem_usec 11234\nnice_usec 0\nnr_periods 40\nnr_throttled 31\nthrottled_usec 1500000\nnr_bursts 0\nburst_usec 0\n",
            &mut s,
        );
        assert_eq!(s.cpu_usage_usec, Some(81234));
        assert_eq!(s.cpu_system_usec, Some(11234));
        assert_eq!((s.cpu_nr_periods, s.cpu_nr_throttled), (Some(40), Some(31)));
        assert_eq!(s.cpu_throttled_usec, Some(1_500_000));
        // The hybrid unified tree has the core keys only.
        let mut s = Stats::default();
        parse(
            StatFile::V2Stat,
            "usage_usec 5\nuser_usec 4\nsystem_usec 1\nnice_usec 0\n",
            &mut s,
        );
        assert_eq!((s.cpu_usage_usec, s.cpu_nr_periods), (Some(5), None));
    }

    #[test]
    fn v1_files_captured() {
        let mut s = Stats::default();
        parse(StatFile::V1Usage, "2000123456\n", &mut s);
        parse(StatFile::V1User, "1500000000\n", &mut s);
        parse(
            StatFile::V1Stat,
            "nr_periods 20\nnr_throttled 16\nthrottled_time 1612345678\nnr_bursts 0\nburst_time 0\n",
            &mut s,
        );
        assert_eq!(s.cpu_usage_usec, Some(2_000_123));
        assert_eq!(s.cpu_user_usec, Some(1_500_000));
        assert_eq!(s.cpu_throttled_usec, Some(1_612_345));
        assert_eq!(s.cpu_nr_throttled, Some(16));
    }

    #[test]
    fn cpu_max_text() {
        assert_eq!(
            parse_cpu_max("max 100000\n"),
            Some(CpuMax {
                quota: Max::Unlimited,
                period: 100_000
            })
        );
        assert_eq!(
            parse_cpu_max("20000 100000\n"),
            Some(CpuMax {
                quota: Max::Limit(20_000),
                period: 100_000
            })
        );
        assert_eq!(parse_cpu_max("x"), None);
    }

    #[test]
    fn validation_ranges() {
        let ok = CpuMax {
            quota: Max::Limit(1_000),
            period: 100_000,
        };
        validate_max(ok).unwrap();
        validate_max(CpuMax {
            quota: Max::Unlimited,
            period: 1_000_000,
        })
        .unwrap();
        for bad in [
            CpuMax {
                quota: Max::Limit(999),
                period: 100_000,
            },
            CpuMax {
                quota: Max::Limit(10_000),
                period: 999,
            },
            CpuMax {
                quota: Max::Limit(10_000),
                period: 1_000_001,
            },
        ] {
            let e = validate_max(bad).unwrap_err().to_string();
            assert!(e.contains("cpu_max") && e.contains("allowed"), "{e}");
        }
    }
}
