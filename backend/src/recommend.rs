//! Right-sizing (issue 14 part 3): limits recommended from a container's or a team pool's
//! stored history — pure functions over a [`Summary`], unit-tested by tables. The HTTP edge
//! (`http/recommend.rs`) reads the history and converts the result to `wire::Recommendation`.
//!
//! # Rules
//! - **Window**: 7 days by default, from its start or the subject's first stored sample,
//!   whichever is later, read in at most [`MAX_POINTS`] points of at least one sample interval
//!   each (the finest history tier that holds it). Percentiles are over those points, so over a
//!   long window "p95" is the 95th percentile of a few minutes' averages.
//! - **Enough history**: at least [`MIN_SAMPLES`] points with samples; else no item and the
//!   note "not enough history: N samples, need 30".
//! - **CPU** (`cpus`): *increase* when the group was throttled more than 5 % of the time, or its
//!   cpu pressure (PSI some avg10, averaged) is 10 % or more while p99 use reaches 90 % of the
//!   limit — to max(p99 × 1.3, limit × 1.5), at most the host's CPUs. *Decrease* when p95 use
//!   is below half the limit, it was throttled less than 1 % of the time and its cpu pressure
//!   stayed below 10 % — to
//!   max(p99 × 1.3, peak use, 0.1 cores), and only when that is at most 90 % of the limit.
//!   Rounded up to 0.05 cores.
//! - **Memory** (`memory_max`): *increase* after OOM kills, or when the peak reached 90 % of the
//!   limit with memory pressure of 1 % or more — to max(limit, peak) × 1.5. A peak at the limit
//!   without pressure or OOM kills is page cache the kernel reclaims: kept. *Decrease* when the
//!   peak stayed below half the limit, without OOM kills or pressure — to peak × 1.3, at least
//!   16 MiB, and only when that is at most 90 % of the limit. Rounded up to 4 MiB (below
//!   256 MiB), 32 MiB (below 4 GiB) or 256 MiB.
//! - **Pids** (`pids_max`, only when set): *increase* when the peak reached 90 % of the limit —
//!   to max(limit × 1.5, peak × 2). Never decreased (a pids limit costs nothing).
//! - Never below an observed peak: every target is at least the peak it is measured against.
//! - No limit set: an informational *keep* item with the figures; Corral never proposes to add
//!   a limit nobody asked for.

use std::fmt::Write as _;

use crate::metering::store::HistoryPoint;

/// Fewest points with samples a recommendation needs.
pub const MIN_SAMPLES: usize = 30;
/// Most points a recommendation reads.
pub const MAX_POINTS: i64 = 2000;
/// Default window, seconds (7 days).
pub const DEFAULT_WINDOW_SECS: i64 = 7 * 86_400;
/// Longest window, seconds (366 days).
pub const MAX_WINDOW_SECS: i64 = 366 * 86_400;

const MIB: u64 = 1 << 20;
/// Smallest memory limit recommended.
const MEMORY_FLOOR: u64 = 16 * MIB;
/// Smallest CPU limit recommended, cores.
const CPU_FLOOR: f64 = 0.1;

/// What the history says about one container or team over the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Points with samples.
    pub samples: usize,
    /// CPU use in cores: 50th, 95th and 99th percentile and the highest point.
    pub cpu_p50: f64,
    pub cpu_p95: f64,
    pub cpu_p99: f64,
    pub cpu_max: f64,
    /// Throttled time over covered time, 0..=1.
    pub throttled: f64,
    /// Average PSI `some avg10`, percent, where the kernel reports it.
    pub cpu_pressure: Option<f64>,
    pub memory_pressure: Option<f64>,
    /// Highest memory use, bytes.
    pub mem_peak: u64,
    pub oom_kills: u64,
    pub pids_peak: u64,
}

/// The limits a recommendation starts from (unset = no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Current {
    pub cpus: Option<f64>,
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
}

/// The knob an item is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    Cpus,
    MemoryMax,
    PidsMax,
}

impl Knob {
    /// The field name of `wire::Limits`.
    pub fn field(self) -> &'static str {
        match self {
            Knob::Cpus => "cpus",
            Knob::MemoryMax => "memory_max",
            Knob::PidsMax => "pids_max",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Knob::Cpus => "cpus",
            Knob::MemoryMax => "memory",
            Knob::PidsMax => "pids",
        }
    }

    /// `v` in this knob's unit, short: `0.6`, `256M`, `512`.
    pub fn show(self, v: f64) -> String {
        match self {
            Knob::Cpus => cores(v),
            Knob::MemoryMax => bytes(v as u64),
            Knob::PidsMax => format!("{v:.0}"),
        }
    }
}

/// What to do with a knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Increase,
    Decrease,
    Keep,
}

/// One recommendation: a knob, its limit now and the one proposed (in the knob's unit: cores,
/// bytes, count), and the figures behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub knob: Knob,
    pub action: Action,
    pub current: Option<f64>,
    pub recommended: Option<f64>,
    pub reason: String,
}

impl Item {
    /// The one-line explanation: `cpus 2 → 0.6: p95 use 0.42 cores, throttled 0 %`.
    pub fn line(&self) -> String {
        let k = self.knob;
        let head = match (self.current, self.recommended) {
            (Some(c), Some(r)) if self.action != Action::Keep => {
                format!("{} {} → {}", k.label(), k.show(c), k.show(r))
            }
            (Some(c), _) => format!("{} {} kept", k.label(), k.show(c)),
            (None, _) => format!("{} no limit", k.label()),
        };
        format!("{head}: {}", self.reason)
    }
}

/// Nearest-rank percentile `p` (0..=100) of `sorted` (ascending); 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summarises history points (and the OOM kills the ledger counted over the same window).
pub fn summarize(points: &[HistoryPoint], oom_kills: u64) -> Summary {
    let covered: Vec<&HistoryPoint> = points.iter().filter(|p| p.covered_ms > 0).collect();
    let mut use_: Vec<f64> = covered
        .iter()
        .map(|p| p.cpu_usec as f64 / 1000.0 / p.covered_ms as f64)
        .collect();
    use_.sort_by(f64::total_cmp);
    let covered_usec: f64 = covered.iter().map(|p| p.covered_ms as f64 * 1000.0).sum();
    let throttled_usec: f64 = covered.iter().map(|p| p.throttled_usec as f64).sum();
    // Pressure is stored in hundredths of a percent.
    let pressure = |i: usize| {
        let v: Vec<f64> = covered.iter().filter_map(|p| p.pressure_avg[i]).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64 / 100.0)
    };
    Summary {
        samples: covered.len(),
        cpu_p50: percentile(&use_, 50.0),
        cpu_p95: percentile(&use_, 95.0),
        cpu_p99: percentile(&use_, 99.0),
        cpu_max: use_.last().copied().unwrap_or(0.0),
        throttled: if covered_usec > 0.0 {
            (throttled_usec / covered_usec).clamp(0.0, 1.0)
        } else {
            0.0
        },
        cpu_pressure: pressure(0),
        memory_pressure: pressure(1),
        mem_peak: covered
            .iter()
            .map(|p| p.mem_peak.max(0) as u64)
            .max()
            .unwrap_or(0),
        oom_kills,
        pids_peak: covered
            .iter()
            .map(|p| p.pids_peak.max(0) as u64)
            .max()
            .unwrap_or(0),
    }
}

/// Why no item can be given, or `None` when the history is enough.
pub fn not_enough(s: &Summary) -> Option<String> {
    (s.samples < MIN_SAMPLES).then(|| {
        format!(
            "not enough history: {} samples, need {MIN_SAMPLES}",
            s.samples
        )
    })
}

/// The items for `s` against `cur` on a host of `host_cpus` CPUs: cpus and memory always
/// (a keep without limit is informational), pids when a pids limit is set. Empty when the
/// history is not enough ([`not_enough`]).
pub fn recommend(s: &Summary, cur: &Current, host_cpus: f64) -> Vec<Item> {
    if not_enough(s).is_some() {
        return Vec::new();
    }
    let mut items = vec![cpu(s, cur.cpus, host_cpus), memory(s, cur.memory_max)];
    if let Some(p) = cur.pids_max {
        items.push(pids(s, p));
    }
    items
}

/// `v` as a percentage with at most one decimal: `0`, `4.5`, `90`.
fn pct(v: f64) -> String {
    let r = (v * 1000.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// Cores with at most two decimals, trailing zeros dropped: `2`, `0.6`, `0.15`.
pub fn cores(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.into()
    }
}

/// Bytes in Docker's spelling: `512M`, `1.5G`, `300K`.
pub fn bytes(b: u64) -> String {
    const GIB: u64 = 1 << 30;
    let short = |v: f64, unit: &str| {
        let s = format!("{v:.1}");
        format!("{}{unit}", s.trim_end_matches('0').trim_end_matches('.'))
    };
    if b >= GIB {
        short(b as f64 / GIB as f64, "G")
    } else if b >= MIB {
        short(b as f64 / MIB as f64, "M")
    } else {
        short(b as f64 / 1024.0, "K")
    }
}

/// `v` rounded up to a multiple of 0.05 cores (a hair of float noise is forgiven).
pub fn round_cpus(v: f64) -> f64 {
    ((v / 0.05 - 1e-4).ceil() * 0.05 * 100.0).round() / 100.0
}

/// `v` rounded up to 4 MiB below 256 MiB, 32 MiB below 4 GiB, else 256 MiB.
pub fn round_memory(v: u64) -> u64 {
    let step = if v < 256 * MIB {
        4 * MIB
    } else if v < 4096 * MIB {
        32 * MIB
    } else {
        256 * MIB
    };
    v.div_ceil(step).saturating_mul(step)
}

fn cpu(s: &Summary, limit: Option<f64>, host_cpus: f64) -> Item {
    let mut figures = format!(
        "p95 use {} cores, peak {}, throttled {} %",
        cores(s.cpu_p95),
        cores(s.cpu_max),
        pct(s.throttled)
    );
    if let Some(p) = s.cpu_pressure {
        let _ = write!(figures, ", cpu pressure {p:.1} %");
    }
    let item = |action, recommended, reason: String| Item {
        knob: Knob::Cpus,
        action,
        current: limit,
        recommended,
        reason,
    };
    let Some(l) = limit else {
        return item(Action::Keep, None, figures);
    };
    let pressured = s.cpu_pressure.is_some_and(|p| p >= 10.0) && s.cpu_p99 >= 0.9 * l;
    if s.throttled > 0.05 || pressured {
        if l >= host_cpus {
            return item(
                Action::Keep,
                Some(l),
                format!("{figures}; already all {} host CPUs", cores(host_cpus)),
            );
        }
        let to = round_cpus((s.cpu_p99 * 1.3).max(l * 1.5)).min(host_cpus);
        return item(Action::Increase, Some(to), figures);
    }
    let calm = s.cpu_pressure.is_none_or(|p| p < 10.0);
    if s.cpu_p95 < 0.5 * l && s.throttled < 0.01 && calm {
        let to = round_cpus((s.cpu_p99 * 1.3).max(s.cpu_max).max(CPU_FLOOR));
        if to <= 0.9 * l {
            return item(Action::Decrease, Some(to), figures);
        }
    }
    item(Action::Keep, Some(l), figures)
}

fn memory(s: &Summary, limit: Option<u64>) -> Item {
    let kills = match s.oom_kills {
        0 => "no OOM kills".to_owned(),
        1 => "1 OOM kill".to_owned(),
        n => format!("{n} OOM kills"),
    };
    let peak = s.mem_peak;
    let mut figures = match limit {
        Some(m) if peak as f64 >= 0.9 * m as f64 => {
            format!("{kills}, peak {} at the limit", bytes(peak))
        }
        Some(m) => format!(
            "{kills}, peak {} ({} % of the limit)",
            bytes(peak),
            pct(peak as f64 / m as f64)
        ),
        None => format!("{kills}, peak {}", bytes(peak)),
    };
    if let Some(p) = s.memory_pressure {
        let _ = write!(figures, ", memory pressure {p:.1} %");
    }
    let item = |action, recommended: Option<u64>, reason: String| Item {
        knob: Knob::MemoryMax,
        action,
        current: limit.map(|m| m as f64),
        recommended: recommended.map(|r| r as f64),
        reason,
    };
    let Some(m) = limit else {
        return item(Action::Keep, None, figures);
    };
    let pressure = s.memory_pressure.unwrap_or(0.0);
    let at_limit = peak as f64 >= 0.9 * m as f64;
    if s.oom_kills > 0 || (at_limit && pressure >= 1.0) {
        let to = round_memory(m.max(peak).saturating_mul(3) / 2);
        return item(Action::Increase, Some(to), figures);
    }
    if (peak as f64) < 0.5 * m as f64 && pressure < 1.0 {
        let to = round_memory((peak.saturating_mul(13) / 10).max(MEMORY_FLOOR));
        if to as f64 <= 0.9 * m as f64 && to >= peak {
            return item(Action::Decrease, Some(to), figures);
        }
    }
    item(Action::Keep, Some(m), figures)
}

fn pids(s: &Summary, limit: u64) -> Item {
    let reason = match s.pids_peak {
        1 => "peak 1 process".to_owned(),
        n => format!("peak {n} processes"),
    };
    let (action, to) = if s.pids_peak as f64 >= 0.9 * limit as f64 {
        let to = (limit.saturating_mul(3) / 2).max(s.pids_peak.saturating_mul(2));
        (Action::Increase, to)
    } else {
        (Action::Keep, limit)
    };
    Item {
        knob: Knob::PidsMax,
        action,
        current: Some(limit as f64),
        recommended: Some(to as f64),
        reason,
    }
}

/// The limits patch that applies every increase and decrease of `items`.
pub fn patch(items: &[Item]) -> wire::LimitsPatch {
    use wire::Setting::Set;
    let mut p = wire::LimitsPatch::default();
    for i in items.iter().filter(|i| i.action != Action::Keep) {
        let Some(r) = i.recommended else { continue };
        match i.knob {
            Knob::Cpus => p.cpus = Set(r),
            Knob::MemoryMax => p.memory_max = Set(r as u64),
            Knob::PidsMax => p.pids_max = Set(r as u64),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            samples: 100,
            ..Summary::default()
        }
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        for (p, want) in [
            (50.0, 50.0),
            (95.0, 95.0),
            (99.0, 99.0),
            (100.0, 100.0),
            (0.0, 1.0),
        ] {
            assert_eq!(percentile(&v, p), want, "p{p}");
        }
        assert_eq!(percentile(&[3.0], 95.0), 3.0);
        assert_eq!(percentile(&[], 95.0), 0.0);
        assert_eq!(percentile(&[1.0, 2.0], 50.0), 1.0);
    }

    #[test]
    fn rounding() {
        for (v, want) in [
            (0.01, 0.05),
            (0.1, 0.1),
            (0.1000001, 0.1),
            (0.11, 0.15),
            (0.546, 0.55),
            (1.5, 1.5),
            (2.01, 2.05),
        ] {
            assert_eq!(round_cpus(v), want, "{v}");
        }
        for (v, want) in [
            (1, 4 * MIB),
            (4 * MIB, 4 * MIB),
            (4 * MIB + 1, 8 * MIB),
            (255 * MIB, 256 * MIB),
            (256 * MIB, 256 * MIB),
            (300 * MIB, 320 * MIB),
            (5000 * MIB, 5120 * MIB),
        ] {
            assert_eq!(round_memory(v), want, "{v}");
        }
        assert_eq!(cores(2.0), "2");
        assert_eq!(cores(0.6), "0.6");
        assert_eq!(cores(0.15), "0.15");
        assert_eq!(cores(0.0), "0");
        assert_eq!(bytes(512 * MIB), "512M");
        assert_eq!(bytes(1536 * MIB), "1.5G");
        assert_eq!(bytes(300 * 1024), "300K");
        assert_eq!(pct(0.0), "0");
        assert_eq!(pct(0.9), "90");
        assert_eq!(pct(0.045), "4.5");
    }

    #[test]
    fn summarizes_points() {
        let pts: Vec<HistoryPoint> = (0..10)
            .map(|i| HistoryPoint {
                ts_ms: i * 1000,
                covered_ms: 1000,
                // 0.1 .. 1.0 cores
                cpu_usec: (i + 1) * 100_000,
                throttled_usec: 500_000,
                mem_peak: i * MIB as i64,
                pids_peak: i,
                pressure_avg: [Some(2000.0), None, None],
                ..HistoryPoint::default()
            })
            .chain([HistoryPoint::default()])
            .collect();
        let s = summarize(&pts, 2);
        assert_eq!(s.samples, 10);
        assert!((s.cpu_p50 - 0.5).abs() < 1e-9);
        assert!((s.cpu_p95 - 1.0).abs() < 1e-9);
        assert!((s.cpu_max - 1.0).abs() < 1e-9);
        assert!((s.throttled - 0.5).abs() < 1e-9);
        assert_eq!(s.cpu_pressure, Some(20.0));
        assert_eq!(s.memory_pressure, None);
        assert_eq!(s.mem_peak, 9 * MIB);
        assert_eq!(s.pids_peak, 9);
        assert_eq!(s.oom_kills, 2);
    }

    #[test]
    fn too_little_history_recommends_nothing() {
        let s = Summary {
            samples: 12,
            throttled: 0.9,
            ..Summary::default()
        };
        let cur = Current {
            cpus: Some(0.1),
            ..Current::default()
        };
        assert!(recommend(&s, &cur, 4.0).is_empty());
        assert_eq!(
            not_enough(&s).as_deref(),
            Some("not enough history: 12 samples, need 30")
        );
        assert_eq!(not_enough(&summary()), None);
    }

    /// p95, p99, peak, throttled, pressure, limit, host CPUs → action, recommended.
    type CpuCase = (
        f64,
        f64,
        f64,
        f64,
        Option<f64>,
        Option<f64>,
        f64,
        Action,
        Option<f64>,
    );

    #[test]
    fn cpu_table() {
        use Action::*;
        #[rustfmt::skip]
        let cases: [CpuCase; 9] = [
            // starved by a low quota: ×1.5
            (0.1, 0.1, 0.1, 0.9, None, Some(0.1), 4.0, Increase, Some(0.15)),
            // throttled, p99 × 1.3 wins
            (0.9, 1.0, 1.0, 0.2, None, Some(0.5), 4.0, Increase, Some(1.3)),
            // capped at the host's CPUs
            (1.9, 2.0, 2.0, 0.3, None, Some(1.5), 2.0, Increase, Some(2.0)),
            // already all of the host
            (2.0, 2.0, 2.0, 0.3, None, Some(2.0), 2.0, Keep, Some(2.0)),
            // pressure at the limit without throttling counted (v1 lag)
            (0.95, 1.0, 1.0, 0.0, Some(30.0), Some(1.0), 4.0, Increase, Some(1.5)),
            // pressure from the host, well below the limit: no decrease
            (0.2, 0.3, 0.3, 0.0, Some(30.0), Some(1.0), 4.0, Keep, Some(1.0)),
            // idle with a large limit: the 0.1 floor
            (0.0, 0.0, 0.001, 0.0, None, Some(1.5), 4.0, Decrease, Some(0.1)),
            // p95 0.42 of 2: never below the peak 0.7
            (0.42, 0.5, 0.7, 0.0, None, Some(2.0), 4.0, Decrease, Some(0.7)),
            // no limit: information only
            (0.42, 0.5, 0.7, 0.0, None, None, 4.0, Keep, None),
        ];
        for (p95, p99, peak, thr, psi, limit, host, action, to) in cases {
            let s = Summary {
                cpu_p95: p95,
                cpu_p99: p99,
                cpu_max: peak,
                throttled: thr,
                cpu_pressure: psi,
                ..summary()
            };
            let i = cpu(&s, limit, host);
            assert_eq!((i.action, i.recommended), (action, to), "{s:?} {limit:?}");
            if let (Some(r), Decrease) = (i.recommended, action) {
                assert!(r >= peak, "below the peak");
            }
        }
        // A small margin is no decrease: 0.1 floor of a 0.1 limit.
        let i = cpu(&summary(), Some(0.1), 4.0);
        assert_eq!(i.action, Keep);
    }

    /// (peak, ooms, pressure, limit) → (action, recommended)
    #[test]
    fn memory_table() {
        use Action::*;
        let cases = [
            // 3 OOM kills, peak at the limit: ×1.5
            (
                128 * MIB,
                3,
                None,
                Some(128 * MIB),
                Increase,
                Some(192 * MIB),
            ),
            // at the limit with pressure
            (
                500 * MIB,
                0,
                Some(5.0),
                Some(512 * MIB),
                Increase,
                Some(768 * MIB),
            ),
            // at the limit, no pressure, no kills: page cache, kept
            (
                510 * MIB,
                0,
                Some(0.0),
                Some(512 * MIB),
                Keep,
                Some(512 * MIB),
            ),
            (510 * MIB, 0, None, Some(512 * MIB), Keep, Some(512 * MIB)),
            // idle: the 16 MiB floor
            (MIB / 2, 0, None, Some(512 * MIB), Decrease, Some(16 * MIB)),
            // peak × 1.3 rounded up
            (
                100 * MIB,
                0,
                None,
                Some(1024 * MIB),
                Decrease,
                Some(132 * MIB),
            ),
            // a decrease too small to matter (the floor is 16 MiB)
            (MIB, 0, None, Some(17 * MIB), Keep, Some(17 * MIB)),
            // no limit
            (100 * MIB, 0, None, None, Keep, None),
        ];
        for (peak, ooms, psi, limit, action, to) in cases {
            let s = Summary {
                mem_peak: peak,
                oom_kills: ooms,
                memory_pressure: psi,
                ..summary()
            };
            let i = memory(&s, limit);
            assert_eq!(
                (i.action, i.recommended),
                (action, to.map(|t| t as f64)),
                "{s:?} {limit:?}"
            );
            if let Some(r) = i.recommended.filter(|_| limit.is_some()) {
                assert!(r >= peak as f64, "below the peak");
            }
        }
    }

    #[test]
    fn pids_table() {
        let s = Summary {
            pids_peak: 95,
            ..summary()
        };
        assert_eq!(pids(&s, 100).recommended, Some(190.0));
        assert_eq!(pids(&s, 100).action, Action::Increase);
        assert_eq!(pids(&s, 1000).action, Action::Keep);
        let none = recommend(&summary(), &Current::default(), 4.0);
        assert_eq!(none.len(), 2, "pids only with a pids limit");
    }

    #[test]
    fn lines_and_patch() {
        let s = Summary {
            cpu_p95: 0.42,
            cpu_p99: 0.45,
            cpu_max: 0.5,
            mem_peak: 128 * MIB,
            oom_kills: 3,
            ..summary()
        };
        let cur = Current {
            cpus: Some(2.0),
            memory_max: Some(128 * MIB),
            pids_max: None,
        };
        let items = recommend(&s, &cur, 4.0);
        let lines: Vec<String> = items.iter().map(Item::line).collect();
        assert_eq!(
            lines,
            [
                "cpus 2 → 0.6: p95 use 0.42 cores, peak 0.5, throttled 0 %",
                "memory 128M → 192M: 3 OOM kills, peak 128M at the limit",
            ]
        );
        let p = patch(&items);
        assert_eq!(p.cpus, wire::Setting::Set(0.6));
        assert_eq!(p.memory_max, wire::Setting::Set(192 * MIB));
        assert!(p.pids_max.is_keep());
        let keep = cpu(&summary(), None, 4.0);
        assert_eq!(
            keep.line(),
            "cpus no limit: p95 use 0 cores, peak 0, throttled 0 %"
        );
        assert!(patch(&[keep]).is_empty());
    }
}
