//! Task-count limit (`pids`). Same files on v1 and v2.

use super::{
    CgroupError, Controller, Group,
    caps::Knob,
    fs,
    limits::{Limits, LimitsUpdate, Plan},
    stats::{Kind, Source, Stats},
    units::Max,
};

/// `max` or a number of tasks.
pub const MAX: &str = "pids.max";
pub const CURRENT: &str = "pids.current";
/// Since 6.x on both versions.
pub const PEAK: &str = "pids.peak";

/// The kernel's PID_MAX_LIMIT.
const LIMIT: u64 = 4_194_304;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatFile {
    Current,
    Peak,
}

pub(crate) fn plan(g: &Group, u: &LimitsUpdate, plan: &mut Plan) -> Result<(), CgroupError> {
    let Some(max) = u.pids_max else {
        return Ok(());
    };
    if let Max::Limit(n) = max
        && !(1..=LIMIT).contains(&n)
    {
        return Err(CgroupError::Invalid {
            field: "pids_max",
            value: n.to_string(),
            allowed: format!("1 to {LIMIT}, or max"),
        });
    }
    let p = g
        .place(Controller::Pids)
        .ok_or_else(|| CgroupError::Unsupported {
            field: "pids_max",
            reason: "the pids controller is not available to Corral's cgroups".into(),
        })?;
    plan.set(p.dir.join(MAX), max.to_v2())
}

pub(crate) fn read(g: &Group, l: &mut Limits) {
    if let Some(p) = g.place(Controller::Pids) {
        l.pids_max = fs::read_opt(&p.dir.join(MAX)).and_then(|t| Max::parse_v2(&t));
    }
}

pub(crate) fn sources(g: &Group, out: &mut Vec<Source>) {
    if let Some(p) = g.place(Controller::Pids) {
        for (f, name) in [(StatFile::Current, CURRENT), (StatFile::Peak, PEAK)] {
            out.push(Source {
                kind: Kind::Pids(f),
                path: p.dir.join(name),
            });
        }
    }
}

pub(crate) fn parse(f: StatFile, text: &str, s: &mut Stats) {
    let n = text.trim().parse().ok();
    match f {
        StatFile::Current => s.pids_current = n,
        StatFile::Peak => s.pids_peak = n,
    }
}

pub(crate) fn knobs(g: &Group, out: &mut Vec<Knob>) {
    out.push(Knob::probe(
        "pids_max",
        "pids",
        g.place(Controller::Pids),
        &[MAX],
        None,
    ));
}
