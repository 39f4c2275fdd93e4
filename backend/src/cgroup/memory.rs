//! Memory and swap limits and usage (`memory`).

use super::{
    CgroupError, Controller, Group, Place,
    caps::Knob,
    fs,
    limits::{Limits, LimitsUpdate, Plan},
    stats::{Kind, Source, Stats},
    units::{self, Max},
};

// v2 files.
pub const MAX: &str = "memory.max";
pub const HIGH: &str = "memory.high";
pub const LOW: &str = "memory.low";
pub const MIN: &str = "memory.min";
pub const SWAP_MAX: &str = "memory.swap.max";
pub const CURRENT: &str = "memory.current";
pub const PEAK: &str = "memory.peak";
pub const STAT: &str = "memory.stat";
pub const EVENTS: &str = "memory.events";
pub const SWAP_CURRENT: &str = "memory.swap.current";
// v1 files.
pub const V1_LIMIT: &str = "memory.limit_in_bytes";
pub const V1_SOFT_LIMIT: &str = "memory.soft_limit_in_bytes";
pub const V1_MEMSW_LIMIT: &str = "memory.memsw.limit_in_bytes";
pub const V1_USAGE: &str = "memory.usage_in_bytes";
pub const V1_MAX_USAGE: &str = "memory.max_usage_in_bytes";
pub const V1_STAT: &str = "memory.stat";
pub const V1_OOM_CONTROL: &str = "memory.oom_control";
pub const V1_FAILCNT: &str = "memory.failcnt";
pub const V1_KMEM_USAGE: &str = "memory.kmem.usage_in_bytes";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatFile {
    Current,
    Peak,
    Stat,
    Events,
    SwapCurrent,
    V1Usage,
    V1MaxUsage,
    V1Stat,
    V1OomControl,
    V1Failcnt,
    V1KmemUsage,
}

fn unsupported(field: &'static str, reason: &str) -> CgroupError {
    CgroupError::Unsupported {
        field,
        reason: reason.to_owned(),
    }
}

const NO_MEMORY: &str = "the memory controller is not available to Corral's cgroups";

fn current_usage(p: Place<'_>) -> Option<u64> {
    fs::read_u64(&p.dir.join(if p.v2 { CURRENT } else { V1_USAGE }))
}

/// Rejects a hard limit below what the group uses now: the kernel would reclaim and then
/// OOM-kill, which is not what "change the limit" should mean.
fn check_not_below_usage(p: Place<'_>, max: Max) -> Result<(), CgroupError> {
    if let (Max::Limit(n), Some(cur)) = (max, current_usage(p))
        && n < cur
    {
        return Err(CgroupError::Invalid {
            field: "memory_max",
            value: n.to_string(),
            allowed: format!("at least the current usage of {cur} bytes, or max"),
        });
    }
    Ok(())
}

pub(crate) fn plan(g: &Group, u: &LimitsUpdate, plan: &mut Plan) -> Result<(), CgroupError> {
    let any = u.memory_max.is_some()
        || u.memory_high.is_some()
        || u.memory_low.is_some()
        || u.memory_min.is_some()
        || u.swap_max.is_some();
    if !any {
        return Ok(());
    }
    let field = if u.memory_max.is_some() {
        "memory_max"
    } else {
        "swap_max"
    };
    let p = g
        .place(Controller::Memory)
        .ok_or_else(|| unsupported(field, NO_MEMORY))?;
    if let Some(max) = u.memory_max {
        check_not_below_usage(p, max)?;
    }
    if p.v2 {
        plan_v2(p, u, plan)
    } else {
        plan_v1(p, u, plan)
    }
}

fn plan_v2(p: Place<'_>, u: &LimitsUpdate, plan: &mut Plan) -> Result<(), CgroupError> {
    // memory.max before memory.swap.max (runc, youki).
    for (value, file) in [
        (u.memory_max, MAX),
        (u.memory_high, HIGH),
        (u.memory_low, LOW),
        (u.memory_min, MIN),
    ] {
        if let Some(v) = value {
            plan.set(p.dir.join(file), v.to_v2())?;
        }
    }
    if let Some(swap) = u.swap_max {
        let file = p.dir.join(SWAP_MAX);
        if !file.exists() {
            return Err(unsupported(
                "swap_max",
                "this kernel has no swap accounting (memory.swap.max is missing)",
            ));
        }
        plan.set(file, swap.to_v2())?;
    }
    Ok(())
}

fn plan_v1(p: Place<'_>, u: &LimitsUpdate, plan: &mut Plan) -> Result<(), CgroupError> {
    if u.memory_high.is_some() {
        return Err(unsupported(
            "memory_high",
            "cgroup v1 has no memory.high; use memory_max",
        ));
    }
    if u.memory_min.is_some() {
        return Err(unsupported(
            "memory_min",
            "cgroup v1 has no memory.min; memory_low maps to memory.soft_limit_in_bytes",
        ));
    }
    let limit_file = p.dir.join(V1_LIMIT);
    let memsw_file = p.dir.join(V1_MEMSW_LIMIT);
    let read_max = |f: &std::path::Path| -> Result<Max, CgroupError> {
        let t = fs::read(f)?;
        Max::parse_v1(&t).ok_or_else(|| CgroupError::Invalid {
            field: "memory_max",
            value: t.trim().to_owned(),
            allowed: "a number the kernel wrote".into(),
        })
    };
    let cur_mem = read_max(&limit_file)?;
    let has_memsw = memsw_file.exists();
    if u.swap_max.is_some() && !has_memsw {
        return Err(unsupported(
            "swap_max",
            "swap accounting is off (memory.memsw.limit_in_bytes is missing; boot with swapaccount=1)",
        ));
    }
    let target_mem = u.memory_max.unwrap_or(cur_mem);
    // v1 swap lives in memsw = memory + swap; keep the swap part when only memory changes.
    let memsw_change = if has_memsw {
        let cur_memsw = read_max(&memsw_file)?;
        let target = match u.swap_max {
            Some(swap) => {
                if target_mem == Max::Unlimited && swap != Max::Unlimited {
                    return Err(unsupported(
                        "swap_max",
                        "cgroup v1 can only limit swap together with a memory_max",
                    ));
                }
                Some(units::memsw(target_mem, swap))
            }
            None if u.memory_max.is_some() => {
                let swap = units::swap_from_memsw(cur_mem, cur_memsw);
                Some(if cur_memsw == Max::Unlimited {
                    Max::Unlimited
                } else {
                    units::memsw(target_mem, swap)
                })
            }
            None => None,
        };
        target.filter(|t| *t != cur_memsw).map(|t| (t, cur_memsw))
    } else {
        None
    };
    // The kernel keeps memory ≤ memsw at every moment: raise memsw first when memory grows
    // past it, otherwise lower memory first.
    let mem_write = u
        .memory_max
        .map(|m| (limit_file.clone(), m.to_v1(), cur_mem.to_v1()));
    let memsw_write = memsw_change.map(|(t, cur)| (memsw_file.clone(), t.to_v1(), cur.to_v1()));
    let memsw_first = memsw_change.is_some_and(|(_, cur)| target_mem.as_u64() > cur.as_u64());
    let ordered = if memsw_first {
        [memsw_write, mem_write]
    } else {
        [mem_write, memsw_write]
    };
    for (path, value, undo) in ordered.into_iter().flatten() {
        plan.push(path, value, undo);
    }
    if let Some(low) = u.memory_low {
        let file = p.dir.join(V1_SOFT_LIMIT);
        let undo = Max::parse_v1(&fs::read(&file)?)
            .unwrap_or(Max::Unlimited)
            .to_v1();
        plan.push(file, low.to_v1(), undo);
    }
    Ok(())
}

pub(crate) fn read(g: &Group, l: &mut Limits) {
    let Some(p) = g.place(Controller::Memory) else {
        return;
    };
    let v2 = |f: &str| fs::read_opt(&p.dir.join(f)).and_then(|t| Max::parse_v2(&t));
    let v1 = |f: &str| fs::read_opt(&p.dir.join(f)).and_then(|t| Max::parse_v1(&t));
    if p.v2 {
        l.memory_max = v2(MAX);
        l.memory_high = v2(HIGH);
        l.memory_low = v2(LOW);
        l.memory_min = v2(MIN);
        l.swap_max = v2(SWAP_MAX);
    } else {
        l.memory_max = v1(V1_LIMIT);
        l.memory_low = v1(V1_SOFT_LIMIT);
        if let (Some(m), Some(t)) = (l.memory_max, v1(V1_MEMSW_LIMIT)) {
            l.swap_max = Some(units::swap_from_memsw(m, t));
        }
    }
}

pub(crate) fn sources(g: &Group, out: &mut Vec<Source>) {
    let Some(p) = g.place(Controller::Memory) else {
        return;
    };
    let files: &[(StatFile, &str)] = if p.v2 {
        &[
            (StatFile::Current, CURRENT),
            (StatFile::Peak, PEAK),
            (StatFile::Stat, STAT),
            (StatFile::Events, EVENTS),
            (StatFile::SwapCurrent, SWAP_CURRENT),
        ]
    } else {
        &[
            (StatFile::V1Usage, V1_USAGE),
            (StatFile::V1MaxUsage, V1_MAX_USAGE),
            (StatFile::V1Stat, V1_STAT),
            (StatFile::V1OomControl, V1_OOM_CONTROL),
            (StatFile::V1Failcnt, V1_FAILCNT),
            (StatFile::V1KmemUsage, V1_KMEM_USAGE),
        ]
    };
    for (f, name) in files {
        out.push(Source {
            kind: Kind::Memory(*f),
            path: p.dir.join(name),
        });
    }
}

pub(crate) fn parse(f: StatFile, text: &str, s: &mut Stats) {
    let num = || text.trim().parse::<u64>().ok();
    match f {
        StatFile::Current | StatFile::V1Usage => s.memory_current = num(),
        StatFile::Peak | StatFile::V1MaxUsage => s.memory_peak = num(),
        StatFile::SwapCurrent => s.memory_swap = num(),
        StatFile::V1KmemUsage => s.memory_kernel = num(),
        StatFile::V1Failcnt => s.memory_events.max = num(),
        StatFile::Stat => {
            s.memory_anon = fs::flat_get(text, "anon");
            s.memory_file = fs::flat_get(text, "file");
            // `kernel` since 5.18; before that, its main parts.
            s.memory_kernel = fs::flat_get(text, "kernel").or_else(|| {
                let parts = ["kernel_stack", "slab", "percpu", "sock", "pagetables"];
                let vals: Vec<u64> = parts.iter().filter_map(|k| fs::flat_get(text, k)).collect();
                (!vals.is_empty()).then(|| vals.iter().sum())
            });
        }
        StatFile::V1Stat => {
            s.memory_anon = fs::flat_get(text, "total_rss");
            s.memory_file = fs::flat_get(text, "total_cache");
            s.memory_swap = fs::flat_get(text, "total_swap");
        }
        StatFile::Events => {
            let e = &mut s.memory_events;
            e.low = fs::flat_get(text, "low");
            e.high = fs::flat_get(text, "high");
            e.max = fs::flat_get(text, "max");
            e.oom = fs::flat_get(text, "oom");
            e.oom_kill = fs::flat_get(text, "oom_kill");
        }
        StatFile::V1OomControl => s.memory_events.oom_kill = fs::flat_get(text, "oom_kill"),
    }
}

pub(crate) fn knobs(g: &Group, out: &mut Vec<Knob>) {
    let p = g.place(Controller::Memory);
    if p.is_some_and(|p| !p.v2) {
        out.push(Knob::probe("memory_max", "memory", p, &[V1_LIMIT], None));
        out.push(Knob::missing(
            "memory_high",
            "memory",
            "cgroup v1 has no memory.high",
        ));
        out.push(Knob::probe(
            "memory_low",
            "memory",
            p,
            &[V1_SOFT_LIMIT],
            Some("v1 memory.soft_limit_in_bytes: reclaimed towards under pressure, not protected"),
        ));
        out.push(Knob::missing(
            "memory_min",
            "memory",
            "cgroup v1 has no memory.min",
        ));
        out.push(Knob::probe(
            "swap_max",
            "memory",
            p,
            &[V1_MEMSW_LIMIT],
            Some("v1 memory.memsw.limit_in_bytes = memory_max + swap_max"),
        ));
    } else {
        out.push(Knob::probe("memory_max", "memory", p, &[MAX], None));
        out.push(Knob::probe("memory_high", "memory", p, &[HIGH], None));
        out.push(Knob::probe("memory_low", "memory", p, &[LOW], None));
        out.push(Knob::probe("memory_min", "memory", p, &[MIN], None));
        out.push(Knob::probe("swap_max", "memory", p, &[SWAP_MAX], None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_files() {
        let mut s = Stats::default();
        parse(StatFile::Current, "4096\n", &mut s);
        parse(
            StatFile::Stat,
            "anon 1048576\nfile 8192\nkernel 65536\nkernel_stack 16384\nslab 30000\nsock 0\n",
            &mut s,
        );
        parse(
            StatFile::Events,
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
            &mut s,
        );
        assert_eq!(s.memory_current, Some(4096));
        assert_eq!(
            (s.memory_anon, s.memory_file, s.memory_kernel),
            (Some(1 << 20), Some(8192), Some(65536))
        );
        assert_eq!(s.memory_events.max, Some(12));
        assert_eq!(s.memory_events.oom_kill, Some(1));
        // Before 5.18: the parts of `kernel`.
        let mut s = Stats::default();
        parse(
            StatFile::Stat,
            "anon 0\nkernel_stack 16\nslab 30\npercpu 4\n",
            &mut s,
        );
        assert_eq!(s.memory_kernel, Some(50));
    }

    #[test]
    fn v1_files_captured() {
        let mut s = Stats::default();
        parse(
            StatFile::V1Stat,
            "cache 0\nrss 0\nrss_huge 0\nswap 0\ntotal_cache 12288\ntotal_rss 2097152\ntotal_rss_huge 0\ntotal_shmem 0\ntotal_swap 4096\n",
            &mut s,
        );
        parse(
            StatFile::V1OomControl,
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
            &mut s,
        );
        parse(StatFile::V1Failcnt, "37\n", &mut s);
        assert_eq!(
            (s.memory_anon, s.memory_file, s.memory_swap),
            (Some(2 << 20), Some(12288), Some(4096))
        );
        assert_eq!(s.memory_events.oom_kill, Some(1));
        assert_eq!(s.memory_events.max, Some(37));
        assert_eq!(s.memory_events.oom, None);
    }
}
