//! Usage statistics of a group: one struct whose fields are all optional, filled from whatever
//! files this host has. [`StatsReader`] is the hot path: it keeps the files open and re-reads
//! them with `pread`, so a sample costs no `open`/`close` and no path walk.

use std::{fs::File, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{Group, cpu, io, memory, pids, units::Device};

/// A sample of a group's usage. `None`: this host (or this group) does not report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Total CPU time used, µs (`cpu.stat` usage_usec; v1 `cpuacct.usage` / 1000).
    pub cpu_usage_usec: Option<u64>,
    pub cpu_user_usec: Option<u64>,
    pub cpu_system_usec: Option<u64>,
    /// CFS periods elapsed while the group had a quota and was runnable.
    pub cpu_nr_periods: Option<u64>,
    /// Periods in which the group hit its quota.
    pub cpu_nr_throttled: Option<u64>,
    /// Time spent throttled, µs.
    pub cpu_throttled_usec: Option<u64>,
    /// Memory in use, bytes (`memory.current`; v1 `memory.usage_in_bytes`).
    pub memory_current: Option<u64>,
    /// Highest memory use seen, bytes (`memory.peak`; v1 `memory.max_usage_in_bytes`).
    pub memory_peak: Option<u64>,
    pub memory_anon: Option<u64>,
    pub memory_file: Option<u64>,
    pub memory_kernel: Option<u64>,
    /// Swap in use, bytes.
    pub memory_swap: Option<u64>,
    pub memory_events: MemoryEvents,
    /// Per-device IO since the group was created; empty when not reported.
    pub io: Vec<IoDeviceStats>,
    pub pids_current: Option<u64>,
    pub pids_peak: Option<u64>,
    /// Pressure stall information (cgroup2 only, also on hybrid hosts).
    pub cpu_pressure: Option<Pressure>,
    pub memory_pressure: Option<Pressure>,
    pub io_pressure: Option<Pressure>,
}

/// Counters of `memory.events` (v1: `max` is `memory.failcnt`, `oom_kill` from
/// `memory.oom_control`; `low`, `high` and `oom` do not exist there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEvents {
    pub low: Option<u64>,
    pub high: Option<u64>,
    pub max: Option<u64>,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
}

/// IO of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoDeviceStats {
    pub device: Option<Device>,
    pub rbytes: Option<u64>,
    pub wbytes: Option<u64>,
    pub rios: Option<u64>,
    pub wios: Option<u64>,
}

/// One `*.pressure` file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    pub some: Option<PsiLine>,
    pub full: Option<PsiLine>,
}

/// One PSI line: share of wall time stalled over 10, 60 and 300 s (percent), and the total
/// stall time in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total_usec: u64,
}

/// Which file a source is, so the right parser runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Cpu(cpu::StatFile),
    Memory(memory::StatFile),
    Pids(pids::StatFile),
    Io(io::StatFile),
    Pressure(Resource),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    Cpu,
    Memory,
    Io,
}

/// One stat file of a group.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub kind: Kind,
    pub path: PathBuf,
}

/// Every stat file this group's controllers offer, whether or not it exists.
pub(crate) fn sources(g: &Group) -> Vec<Source> {
    let mut out = Vec::new();
    cpu::sources(g, &mut out);
    memory::sources(g, &mut out);
    pids::sources(g, &mut out);
    io::sources(g, &mut out);
    if let Some(dir) = g.v2_dir() {
        for (r, name) in [
            (Resource::Cpu, "cpu.pressure"),
            (Resource::Memory, "memory.pressure"),
            (Resource::Io, "io.pressure"),
        ] {
            out.push(Source {
                kind: Kind::Pressure(r),
                path: dir.join(name),
            });
        }
    }
    out
}

/// Parses one file's content into `s`.
pub(crate) fn parse(kind: Kind, text: &str, s: &mut Stats) {
    match kind {
        Kind::Cpu(f) => cpu::parse(f, text, s),
        Kind::Memory(f) => memory::parse(f, text, s),
        Kind::Pids(f) => pids::parse(f, text, s),
        Kind::Io(f) => io::parse(f, text, s),
        Kind::Pressure(r) => {
            let p = parse_pressure(text);
            match r {
                Resource::Cpu => s.cpu_pressure = p,
                Resource::Memory => s.memory_pressure = p,
                Resource::Io => s.io_pressure = p,
            }
        }
    }
}

/// Parses a PSI file: `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and an optional `full`
/// line.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let mut p = Pressure::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let which = it.next()?;
        let mut l = PsiLine::default();
        for kv in it {
            let (k, v) = kv.split_once('=')?;
            match k {
                "avg10" => l.avg10 = v.parse().ok()?,
                "avg60" => l.avg60 = v.parse().ok()?,
                "avg300" => l.avg300 = v.parse().ok()?,
                "total" => l.total_usec = v.parse().ok()?,
                _ => {}
            }
        }
        match which {
            "some" => p.some = Some(l),
            "full" => p.full = Some(l),
            _ => {}
        }
    }
    (p.some.is_some() || p.full.is_some()).then_some(p)
}

/// Keeps a group's stat files open and samples them with `pread` (no `open`/`close`, no path
/// lookup per sample). Files missing when it was opened stay missing.
#[derive(Debug)]
pub struct StatsReader {
    files: Vec<(Kind, File)>,
    buf: Vec<u8>,
}

impl StatsReader {
    pub(crate) fn open(sources: Vec<Source>) -> StatsReader {
        let files = sources
            .into_iter()
            .filter_map(|s| File::open(&s.path).ok().map(|f| (s.kind, f)))
            .collect();
        StatsReader {
            files,
            buf: vec![0; 16 * 1024],
        }
    }

    /// How many files are kept open.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// Reads every open file from offset 0 and parses it.
    pub fn sample(&mut self) -> Stats {
        let mut s = Stats::default();
        for (kind, file) in &self.files {
            let mut len = 0;
            loop {
                match nix::sys::uio::pread(file, &mut self.buf[len..], len as i64) {
                    Ok(0) => break,
                    Ok(n) => {
                        len += n;
                        if len == self.buf.len() {
                            self.buf.resize(self.buf.len() * 2, 0);
                        }
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => {
                        len = usize::MAX;
                        break;
                    }
                }
            }
            if len == usize::MAX {
                continue;
            }
            if let Ok(text) = std::str::from_utf8(&self.buf[..len]) {
                parse(*kind, text, &mut s);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure() {
        let p = parse_pressure(
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
        )
        .unwrap();
        assert_eq!(p.some.unwrap().avg10, 1.5);
        assert_eq!(p.some.unwrap().total_usec, 12345);
        assert_eq!(p.full.unwrap().total_usec, 7);
        // cpu.pressure on older kernels has no `full` line.
        let p = parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").unwrap();
        assert!(p.full.is_none());
        assert!(parse_pressure("").is_none());
        assert!(parse_pressure("some avg10=x\n").is_none());
    }
}
