//! What the benchmark reads from /proc: per-thread CPU time, thread names, memory of a
//! process (RSS, PSS), process start times (to tell a PID from a reused one).

use std::{collections::HashMap, fs, time::Duration};

/// Nanoseconds per clock tick of `utime`/`stime` (USER_HZ is 100 on every Linux ABI in use).
const NS_PER_TICK: u64 = 10_000_000;

/// CPU time in nanoseconds of each thread of `pid`, with its name (`comm`): the run time of
/// `schedstat` (exact), or `utime + stime` of `stat` (10 ms ticks) where the kernel lacks it.
pub fn thread_cpu_ns(pid: u32) -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(tid) = t.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = fs::read_to_string(t.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let schedstat = fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        let ns = schedstat.or_else(|| {
            fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| stat_cpu_ticks(&s))
                .map(|t| t * NS_PER_TICK)
        });
        if let Some(ns) = ns {
            out.insert(tid, (comm, ns));
        }
    }
    out
}

/// utime + stime from a `stat` line (fields 14 and 15; the name in parentheses may hold spaces).
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14 → index 11.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The start time of `pid` (clock ticks after boot), to tell it from a reused PID.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// CPU time of the whole process `pid` in nanoseconds: `utime + stime` of `/proc/PID/stat`,
/// which keeps the time of threads that have exited (10 ms ticks).
fn process_cpu_ns(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_cpu_ticks(&s))
        .map_or(0, |t| t * NS_PER_TICK)
}

/// Share of one core `pid` used over `window`, split into (everything but the threads named
/// `excluded`, the excluded ones). The threads alive at both ends are read exactly
/// (`schedstat`); a thread that ran and exited inside the window (a tokio blocking thread
/// retiring) shows only in the process's total, so the first share is the larger of the live
/// threads' sum and the process total less the excluded threads.
pub fn idle_cpu(pid: u32, excluded: &str, window: Duration) -> (f64, f64) {
    let before = thread_cpu_ns(pid);
    let total_before = process_cpu_ns(pid);
    std::thread::sleep(window);
    let after = thread_cpu_ns(pid);
    let total_after = process_cpu_ns(pid);
    let (mut rest, mut ex) = (0u64, 0u64);
    for (tid, (comm, ns)) in &after {
        let used = ns.saturating_sub(before.get(tid).map_or(0, |(_, t)| *t));
        if comm == excluded {
            ex += used;
        } else {
            rest += used;
        }
    }
    let rest = rest.max(total_after.saturating_sub(total_before).saturating_sub(ex));
    let window_ns = window.as_secs_f64() * 1e9;
    (
        rest as f64 / window_ns * 100.0,
        ex as f64 / window_ns * 100.0,
    )
}

/// `Rss` and `Pss` of `pid` in KiB, from `/proc/PID/smaps_rollup`.
pub fn rss_pss_kib(pid: i32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// Sorted samples and their percentiles.
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut v: Vec<Duration>) -> Self {
        v.sort_unstable();
        Samples(v)
    }

    /// The `p`-th percentile (nearest rank), p in 0..=100.
    pub fn pct(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn median(&self) -> Duration {
        self.pct(50.0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Milliseconds with a precision that suits the size.
pub fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces() {
        let line = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 999 0 0";
        assert_eq!(stat_cpu_ticks(line), Some(12));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = Samples::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(s.median(), Duration::from_millis(50));
        assert_eq!(s.pct(99.0), Duration::from_millis(99));
        assert_eq!(s.pct(90.0), Duration::from_millis(90));
        assert_eq!(
            Samples::new(vec![Duration::from_millis(3)])
                .pct(99.0)
                .as_millis(),
            3
        );
    }
}
