//! The narrow hot path for metering: [`UsageReader`] keeps open only the files billing needs and
//! parses them straight from the bytes `pread` returned (no UTF-8 check, no `String`, no
//! per-sample allocation).
//!
//! Files are split by how often they must be read:
//! - every tick ([`UsageReader::read_fast`]): CPU usage (v2 `cpu.stat`, which also carries
//!   `throttled_usec`; v1 `cpuacct.usage`), memory in use (`memory.current`; v1
//!   `memory.usage_in_bytes`), IO (`io.stat`; v1 `blkio.throttle.io_service{_bytes,d}_recursive`)
//!   and tasks (`pids.current`);
//! - now and then ([`UsageReader::read_all`]): the cumulative maxima (`memory.peak`,
//!   `pids.peak`; v1 `memory.max_usage_in_bytes`), OOM kills (`memory.events`; v1
//!   `memory.oom_control`) and v1 throttling (the cpu hierarchy's `cpu.stat`). They are
//!   cumulative, so reading them less often loses nothing: what happened in between shows up
//!   at the next full read.
//! - once a minute ([`UsageReader::read_reservation`]): what the group reserves for billing —
//!   `cpu.max` (v1 CFS quota and period), `cpuset.cpus` and `memory.max` (v1
//!   `memory.limit_in_bytes`) — kept open too, instead of reading every limit file.
//!
//! A file that cannot be read (the group is being removed) leaves its fields at their previous
//! value: a failed read never looks like a counter reset.

use std::fs::File;

use super::{
    Controller, Group, Limits, cpu, cpuset, io, memory, pids,
    units::{CpuMax, Max},
};

/// The cumulative counters and gauges metering bills from. A quantity this host does not
/// report stays 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageSample {
    /// CPU time used since the group was created, µs.
    pub cpu_usec: u64,
    /// Time throttled by the CFS quota, µs.
    pub throttled_usec: u64,
    /// Memory in use, bytes.
    pub memory_current: u64,
    /// Highest memory use since the group was created, bytes.
    pub memory_peak: u64,
    /// OOM kills since the group was created.
    pub oom_kills: u64,
    /// IO summed over devices.
    pub io_rbytes: u64,
    pub io_wbytes: u64,
    pub io_rios: u64,
    pub io_wios: u64,
    pub pids_current: u64,
    pub pids_peak: u64,
    /// PSI `some avg10` of cpu, memory and io, hundredths of a percent (cgroup v2 only; read
    /// with the slow files — it is a 10 s average).
    pub pressure_some_avg10: [Option<u32>; 3],
    /// PSI `total=` of cpu, memory and io, `[some, full]` each: µs stalled since the group
    /// was created (cumulative; read with the slow files; `None` where the kernel prints no
    /// such line, e.g. cpu `full` before Linux 5.13).
    pub pressure_total_usec: [[Option<u64>; 2]; 3],
}

/// Which file, so the right byte parser runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// v2 `cpu.stat`: `usage_usec`, `throttled_usec`.
    CpuStat,
    /// v1 `cpuacct.usage`, ns.
    CpuacctUsage,
    /// v1 `cpu.stat` of the cpu hierarchy: `throttled_time` ns.
    CpuStatV1,
    MemoryCurrent,
    MemoryPeak,
    /// v2 `memory.events`: `oom_kill`.
    MemoryEvents,
    /// v1 `memory.oom_control`: `oom_kill`.
    OomControl,
    /// v2 `io.stat`.
    IoStat,
    /// v1 `blkio.throttle.io_service_bytes_recursive`.
    BlkioBytes,
    /// v1 `blkio.throttle.io_serviced_recursive`.
    BlkioIos,
    PidsCurrent,
    PidsPeak,
    /// `cpu.pressure`, `memory.pressure`, `io.pressure` (index into
    /// [`UsageSample::pressure_some_avg10`]).
    Pressure(usize),
}

impl Group {
    /// A reader that keeps only this group's billing files open (see [`UsageReader`]).
    pub fn usage_reader(&self) -> UsageReader {
        UsageReader::open(self)
    }
}

/// Keeps a group's billing files open; see the module doc.
#[derive(Debug)]
pub struct UsageReader {
    /// Read every tick.
    fast: Vec<(Src, File)>,
    /// Read by [`UsageReader::read_all`] only.
    slow: Vec<(Src, File)>,
    /// Read by [`UsageReader::read_reservation`] only.
    limits: Vec<(Lim, File)>,
    buf: Vec<u8>,
}

/// The limit files a reservation is priced from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lim {
    CpuMax,
    CpuQuotaV1,
    CpuPeriodV1,
    CpusetCpus,
    MemoryMax,
    MemoryLimitV1,
}

impl UsageReader {
    /// Opens whichever of the group's billing files exist (see the module doc).
    pub fn open(g: &Group) -> UsageReader {
        let mut fast = Vec::new();
        let mut slow = Vec::new();
        let mut limits = Vec::new();
        let mut limit = |kind: Lim, dir: &std::path::Path, name: &str| {
            if let Ok(f) = File::open(dir.join(name)) {
                limits.push((kind, f));
            }
        };
        if let Some(p) = g.place(Controller::Cpu) {
            if p.v2 {
                limit(Lim::CpuMax, p.dir, cpu::MAX);
            } else {
                limit(Lim::CpuQuotaV1, p.dir, cpu::V1_QUOTA);
                limit(Lim::CpuPeriodV1, p.dir, cpu::V1_PERIOD);
            }
        }
        if let Some(p) = g.place(Controller::Cpuset) {
            limit(Lim::CpusetCpus, p.dir, cpuset::CPUS);
        }
        if let Some(p) = g.place(Controller::Memory) {
            if p.v2 {
                limit(Lim::MemoryMax, p.dir, memory::MAX);
            } else {
                limit(Lim::MemoryLimitV1, p.dir, memory::V1_LIMIT);
            }
        }
        let mut add = |to_fast: bool, kind: Src, dir: &std::path::Path, name: &str| {
            if let Ok(f) = File::open(dir.join(name)) {
                if to_fast {
                    fast.push((kind, f));
                } else {
                    slow.push((kind, f));
                }
            }
        };
        if let Some(p) = g.place(Controller::Cpuacct) {
            if p.v2 {
                add(true, Src::CpuStat, p.dir, cpu::STAT);
            } else {
                add(true, Src::CpuacctUsage, p.dir, cpu::V1_USAGE);
            }
        }
        if let Some(p) = g.place(Controller::Cpu)
            && !p.v2
        {
            add(false, Src::CpuStatV1, p.dir, cpu::STAT);
        }
        if let Some(p) = g.place(Controller::Memory) {
            if p.v2 {
                add(true, Src::MemoryCurrent, p.dir, memory::CURRENT);
                add(false, Src::MemoryPeak, p.dir, memory::PEAK);
                add(false, Src::MemoryEvents, p.dir, memory::EVENTS);
            } else {
                add(true, Src::MemoryCurrent, p.dir, memory::V1_USAGE);
                add(false, Src::MemoryPeak, p.dir, memory::V1_MAX_USAGE);
                add(false, Src::OomControl, p.dir, memory::V1_OOM_CONTROL);
            }
        }
        if let Some(p) = g.place(Controller::Io) {
            if p.v2 {
                add(true, Src::IoStat, p.dir, io::STAT);
            } else {
                add(true, Src::BlkioBytes, p.dir, io::V1_BYTES);
                add(true, Src::BlkioIos, p.dir, io::V1_IOS);
            }
        }
        if let Some(p) = g.place(Controller::Pids) {
            add(true, Src::PidsCurrent, p.dir, pids::CURRENT);
            add(false, Src::PidsPeak, p.dir, pids::PEAK);
        }
        if let Some(dir) = g.v2_dir() {
            for (i, name) in ["cpu.pressure", "memory.pressure", "io.pressure"]
                .into_iter()
                .enumerate()
            {
                add(false, Src::Pressure(i), dir, name);
            }
        }
        UsageReader {
            fast,
            slow,
            limits,
            buf: vec![0; 1024],
        }
    }

    /// Files kept open: (read every tick, read by [`UsageReader::read_all`] only).
    pub fn open_files(&self) -> (usize, usize) {
        (self.fast.len(), self.slow.len())
    }

    /// Re-reads the every-tick files into `s`; the peaks, OOM kills and v1 throttling keep the
    /// values `s` already holds.
    pub fn read_fast(&mut self, s: &mut UsageSample) {
        for (kind, file) in &self.fast {
            if let Some(len) = pread_all(file, &mut self.buf) {
                parse(*kind, &self.buf[..len], s);
            }
        }
    }

    /// Re-reads every file into `s`.
    pub fn read_all(&mut self, s: &mut UsageSample) {
        self.read_fast(s);
        for (kind, file) in &self.slow {
            if let Some(len) = pread_all(file, &mut self.buf) {
                parse(*kind, &self.buf[..len], s);
            }
        }
    }

    /// The limits a reservation is priced from (`cpu_max`, `cpuset_cpus`, `memory_max`; the
    /// other fields stay `None`), read as [`Group::limits`] reads them.
    pub fn read_reservation(&mut self) -> Limits {
        let mut l = Limits::default();
        let (mut quota, mut period) = (None, None);
        for (kind, file) in &self.limits {
            let Some(len) = pread_all(file, &mut self.buf) else {
                continue;
            };
            let Ok(text) = std::str::from_utf8(&self.buf[..len]) else {
                continue;
            };
            match kind {
                Lim::CpuMax => l.cpu_max = cpu::parse_cpu_max(text),
                Lim::CpuQuotaV1 => quota = Max::parse_v1(text),
                Lim::CpuPeriodV1 => period = text.trim().parse().ok(),
                Lim::CpusetCpus => l.cpuset_cpus = Some(text.trim().to_owned()),
                Lim::MemoryMax => l.memory_max = Max::parse_v2(text),
                Lim::MemoryLimitV1 => l.memory_max = Max::parse_v1(text),
            }
        }
        if let (Some(quota), Some(period)) = (quota, period) {
            l.cpu_max = Some(CpuMax { quota, period });
        }
        l
    }

    /// Reads the every-tick files without parsing them and returns the bytes read: the floor
    /// any sampler of these files pays (benchmarks).
    pub fn read_raw(&mut self) -> usize {
        self.fast
            .iter()
            .filter_map(|(_, f)| pread_all(f, &mut self.buf))
            .sum()
    }

    /// [`UsageReader::read_raw`] of every file, the ones [`UsageReader::read_all`] adds too.
    pub fn read_raw_all(&mut self) -> usize {
        self.fast
            .iter()
            .chain(&self.slow)
            .filter_map(|(_, f)| pread_all(f, &mut self.buf))
            .sum()
    }
}

/// Reads a whole file from offset 0 into `buf` (grown as needed); `None` on an error.
fn pread_all(file: &File, buf: &mut Vec<u8>) -> Option<usize> {
    let mut len = 0;
    loop {
        match nix::sys::uio::pread(file, &mut buf[len..], len as i64) {
            Ok(0) => return Some(len),
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// A decimal number at the start of `b` (after spaces), or `None`.
fn num(b: &[u8]) -> Option<u64> {
    let b = b.trim_ascii_start();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    b[..digits].iter().try_fold(0u64, |acc, c| {
        acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

/// The value of `key` in a flat-keyed file (`key value` lines).
fn flat(text: &[u8], key: &[u8]) -> Option<u64> {
    text.split(|c| *c == b'\n').find_map(|line| {
        let rest = line.strip_prefix(key)?;
        rest.first()
            .is_some_and(|c| *c == b' ')
            .then(|| num(rest))?
    })
}

/// `some avg10=X.YY …` of a PSI file, in hundredths.
fn some_avg10(text: &[u8]) -> Option<u32> {
    let line = text
        .split(|c| *c == b'\n')
        .find(|l| l.starts_with(b"some "))?;
    let at = line.windows(6).position(|w| w == b"avg10=")? + 6;
    let v = &line[at..];
    let whole = num(v)?;
    // Two decimals: the digits after the dot, padded with zeros.
    let mut frac = 0;
    let mut after = v.iter().skip_while(|c| c.is_ascii_digit());
    if after.next() == Some(&b'.') {
        let mut digits = after.take_while(|c| c.is_ascii_digit());
        for _ in 0..2 {
            frac = frac * 10 + digits.next().map_or(0, |c| u64::from(c - b'0'));
        }
    }
    u32::try_from(whole * 100 + frac).ok()
}

/// `total=N` (µs) of the PSI line starting with `kind` (`some ` or `full `).
fn psi_total(text: &[u8], kind: &[u8]) -> Option<u64> {
    let line = text.split(|c| *c == b'\n').find(|l| l.starts_with(kind))?;
    let at = line.windows(6).position(|w| w == b"total=")? + 6;
    num(&line[at..])
}

/// Whether a line starts with a `MAJ:MIN` device (v1 blkio's `Total` line does not).
fn device_line(line: &[u8]) -> Option<&[u8]> {
    let sp = line.iter().position(|c| *c == b' ')?;
    let (dev, rest) = line.split_at(sp);
    (dev.contains(&b':') && dev.first().is_some_and(u8::is_ascii_digit)).then_some(&rest[1..])
}

fn parse(kind: Src, text: &[u8], s: &mut UsageSample) {
    let set = |field: &mut u64, v: Option<u64>| {
        if let Some(v) = v {
            *field = v;
        }
    };
    match kind {
        Src::CpuStat => {
            set(&mut s.cpu_usec, flat(text, b"usage_usec"));
            set(&mut s.throttled_usec, flat(text, b"throttled_usec"));
        }
        Src::CpuacctUsage => set(&mut s.cpu_usec, num(text).map(|ns| ns / 1000)),
        Src::CpuStatV1 => set(
            &mut s.throttled_usec,
            flat(text, b"throttled_time").map(|ns| ns / 1000),
        ),
        Src::MemoryCurrent => set(&mut s.memory_current, num(text)),
        Src::MemoryPeak => set(&mut s.memory_peak, num(text)),
        Src::MemoryEvents | Src::OomControl => set(&mut s.oom_kills, flat(text, b"oom_kill")),
        Src::PidsCurrent => set(&mut s.pids_current, num(text)),
        Src::PidsPeak => set(&mut s.pids_peak, num(text)),
        Src::Pressure(i) => {
            if let Some(v) = some_avg10(text) {
                s.pressure_some_avg10[i] = Some(v);
            }
            for (k, kind) in [b"some " as &[u8], b"full "].into_iter().enumerate() {
                if let Some(v) = psi_total(text, kind) {
                    s.pressure_total_usec[i][k] = Some(v);
                }
            }
        }
        Src::IoStat => {
            let mut t = [0u64; 4];
            for rest in text.split(|c| *c == b'\n').filter_map(device_line) {
                for kv in rest.split(|c| *c == b' ') {
                    let Some(eq) = kv.iter().position(|c| *c == b'=') else {
                        continue;
                    };
                    let i = match &kv[..eq] {
                        b"rbytes" => 0,
                        b"wbytes" => 1,
                        b"rios" => 2,
                        b"wios" => 3,
                        _ => continue,
                    };
                    t[i] += num(&kv[eq + 1..]).unwrap_or(0);
                }
            }
            [s.io_rbytes, s.io_wbytes, s.io_rios, s.io_wios] = t;
        }
        Src::BlkioBytes | Src::BlkioIos => {
            let (mut r, mut w) = (0, 0);
            for rest in text.split(|c| *c == b'\n').filter_map(device_line) {
                if let Some(v) = rest.strip_prefix(b"Read ") {
                    r += num(v).unwrap_or(0);
                } else if let Some(v) = rest.strip_prefix(b"Write ") {
                    w += num(v).unwrap_or(0);
                }
            }
            if kind == Src::BlkioBytes {
                (s.io_rbytes, s.io_wbytes) = (r, w);
            } else {
                (s.io_rios, s.io_wios) = (r, w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_some_avg10_in_hundredths() {
        let t = b"some avg10=12.34 avg60=0.50 avg300=0.00 total=99\nfull avg10=1.00 avg60=0 avg300=0 total=1\n";
        assert_eq!(some_avg10(t), Some(1234));
        assert_eq!(
            some_avg10(b"some avg10=0.5 avg60=0 avg300=0 total=0\n"),
            Some(50)
        );
        assert_eq!(some_avg10(b"some avg10=7 avg60=0\n"), Some(700));
        assert_eq!(some_avg10(b"full avg10=1.00\n"), None);
        assert_eq!(some_avg10(b""), None);
        assert_eq!(psi_total(t, b"some "), Some(99));
        assert_eq!(psi_total(t, b"full "), Some(1));
        assert_eq!(psi_total(b"some avg10=0.00 total=5\n", b"full "), None);
        let mut s = UsageSample::default();
        parse(Src::Pressure(2), t, &mut s);
        assert_eq!(s.pressure_total_usec[2], [Some(99), Some(1)]);
        assert_eq!(s.pressure_some_avg10[2], Some(1234));
    }

    /// Parsers against the same captured texts the full parsers are tested with; the numbers
    /// must agree with `Stats` for every quantity billing uses.
    #[test]
    fn parsers_match_the_kernel_formats() {
        let mut s = UsageSample::default();
        parse(
            Src::CpuStat,
            b"usage_usec 2000123\nuser_usec 1500000\nsystem_usec 500123\nnr_periods 10\nnr_throttled 3\nthrottled_usec 45000\nnr_bursts 0\nburst_usec 0\n",
            &mut s,
        );
        assert_eq!((s.cpu_usec, s.throttled_usec), (2_000_123, 45_000));
        // Without the cpu controller, cpu.stat has no throttling lines: the value stays.
        parse(Src::CpuStat, b"usage_usec 9\nuser_usec 9\n", &mut s);
        assert_eq!((s.cpu_usec, s.throttled_usec), (9, 45_000));
        parse(Src::CpuacctUsage, b"2000123456\n", &mut s);
        assert_eq!(s.cpu_usec, 2_000_123);
        parse(
            Src::CpuStatV1,
            b"nr_periods 5\nnr_throttled 2\nthrottled_time 7000000\n",
            &mut s,
        );
        assert_eq!(s.throttled_usec, 7_000);
        parse(Src::MemoryCurrent, b"4096\n", &mut s);
        parse(Src::MemoryPeak, b"8192\n", &mut s);
        assert_eq!((s.memory_current, s.memory_peak), (4096, 8192));
        parse(
            Src::MemoryEvents,
            b"low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
            &mut s,
        );
        assert_eq!(s.oom_kills, 1);
        parse(
            Src::OomControl,
            b"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
            &mut s,
        );
        assert_eq!(s.oom_kills, 3);
        parse(Src::PidsCurrent, b"7\n", &mut s);
        parse(Src::PidsPeak, b"12\n", &mut s);
        assert_eq!((s.pids_current, s.pids_peak), (7, 12));
        parse(
            Src::IoStat,
            b"8:0 rbytes=1024 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n",
            &mut s,
        );
        assert_eq!(
            (s.io_rbytes, s.io_wbytes, s.io_rios, s.io_wios),
            (1025, 2050, 4, 6)
        );
        parse(
            Src::BlkioBytes,
            b"8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\n8:16 Read 1\nTotal 12289\n",
            &mut s,
        );
        parse(
            Src::BlkioIos,
            b"8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n",
            &mut s,
        );
        assert_eq!(
            (s.io_rbytes, s.io_wbytes, s.io_rios, s.io_wios),
            (4097, 8192, 1, 2)
        );
        // An empty io.stat (no IO yet) is zero IO, not "unchanged".
        parse(Src::IoStat, b"", &mut s);
        assert_eq!((s.io_rbytes, s.io_rios), (0, 0));
        // Garbage leaves a value alone rather than zeroing it.
        parse(Src::MemoryCurrent, b"max\n", &mut s);
        assert_eq!(s.memory_current, 4096);
    }

    #[test]
    fn numbers_and_keys() {
        assert_eq!(num(b" 42\n"), Some(42));
        assert_eq!(num(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(num(b"18446744073709551616"), None);
        assert_eq!(num(b"x"), None);
        assert_eq!(flat(b"usage_usec 5\nusage 7\n", b"usage"), Some(7));
        assert_eq!(
            flat(b"oom_kill_disable 0\noom_kill 3\n", b"oom_kill"),
            Some(3)
        );
        assert_eq!(flat(b"a 1\n", b"b"), None);
    }
}
