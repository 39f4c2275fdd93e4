//! `corral info`: the host's cgroup mode and capability matrix, and whether containers can be
//! checkpointed here (and why not), from `GET /api/v1/host`;
//! `--cgroups`: the host's cgroup tree as the caller may see it (`GET /api/v1/host/cgroups`).
//! `corral whoami`: who the daemon takes the caller for (`GET /api/v1/me`).

use clap::Args;

use crate::client::{Client, ClientError};

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The host's cgroup tree with each group's usage (admins: all of it; others: the roots
    /// and their own teams' subtrees), as the dashboard's host page shows it.
    #[arg(long)]
    pub cgroups: bool,
}

/// `corral info`.
pub async fn info(client: &Client, a: &InfoArgs) -> Result<(), ClientError> {
    if a.cgroups {
        let t: wire::CgroupTree = client.get("/api/v1/host/cgroups").await?;
        print!("{}", render_tree(&t));
        return Ok(());
    }
    let h: wire::HostInfo = client.get("/api/v1/host").await?;
    print!("{}", render(&h));
    Ok(())
}

/// `corral whoami`.
pub async fn whoami(client: &Client) -> Result<(), ClientError> {
    let me: wire::Me = client.get("/api/v1/me").await?;
    println!(
        "{} ({}, via {}) teams: {}",
        me.name,
        me.role,
        me.via,
        if me.teams.is_empty() {
            "-".to_owned()
        } else {
            me.teams.join(",")
        }
    );
    Ok(())
}

/// The tree, one group a line, indented by depth; `*` marks Corral's own groups.
fn render_tree(t: &wire::CgroupTree) -> String {
    let num = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let mut out = format!("cgroup mode {}\n", t.cgroup_mode);
    for h in &t.hierarchies {
        out.push_str(&format!(
            "\n{} ({})\n{:<48} {:>14} {:>12} {:>6} {:>6}\n",
            h.name, h.mount, "GROUP", "CPU USEC", "MEMORY", "PIDS", "PROCS"
        ));
        for n in &h.nodes {
            let name = format!(
                "{}{}{}",
                "  ".repeat(n.depth as usize),
                n.path,
                if n.corral { " *" } else { "" }
            );
            out.push_str(&format!(
                "{name:<48} {:>14} {:>12} {:>6} {:>6}\n",
                num(n.cpu_usage_usec),
                n.memory_current
                    .map_or_else(|| "-".to_owned(), |b| super::billing::human_bytes(b as f64)),
                num(n.pids_current),
                num(n.procs)
            ));
        }
        if h.truncated {
            out.push_str("(more groups left out)\n");
        }
    }
    out
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `available (criu 3.17.1)`, or `unavailable: WHY`.
fn checkpoint_line(c: &wire::CheckpointSupport) -> String {
    let criu = c
        .version
        .as_deref()
        .map(|v| format!("criu {v}"))
        .unwrap_or_else(|| "criu".to_owned());
    if c.available {
        format!("available ({criu})")
    } else if c.version.is_some() {
        format!("unavailable ({criu}): {}", c.reason)
    } else {
        format!("unavailable: {}", c.reason)
    }
}

/// The text `corral info` prints.
pub fn render(h: &wire::HostInfo) -> String {
    let mut out = String::new();
    let gib = h.memory_bytes as f64 / f64::from(1u32 << 30);
    if let Some(id) = &h.host_id {
        out.push_str(&format!("Host id:      {id} (--host-id)\n"));
    }
    if let Some(l) = &h.ledger {
        let state = match (&l.last_error, l.connected) {
            (None, true) => "shipping".to_owned(),
            (Some(e), _) => format!("unavailable ({e})"),
            (None, false) => "connecting".to_owned(),
        };
        out.push_str(&format!(
            "Ledger:       {}{}: {state}; {} rows shipped, {} waiting{}{}\n",
            l.target,
            if l.hub { " (hub)" } else { "" },
            l.shipped_rows,
            l.backlog_rows,
            l.backlog_oldest
                .as_ref()
                .map(|t| format!(" since {t}"))
                .unwrap_or_default(),
            if l.alarm {
                " — ALARM: backlog older than 6 h"
            } else {
                ""
            },
        ));
    }
    out.push_str(&format!("Kernel:       {}\n", h.kernel));
    out.push_str(&format!("CPUs:         {}\n", h.cpus));
    out.push_str(&format!("Memory:       {gib:.1} GiB\n"));
    out.push_str(&format!(
        "Default mem:  {}\n",
        match h.default_memory {
            Some(b) => format!(
                "{:.0} MiB per container without a limit (--default-memory)",
                b as f64 / f64::from(1u32 << 20)
            ),
            None => "none (containers without a limit are bounded by the host only)".to_owned(),
        }
    ));
    out.push_str(&format!(
        "Cgroups:      {} (subtree {})\n",
        h.cgroup_mode, h.cgroup_root
    ));
    out.push_str(&format!(
        "Freeze:       {}\nKill:         {}\nPSI:          {}\n",
        h.freeze.as_deref().unwrap_or("unavailable"),
        h.kill,
        yes(h.psi)
    ));
    out.push_str(&format!(
        "Checkpoint:   {}\n",
        checkpoint_line(&h.checkpoint)
    ));
    let d = &h.devices;
    out.push_str(&format!(
        "Devices:      {} ({} allowed{})\n",
        if d.enforcement.is_empty() {
            "no device cgroup: nodev mounts only".to_owned()
        } else {
            d.enforcement.join(" + ")
        },
        d.allowed.len(),
        if d.nodev { ", /dev nodev" } else { "" }
    ));
    for a in &d.allowed {
        out.push_str(&format!("              {a}\n"));
    }
    out.push_str("\nCONTROLLER  VERSION  HIERARCHY\n");
    for c in &h.controllers {
        out.push_str(&format!(
            "{:<11} {:<8} {}\n",
            c.name,
            c.version.as_deref().unwrap_or("-"),
            c.hierarchy.as_deref().unwrap_or("-")
        ));
    }
    // Only what can be set here: a knob the host lacks (or nothing can set) is named below.
    out.push_str("\nLIMIT        LIVE  FILES\n");
    for k in h.knobs.iter().filter(|k| k.available) {
        out.push_str(&format!(
            "{:<12} {:<5} {}\n",
            k.name,
            yes(k.live),
            if k.files.is_empty() {
                "-".to_owned()
            } else {
                k.files.join(" ")
            }
        ));
        if let Some(note) = &k.note {
            out.push_str(&format!("{:<19} ({note})\n", ""));
        }
    }
    let missing: Vec<String> = h
        .knobs
        .iter()
        .filter(|k| !k.available)
        .map(|k| match &k.note {
            Some(n) => format!("{} ({n})", k.name),
            None => k.name.clone(),
        })
        .collect();
    if !missing.is_empty() {
        out.push_str("\nNot settable on this host:\n");
        for m in missing {
            out.push_str(&format!("  {m}\n"));
        }
    }
    out
}
