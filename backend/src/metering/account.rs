//! The accounting core: pure functions from successive cumulative readings of one group to exact
//! usage deltas. No I/O here; everything is tested by tables.
//!
//! Rules (each has a test below):
//! - Durations come from `CLOCK_MONOTONIC` only. Two readings are comparable when they carry the
//!   same boot id and the same group generation (the cgroup directory's inode). The wall clock is
//!   used only to say *which hour* a delta belongs to, never how long it lasted.
//! - A different boot id or generation means the kernel's counters started again: the new
//!   reading's counters count in full (from zero), and no time is integrated across the gap.
//! - A cumulative counter lower than before (same boot, same generation) was reset: it counts
//!   from zero. A delta is never negative and nothing is counted twice.
//! - Memory is integrated with the trapezoid rule (byte·seconds); reservations (cores from
//!   quota/period or cpuset size, memory.max) are held constant over an interval at the value of
//!   its start reading.

use serde::{Deserialize, Serialize};

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;
/// Bytes per GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The cumulative counters and gauges of one group at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// CPU time used since the group was created, µs.
    pub cpu_usec: u64,
    /// Time throttled since the group was created, µs.
    pub throttled_usec: u64,
    /// Bytes and operations read and written, summed over devices.
    pub io_rbytes: u64,
    pub io_wbytes: u64,
    pub io_rios: u64,
    pub io_wios: u64,
    /// OOM kills since the group was created.
    pub oom_kills: u64,
    /// Memory in use now, bytes (a gauge).
    pub memory_current: u64,
    /// Highest memory use since the group was created, bytes (a cumulative maximum).
    pub memory_peak: u64,
    /// Tasks now (a gauge).
    pub pids_current: u64,
    /// Highest task count since the group was created (a cumulative maximum).
    pub pids_peak: u64,
}

impl Counters {
    /// The cumulative counters, in the order of [`Usage::counters_mut`].
    fn cumulative(&self) -> [u64; 7] {
        [
            self.cpu_usec,
            self.throttled_usec,
            self.io_rbytes,
            self.io_wbytes,
            self.io_rios,
            self.io_wios,
            self.oom_kills,
        ]
    }
}

/// What a group has reserved at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    /// Cores reserved, in thousandths (quota/period, or the cpuset's size, whichever is
    /// smaller; 0 when neither limits the group).
    pub millicores: u64,
    /// `memory.max` in bytes; 0 when unlimited.
    pub memory_bytes: u64,
}

impl Reserved {
    /// Cores reserved from a CFS quota/period (µs) and the number of CPUs of the cpuset: the
    /// smaller of the two that exist. `quota: None` is "max" (no quota).
    pub fn millicores_from(quota: Option<u64>, period: u64, cpuset_cpus: Option<u64>) -> u64 {
        let from_quota = match quota {
            Some(q) if period > 0 => Some(q.saturating_mul(1000) / period),
            _ => None,
        };
        let from_cpuset = cpuset_cpus.map(|n| n.saturating_mul(1000));
        match (from_quota, from_cpuset) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => 0,
        }
    }
}

/// One reading of a group: when (monotonic, in which boot, plus the wall clock for bucketing),
/// which incarnation of the group, and its counters.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// `CLOCK_MONOTONIC` in ns.
    pub mono_ns: u64,
    /// Wall clock (Unix ms) at the same instant; only used to pick the hour a delta belongs to.
    pub wall_ms: i64,
    /// Identity of the group's incarnation (its cgroup directory inode); 0 if unknown.
    pub generation: u64,
    pub counters: Counters,
    pub reserved: Reserved,
}

impl Clone for Reading {
    fn clone(&self) -> Self {
        Reading {
            boot_id: self.boot_id.clone(),
            ..*self
        }
    }

    /// Reuses `boot_id`'s buffer: the sampler copies a reading per group per tick.
    fn clone_from(&mut self, source: &Self) {
        self.boot_id.clone_from(&source.boot_id);
        self.mono_ns = source.mono_ns;
        self.wall_ms = source.wall_ms;
        self.generation = source.generation;
        self.counters = source.counters;
        self.reserved = source.reserved;
    }
}

/// Exact usage between two readings (or since the group started, for the first one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Monotonic time covered, ns (0 when the readings are not comparable).
    pub duration_ns: u64,
    pub cpu_usec: u64,
    pub throttled_usec: u64,
    pub io_rbytes: u64,
    pub io_wbytes: u64,
    pub io_rios: u64,
    pub io_wios: u64,
    pub oom_kills: u64,
    /// ∫ memory.current dt, byte·seconds.
    pub memory_byte_seconds: u64,
    /// Reserved cores × time, in core·µs.
    pub cpu_reserved_core_usec: u64,
    /// memory.max × time, byte·seconds.
    pub memory_reserved_byte_seconds: u64,
    /// Highest memory use seen within the interval, bytes.
    pub memory_peak: u64,
    /// Highest task count seen within the interval.
    pub pids_peak: u64,
}

impl Usage {
    /// The deltas of the cumulative counters, in the order of [`Counters::cumulative`].
    fn counters_mut(&mut self) -> [&mut u64; 7] {
        [
            &mut self.cpu_usec,
            &mut self.throttled_usec,
            &mut self.io_rbytes,
            &mut self.io_wbytes,
            &mut self.io_rios,
            &mut self.io_wios,
            &mut self.oom_kills,
        ]
    }

    /// Every additive quantity (all but the peaks): the one list that adding, subtracting and
    /// splitting go through.
    fn additive_mut(&mut self) -> [&mut u64; 11] {
        [
            &mut self.duration_ns,
            &mut self.cpu_usec,
            &mut self.throttled_usec,
            &mut self.io_rbytes,
            &mut self.io_wbytes,
            &mut self.io_rios,
            &mut self.io_wios,
            &mut self.oom_kills,
            &mut self.memory_byte_seconds,
            &mut self.cpu_reserved_core_usec,
            &mut self.memory_reserved_byte_seconds,
        ]
    }

    /// The additive quantities, in the order of [`Usage::additive_mut`].
    fn additive(&self) -> [u64; 11] {
        let mut c = *self;
        c.additive_mut().map(|v| *v)
    }

    /// `self` with every additive quantity replaced by `f(quantity, other's quantity)`; peaks
    /// unchanged.
    fn zip_additive(mut self, other: &Usage, f: impl Fn(u64, u64) -> u64) -> Usage {
        for (v, o) in self.additive_mut().into_iter().zip(other.additive()) {
            *v = f(*v, o);
        }
        self
    }

    /// Adds `o` to `self`: sums for counters and integrals, maximum for peaks.
    pub fn add(&mut self, o: &Usage) {
        *self = self.zip_additive(o, |a, b| a + b);
        self.memory_peak = self.memory_peak.max(o.memory_peak);
        self.pids_peak = self.pids_peak.max(o.pids_peak);
    }

    /// True when nothing was used and no time passed.
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// Whether two readings belong to the same run of the same counters.
pub fn comparable(prev: &Reading, cur: &Reading) -> bool {
    prev.boot_id == cur.boot_id && prev.generation == cur.generation && cur.mono_ns >= prev.mono_ns
}

/// A cumulative counter's increase: `cur - prev`, or `cur` in full when it went backwards (the
/// counter was reset, so everything it shows now is new).
pub fn counter_delta(prev: u64, cur: u64) -> u64 {
    if cur >= prev { cur - prev } else { cur }
}

/// The usage between `prev` (the last reading already accounted, e.g. the persisted
/// checkpoint) and `cur`. With no `prev`, or one that is not [`comparable`], the group's
/// counters started from zero: they count in full and no time is integrated.
pub fn usage_between(prev: Option<&Reading>, cur: &Reading) -> Usage {
    let c = &cur.counters;
    let Some(prev) = prev.filter(|p| comparable(p, cur)) else {
        let mut u = Usage {
            memory_peak: c.memory_current.max(c.memory_peak),
            pids_peak: c.pids_current.max(c.pids_peak),
            ..Usage::default()
        };
        book_counters(&mut u, &Counters::default(), c);
        return u;
    };
    let p = &prev.counters;
    let dt = cur.mono_ns - prev.mono_ns;
    let dt128 = u128::from(dt);
    let ns = u128::from(NS_PER_SEC);
    // Trapezoid: (m0 + m1)/2 · dt, rounded to the nearest byte·second.
    let mem = (u128::from(p.memory_current) + u128::from(c.memory_current)) * dt128;
    let memory_byte_seconds = sat64((mem + ns) / (2 * ns));
    let cpu_reserved_core_usec =
        sat64((u128::from(prev.reserved.millicores) * dt128 + 500_000) / 1_000_000);
    let memory_reserved_byte_seconds =
        sat64((u128::from(prev.reserved.memory_bytes) * dt128 + ns / 2) / ns);
    // A cumulative peak that rose happened inside this interval.
    let mut memory_peak = p.memory_current.max(c.memory_current);
    if c.memory_peak > p.memory_peak {
        memory_peak = memory_peak.max(c.memory_peak);
    }
    let mut pids_peak = p.pids_current.max(c.pids_current);
    if c.pids_peak > p.pids_peak {
        pids_peak = pids_peak.max(c.pids_peak);
    }
    let mut u = Usage {
        duration_ns: dt,
        memory_byte_seconds,
        cpu_reserved_core_usec,
        memory_reserved_byte_seconds,
        memory_peak,
        pids_peak,
        ..Usage::default()
    };
    book_counters(&mut u, p, c);
    u
}

/// Every cumulative counter's [`counter_delta`] from `prev` to `cur`, into `u` (from zero
/// counters: each counts in full).
fn book_counters(u: &mut Usage, prev: &Counters, cur: &Counters) {
    let pairs = prev.cumulative().into_iter().zip(cur.cumulative());
    for (slot, (p, c)) in u.counters_mut().into_iter().zip(pairs) {
        *slot = counter_delta(p, c);
    }
}

fn sat64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Seconds per ledger hour.
pub const HOUR_SECS: i64 = 3600;

/// Splits `usage`, which ended at wall time `end_wall_ms`, over the ledger hours it covers.
///
/// The interval's start is `end - duration` (the monotonic duration), so a wall-clock step
/// between readings moves the interval but never stretches, shrinks or reverses it. Additive
/// quantities are split in proportion to the time in each hour, with the rounding remainder in
/// the last hour, so the parts add up exactly to the whole; peaks go to every hour touched.
/// Returns `(hour_start_unix_secs, part)` in ascending order.
pub fn split_by_hour(end_wall_ms: i64, usage: &Usage) -> Vec<(i64, Usage)> {
    let mut parts = Vec::new();
    for_each_hour(end_wall_ms, usage, |h, u| parts.push((h, u)));
    parts
}

/// [`split_by_hour`] without collecting: `f(hour, part)` for each hour, in order.
pub fn for_each_hour(end_wall_ms: i64, usage: &Usage, mut f: impl FnMut(i64, Usage)) {
    let dur_ms = i64::try_from(usage.duration_ns / 1_000_000).unwrap_or(i64::MAX);
    let end = end_wall_ms;
    let start = end.saturating_sub(dur_ms);
    let hour_ms = HOUR_SECS * 1000;
    let first_hour = start.div_euclid(hour_ms);
    let last_hour = if dur_ms == 0 {
        first_hour
    } else {
        (end - 1).div_euclid(hour_ms)
    };
    if first_hour == last_hour {
        return f(first_hour * HOUR_SECS, *usage);
    }
    let mut taken = Usage::default();
    for h in first_hour..=last_hour {
        let lo = start.max(h * hour_ms);
        let hi = end.min((h + 1) * hour_ms);
        if h == last_hour {
            let mut rest = sub_additive(usage, &taken);
            rest.memory_peak = usage.memory_peak;
            rest.pids_peak = usage.pids_peak;
            f(h * HOUR_SECS, rest);
            break;
        }
        let w = u128::try_from(hi - lo).unwrap_or(0);
        let total = u128::try_from(dur_ms).unwrap_or(1).max(1);
        let part = usage.zip_additive(usage, |v, _| sat64(u128::from(v) * w / total));
        taken.add(&part);
        f(h * HOUR_SECS, part);
    }
}

/// `a − b` for every additive quantity (`b` is a part of `a`); peaks 0.
fn sub_additive(a: &Usage, b: &Usage) -> Usage {
    Usage {
        memory_peak: 0,
        pids_peak: 0,
        ..a.zip_additive(b, |x, y| x - y)
    }
}

/// Live rates between two comparable readings (for `corral stats` and `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// CPU cores in use (1.0 = one full core).
    pub cpu_cores: f64,
    pub io_read_bytes_per_sec: f64,
    pub io_write_bytes_per_sec: f64,
}

/// Rates between two readings; zero when they are not comparable or no time passed.
pub fn rates(prev: &Reading, cur: &Reading) -> Rates {
    if !comparable(prev, cur) || cur.mono_ns == prev.mono_ns {
        return Rates::default();
    }
    rates_of(&usage_between(Some(prev), cur))
}

/// Rates of the usage between two comparable readings some time apart.
pub fn rates_of(u: &Usage) -> Rates {
    if u.duration_ns == 0 {
        return Rates::default();
    }
    let secs = u.duration_ns as f64 / NS_PER_SEC as f64;
    Rates {
        cpu_cores: u.cpu_usec as f64 / 1e6 / secs,
        io_read_bytes_per_sec: u.io_rbytes as f64 / secs,
        io_write_bytes_per_sec: u.io_wbytes as f64 / secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_SEC;

    fn r(boot: &str, gen_: u64, mono_s: f64, wall_ms: i64, c: Counters) -> Reading {
        Reading {
            boot_id: boot.into(),
            mono_ns: (mono_s * S as f64) as u64,
            wall_ms,
            generation: gen_,
            counters: c,
            reserved: Reserved::default(),
        }
    }

    fn cpu(usec: u64) -> Counters {
        Counters {
            cpu_usec: usec,
            ..Counters::default()
        }
    }

    /// A table of (previous reading, current reading, expected CPU µs, expected duration s).
    #[test]
    fn cpu_deltas_table() {
        let cases: &[(&str, Option<Reading>, Reading, u64, f64)] = &[
            (
                "first reading counts in full",
                None,
                r("b", 1, 10.0, 0, cpu(5_000)),
                5_000,
                0.0,
            ),
            (
                "steady",
                Some(r("b", 1, 10.0, 0, cpu(5_000))),
                r("b", 1, 15.0, 5_000, cpu(7_500)),
                2_500,
                5.0,
            ),
            (
                "no progress",
                Some(r("b", 1, 10.0, 0, cpu(5_000))),
                r("b", 1, 15.0, 5_000, cpu(5_000)),
                0,
                5.0,
            ),
            (
                "counter went backwards: group recreated, count from zero",
                Some(r("b", 1, 10.0, 0, cpu(900_000))),
                r("b", 1, 15.0, 5_000, cpu(1_000)),
                1_000,
                5.0,
            ),
            (
                "new generation with a larger counter still counts in full",
                Some(r("b", 1, 10.0, 0, cpu(1_000))),
                r("b", 2, 15.0, 5_000, cpu(3_000)),
                3_000,
                0.0,
            ),
            (
                "reboot: different boot id, monotonic clock restarted",
                Some(r("b", 1, 99_999.0, 0, cpu(500))),
                r("c", 1, 3.0, 10_000_000, cpu(700)),
                700,
                0.0,
            ),
            (
                "wall clock stepped back one hour: duration is still monotonic",
                Some(r("b", 1, 10.0, 7_200_000, cpu(1_000))),
                r("b", 1, 15.0, 3_605_000, cpu(2_000)),
                1_000,
                5.0,
            ),
            (
                "wall clock stepped forward one hour: nothing doubled",
                Some(r("b", 1, 10.0, 0, cpu(1_000))),
                r("b", 1, 15.0, 3_605_000, cpu(2_000)),
                1_000,
                5.0,
            ),
            (
                "daemon down for a while (same boot): the gap is covered once",
                Some(r("b", 1, 10.0, 0, cpu(1_000))),
                r("b", 1, 610.0, 600_000, cpu(301_000)),
                300_000,
                600.0,
            ),
        ];
        for (name, prev, cur, want_cpu, want_secs) in cases {
            let u = usage_between(prev.as_ref(), cur);
            assert_eq!(u.cpu_usec, *want_cpu, "{name}");
            assert_eq!(u.duration_ns, (*want_secs * S as f64) as u64, "{name}");
        }
    }

    #[test]
    fn every_counter_resets_independently_and_never_goes_negative() {
        let prev = Counters {
            cpu_usec: 10,
            throttled_usec: 20,
            io_rbytes: 30,
            io_wbytes: 40,
            io_rios: 50,
            io_wios: 60,
            oom_kills: 2,
            ..Counters::default()
        };
        let cur = Counters {
            cpu_usec: 15,
            throttled_usec: 5,
            io_rbytes: 31,
            io_wbytes: 1,
            io_rios: 50,
            io_wios: 0,
            oom_kills: 3,
            ..Counters::default()
        };
        let u = usage_between(Some(&r("b", 1, 1.0, 0, prev)), &r("b", 1, 2.0, 1000, cur));
        assert_eq!(
            (
                u.cpu_usec,
                u.throttled_usec,
                u.io_rbytes,
                u.io_wbytes,
                u.io_rios,
                u.io_wios,
                u.oom_kills
            ),
            (5, 5, 1, 1, 0, 0, 1)
        );
    }

    #[test]
    fn summing_successive_deltas_equals_the_final_counter() {
        // Readings of one group, with a reset (group recreated) in the middle and a daemon
        // restart that resumes from the persisted checkpoint.
        let values = [0u64, 100, 250, 250, 1_000, 30, 80, 80, 500];
        let gens = [1u64, 1, 1, 1, 1, 2, 2, 2, 2];
        let mut prev: Option<Reading> = None;
        let mut total = 0;
        for (i, (v, g)) in values.iter().zip(gens).enumerate() {
            let cur = r("b", g, i as f64, i as i64 * 1000, cpu(*v));
            total += usage_between(prev.as_ref(), &cur).cpu_usec;
            prev = Some(cur);
        }
        // Run 1 ended at 1000 µs, run 2 at 500 µs.
        assert_eq!(total, 1_000 + 500);
    }

    #[test]
    fn memory_is_integrated_with_the_trapezoid_rule() {
        let m = |b: u64| Counters {
            memory_current: b,
            ..Counters::default()
        };
        // 1 GiB → 3 GiB over 3600 s: average 2 GiB for an hour = 2 GiB·h.
        let g = 1u64 << 30;
        let u = usage_between(
            Some(&r("b", 1, 0.0, 0, m(g))),
            &r("b", 1, 3600.0, 3_600_000, m(3 * g)),
        );
        assert_eq!(u.memory_byte_seconds, 2 * g * 3600);
        assert_eq!(u.memory_peak, 3 * g);
        // Sub-second: 10 MiB flat for 50 ms.
        let u = usage_between(
            Some(&r("b", 1, 0.0, 0, m(10 << 20))),
            &r("b", 1, 0.05, 50, m(10 << 20)),
        );
        assert_eq!(u.memory_byte_seconds, (10u64 << 20) / 20);
    }

    #[test]
    fn peaks_that_rose_inside_the_interval_count() {
        let mut a = Counters {
            memory_current: 100,
            memory_peak: 500,
            pids_current: 1,
            pids_peak: 4,
            ..Counters::default()
        };
        let mut b = a;
        b.memory_current = 120;
        b.memory_peak = 500; // no new peak: the interval's peak is what we saw
        let u = usage_between(Some(&r("b", 1, 0.0, 0, a)), &r("b", 1, 1.0, 1, b));
        assert_eq!((u.memory_peak, u.pids_peak), (120, 1));
        a = b;
        b.memory_peak = 900; // a spike between samples
        b.pids_peak = 9;
        let u = usage_between(Some(&r("b", 1, 1.0, 1, a)), &r("b", 1, 2.0, 2, b));
        assert_eq!((u.memory_peak, u.pids_peak), (900, 9));
    }

    #[test]
    fn reserved_quantities() {
        assert_eq!(Reserved::millicores_from(Some(50_000), 100_000, None), 500);
        assert_eq!(
            Reserved::millicores_from(Some(200_000), 100_000, Some(1)),
            1000
        );
        assert_eq!(Reserved::millicores_from(None, 100_000, Some(3)), 3000);
        assert_eq!(Reserved::millicores_from(None, 100_000, None), 0);
        let mut prev = r("b", 1, 0.0, 0, Counters::default());
        prev.reserved = Reserved {
            millicores: 500,
            memory_bytes: 1 << 30,
        };
        let cur = r("b", 1, 7200.0, 7_200_000, Counters::default());
        let u = usage_between(Some(&prev), &cur);
        // 0.5 core for 2 h = 1 core-hour = 3600 core-seconds.
        assert_eq!(u.cpu_reserved_core_usec, 3_600_000_000);
        assert_eq!(u.memory_reserved_byte_seconds, (1u64 << 30) * 7200);
    }

    #[test]
    fn split_by_hour_is_exact_and_ignores_clock_steps() {
        let u = Usage {
            duration_ns: 10 * S,
            cpu_usec: 1_000_001,
            memory_byte_seconds: 999,
            memory_peak: 7,
            ..Usage::default()
        };
        // 10 s ending 4 s after 01:00: 6 s in hour 0, 4 s in hour 1.
        let parts = split_by_hour(3_604_000, &u);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, 0);
        assert_eq!(parts[1].0, 3600);
        assert_eq!(parts[0].1.cpu_usec, 600_000);
        let mut sum = Usage::default();
        for (_, p) in &parts {
            sum.add(p);
            assert_eq!(p.memory_peak, 7);
        }
        assert_eq!(sum, u);
        // Inside one hour: unchanged.
        assert_eq!(split_by_hour(60_000, &u), vec![(0, u)]);
        // A zero-length final reading lands in the hour of its instant.
        let z = Usage {
            cpu_usec: 5,
            ..Usage::default()
        };
        assert_eq!(split_by_hour(7_200_000, &z), vec![(7200, z)]);
        // A long gap (daemon down 3 h) is spread over all 4 hours it touches, exactly.
        let long = Usage {
            duration_ns: 3 * 3600 * S,
            cpu_usec: 10_800_000_007,
            ..Usage::default()
        };
        let parts = split_by_hour(3 * 3_600_000 + 1_800_000, &long);
        assert_eq!(parts.len(), 4);
        assert_eq!(
            parts.iter().map(|(_, p)| p.cpu_usec).sum::<u64>(),
            long.cpu_usec
        );
        // 1/6 of the total, rounded down; the remainder lands in the last hour.
        assert_eq!(parts[0].1.cpu_usec, 1_800_000_001);
    }

    #[test]
    fn rates_are_per_second() {
        let a = r("b", 1, 0.0, 0, cpu(0));
        let b = r("b", 1, 2.0, 2000, cpu(1_000_000));
        assert!((rates(&a, &b).cpu_cores - 0.5).abs() < 1e-9);
        let c = r("x", 1, 3.0, 3000, cpu(9));
        assert_eq!(rates(&b, &c), Rates::default());
    }
}
