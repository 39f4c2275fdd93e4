//! CPU and memory-node pinning (`cpuset`). Same file names on v1 and v2, except the effective
//! sets.

use std::path::Path;

use super::{
    CgroupError, Controller, Group,
    caps::Knob,
    fs,
    limits::{Limits, LimitsUpdate, Plan},
    units::parse_id_list,
};

pub const CPUS: &str = "cpuset.cpus";
pub const MEMS: &str = "cpuset.mems";
/// v2 effective sets (what the group really gets).
pub const V2_EFFECTIVE_CPUS: &str = "cpuset.cpus.effective";
pub const V2_EFFECTIVE_MEMS: &str = "cpuset.mems.effective";
/// v1 effective sets.
pub const V1_EFFECTIVE_CPUS: &str = "cpuset.effective_cpus";
pub const V1_EFFECTIVE_MEMS: &str = "cpuset.effective_mems";

/// A new v1 cpuset starts with empty cpus and mems and can hold no task: copy the parent's.
pub(crate) fn inherit_v1(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for name in [CPUS, MEMS] {
        if fs::read(&dir.join(name))?.trim().is_empty() {
            let value = fs::read(&parent.join(name))?;
            fs::write(&dir.join(name), value.trim())?;
        }
    }
    Ok(())
}

/// Renders a set as a kernel list (`0-3,6`).
fn render(ids: &std::collections::BTreeSet<u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = ids.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

pub(crate) fn plan(g: &Group, u: &LimitsUpdate, plan: &mut Plan) -> Result<(), CgroupError> {
    for (field, value, file, what) in [
        ("cpuset_cpus", &u.cpuset_cpus, CPUS, "cpus"),
        ("cpuset_mems", &u.cpuset_mems, MEMS, "memory nodes"),
    ] {
        let Some(value) = value else {
            continue;
        };
        let p = g
            .place(Controller::Cpuset)
            .ok_or_else(|| CgroupError::Unsupported {
                field,
                reason: "the cpuset controller is not available to Corral's cgroups".into(),
            })?;
        let wanted = parse_id_list(value).ok_or_else(|| CgroupError::Invalid {
            field,
            value: value.clone(),
            allowed: format!("a list of {what} like 0-3,6"),
        })?;
        let parent = g.parent_dir(Controller::Cpuset).unwrap_or(p.dir);
        let effective_name = match (p.v2, file) {
            (true, CPUS) => V2_EFFECTIVE_CPUS,
            (true, _) => V2_EFFECTIVE_MEMS,
            (false, CPUS) => V1_EFFECTIVE_CPUS,
            (false, _) => V1_EFFECTIVE_MEMS,
        };
        let parent_text = fs::read(&parent.join(effective_name))?;
        let allowed = parse_id_list(&parent_text).unwrap_or_default();
        // Empty means "the parent's": cgroup2 says so itself; v1 needs the list written out.
        let wanted = if wanted.is_empty() && !p.v2 {
            allowed.clone()
        } else {
            wanted
        };
        if (wanted.is_empty() && !p.v2) || !wanted.is_subset(&allowed) {
            return Err(CgroupError::Invalid {
                field,
                value: value.clone(),
                allowed: format!(
                    "a non-empty subset of the parent's effective {what} {}",
                    parent_text.trim()
                ),
            });
        }
        plan.set(p.dir.join(file), render(&wanted))?;
    }
    Ok(())
}

pub(crate) fn read(g: &Group, l: &mut Limits) {
    if let Some(p) = g.place(Controller::Cpuset) {
        l.cpuset_cpus = fs::read_opt(&p.dir.join(CPUS)).map(|s| s.trim().to_owned());
        l.cpuset_mems = fs::read_opt(&p.dir.join(MEMS)).map(|s| s.trim().to_owned());
    }
}

pub(crate) fn knobs(g: &Group, out: &mut Vec<Knob>) {
    let p = g.place(Controller::Cpuset);
    out.push(Knob::probe("cpuset_cpus", "cpuset", p, &[CPUS], None));
    out.push(Knob::probe("cpuset_mems", "cpuset", p, &[MEMS], None));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists() {
        for s in ["", "0", "0-3", "0-3,6", "1,3,5-7"] {
            assert_eq!(render(&parse_id_list(s).unwrap()), s);
        }
    }
}
