//! UTC calendar arithmetic for ledger periods (hours, days, months) and the date formats the
//! API and CLI accept. Pure functions; Howard Hinnant's civil-from-days algorithms.

/// Seconds per day.
pub const DAY: i64 = 86_400;
/// Seconds per hour.
pub const HOUR: i64 = 3_600;

/// Days since 1970-01-01 of the civil date `y-m-d` (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of day `z` since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub fn hour_start(t: i64) -> i64 {
    t.div_euclid(HOUR) * HOUR
}

pub fn hour_ceil(t: i64) -> i64 {
    hour_start(t + HOUR - 1)
}

pub fn day_start(t: i64) -> i64 {
    t.div_euclid(DAY) * DAY
}

/// Start of the month holding `t`.
pub fn month_start(t: i64) -> i64 {
    let (y, m, _) = civil_from_days(t.div_euclid(DAY));
    days_from_civil(y, m, 1) * DAY
}

/// Start of the month after the one holding `t`.
pub fn next_month(t: i64) -> i64 {
    let (y, m, _) = civil_from_days(t.div_euclid(DAY));
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1) * DAY
}

/// A ledger table grain. Every boundary of a grain is also a boundary of each finer one, so a
/// range splits into pieces of the coarsest grain that fits, recursively at the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Hour,
    /// 00:00, 06:00, 12:00 and 18:00 UTC.
    SixHours,
    Day,
    /// Days 1–10, 11–20 and 21 to the month's end.
    TenDays,
    Month,
}

impl Grain {
    /// Finest first.
    pub const ALL: [Grain; 5] = [
        Grain::Hour,
        Grain::SixHours,
        Grain::Day,
        Grain::TenDays,
        Grain::Month,
    ];

    /// Start of the period of this grain holding `t`.
    pub fn start(self, t: i64) -> i64 {
        match self {
            Grain::Hour => hour_start(t),
            Grain::SixHours => t.div_euclid(6 * HOUR) * 6 * HOUR,
            Grain::Day => day_start(t),
            Grain::TenDays => {
                let (y, m, d) = civil_from_days(t.div_euclid(DAY));
                days_from_civil(y, m, (d.min(21) - 1) / 10 * 10 + 1) * DAY
            }
            Grain::Month => month_start(t),
        }
    }

    /// Start of the period after the one holding `t`.
    pub fn next(self, t: i64) -> i64 {
        let s = self.start(t);
        match self {
            Grain::Hour => s + HOUR,
            Grain::SixHours => s + 6 * HOUR,
            Grain::Day => s + DAY,
            Grain::TenDays => {
                let (_, _, d) = civil_from_days(s.div_euclid(DAY));
                if d == 21 { next_month(s) } else { s + 10 * DAY }
            }
            Grain::Month => next_month(s),
        }
    }

    /// The first boundary at or after `t`.
    fn ceil(self, t: i64) -> i64 {
        let s = self.start(t);
        if s == t { s } else { self.next(t) }
    }
}

/// Splits the hour-aligned range `[from, to)` into pieces, each a run of whole periods of one
/// grain: the coarsest grain that fits in the middle, finer ones at the edges (at most 5 hours,
/// 3 six-hour blocks, 9 days and 2 ten-day blocks per edge), so a query reads as few rows as
/// possible. The pieces are contiguous and cover the range exactly once.
pub fn decompose(from: i64, to: i64) -> Vec<(Grain, i64, i64)> {
    decompose_in(&Grain::ALL, from, to)
}

/// [`decompose`] with only `grains` (finest first, the first one `Hour`): the shared ledger
/// keeps hours, days and months.
pub fn decompose_in(grains: &[Grain], from: i64, to: i64) -> Vec<(Grain, i64, i64)> {
    let mut out = Vec::new();
    split(grains, from, to, &mut out);
    out
}

fn split(grains: &[Grain], from: i64, to: i64, out: &mut Vec<(Grain, i64, i64)>) {
    if from >= to {
        return;
    }
    let Some((&grain, finer)) = grains.split_last() else {
        return;
    };
    if finer.is_empty() {
        out.push((grain, from, to));
        return;
    }
    let (lo, hi) = (grain.ceil(from), grain.start(to));
    if lo < hi {
        split(finer, from, lo, out);
        out.push((grain, lo, hi));
        split(finer, hi, to, out);
    } else {
        split(finer, from, to, out);
    }
}

/// Parses `YYYY-MM-DD`, `YYYY-MM` (the month's first day), `YYYY-MM-DDTHH:MM[:SS]Z` (UTC) or
/// plain Unix seconds. Returns Unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() > 7 {
        // Up to the end of year 9999: date arithmetic on the result never overflows.
        return s.parse().ok().filter(|v: &i64| *v <= 253_402_300_799);
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (s, None),
    };
    let mut it = date.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    if !(1..=9999).contains(&y) {
        return None;
    }
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = match it.next() {
        Some(d) => d.parse().ok()?,
        None => 1,
    };
    if it.next().is_some() || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * DAY;
    if let Some(t) = time {
        let mut it = t.split(':');
        let h: i64 = it.next()?.parse().ok()?;
        let mi: i64 = it.next()?.parse().ok()?;
        let se: i64 = it.next().map_or(Some(0), |x| x.parse().ok())?;
        if it.next().is_some() || h > 23 || mi > 59 || se > 59 {
            return None;
        }
        secs += h * HOUR + mi * 60 + se;
    }
    Some(secs)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let start = days_from_civil(y, m, 1);
    let next = if m == 12 {
        days_from_civil(y + 1, 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    };
    (next - start) as u32
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_time(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY));
    let s = t.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / HOUR,
        s % HOUR / 60,
        s % 60
    )
}

/// `YYYY-MM` of the month holding `t`.
pub fn format_month(t: i64) -> String {
    let (y, m, _) = civil_from_days(t.div_euclid(DAY));
    format!("{y:04}-{m:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(
            format_time(parse_time("2024-02-29T23:59:59Z").unwrap()),
            "2024-02-29T23:59:59Z"
        );
        assert!(parse_time("2023-02-29").is_none());
        assert!(parse_time("2023-13-01").is_none());
        assert_eq!(parse_time("2026-11"), parse_time("2026-11-01"));
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000));
    }

    #[test]
    fn months() {
        let t = parse_time("2026-12-15T10:00Z").unwrap();
        assert_eq!(format_time(month_start(t)), "2026-12-01T00:00:00Z");
        assert_eq!(format_time(next_month(t)), "2027-01-01T00:00:00Z");
        assert_eq!(format_month(t), "2026-12");
    }

    #[test]
    fn decompose_covers_exactly_once() {
        let cases = [
            ("2026-01-01", "2027-01-01"),
            ("2026-01-15T05:00Z", "2026-03-02T07:00Z"),
            ("2026-01-15T05:00Z", "2026-01-15T09:00Z"),
            ("2026-01-15T05:00Z", "2026-01-17T00:00Z"),
            ("2026-01-31T23:00Z", "2026-02-01T01:00Z"),
            ("2026-02-01", "2026-03-01"),
        ];
        for (a, b) in cases {
            let (from, to) = (parse_time(a).unwrap(), parse_time(b).unwrap());
            let pieces = decompose(from, to);
            let mut cursor = from;
            for (grain, lo, hi) in &pieces {
                assert_eq!(*lo, cursor, "{a}..{b}: contiguous");
                assert!(lo < hi);
                assert!(
                    grain.start(*lo) == *lo && grain.start(*hi) == *hi,
                    "{a}..{b}: aligned"
                );
                cursor = *hi;
            }
            assert_eq!(cursor, to, "{a}..{b}: complete");
        }
        let year = decompose(
            parse_time("2026-01-01").unwrap(),
            parse_time("2027-01-01").unwrap(),
        );
        assert_eq!(year, vec![(Grain::Month, year[0].1, year[0].2)]);
    }

    /// Periods (ledger rows per container) a piece list reads.
    fn periods(pieces: &[(Grain, i64, i64)]) -> i64 {
        pieces
            .iter()
            .map(|(g, lo, hi)| {
                let (mut t, mut n) = (*lo, 0);
                while t < *hi {
                    t = g.next(t);
                    n += 1;
                }
                n
            })
            .sum()
    }

    #[test]
    fn decompose_in_uses_only_the_grains_given() {
        // The shared ledger's grains: hours, days, months.
        let t = |s: &str| parse_time(s).unwrap();
        let grains = [Grain::Hour, Grain::Day, Grain::Month];
        let pieces = decompose_in(&grains, t("2026-03-14T05:00Z"), t("2026-09-20T17:00Z"));
        assert_eq!(
            pieces,
            vec![
                (Grain::Hour, t("2026-03-14T05:00Z"), t("2026-03-15")),
                (Grain::Day, t("2026-03-15"), t("2026-04-01")),
                (Grain::Month, t("2026-04-01"), t("2026-09-01")),
                (Grain::Day, t("2026-09-01"), t("2026-09-20")),
                (Grain::Hour, t("2026-09-20"), t("2026-09-20T17:00Z")),
            ]
        );
        assert_eq!(periods(&pieces), 19 + 17 + 5 + 19 + 17);
    }

    #[test]
    fn decompose_reads_few_periods_for_any_range() {
        // The benchmark's odd range, split at its mid-year rate change: 14 + 19 periods.
        let t = |s: &str| parse_time(s).unwrap();
        let mid = t("2026-07-01");
        assert_eq!(periods(&decompose(t("2026-03-14T05:00Z"), mid)), 14);
        assert_eq!(periods(&decompose(mid, t("2026-09-20T17:00Z"))), 19);
        // Ten-day blocks: 1-10, 11-20, 21-end (also of February in a leap year).
        assert_eq!(
            Grain::TenDays.start(t("2024-02-29T13:00Z")),
            t("2024-02-21")
        );
        assert_eq!(Grain::TenDays.next(t("2024-02-25")), t("2024-03-01"));
        assert_eq!(Grain::TenDays.next(t("2024-02-11")), t("2024-02-21"));
        assert_eq!(
            Grain::SixHours.start(t("2024-02-29T13:00Z")),
            t("2024-02-29T12:00Z")
        );
        // Random hour-aligned ranges over three years: contiguous, aligned, complete, and at
        // most 5 + 3 + 9 + 2 periods per edge plus the whole months between.
        let base = t("2025-01-01");
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rnd = |n: i64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as i64
        };
        for _ in 0..3000 {
            let a = base + rnd(3 * 365 * 24) * HOUR;
            let span = if rnd(2) == 0 { 24 * 70 } else { 3 * 365 * 24 };
            let b = a + rnd(span) * HOUR;
            let pieces = decompose(a, b);
            let mut cursor = a;
            for (grain, lo, hi) in &pieces {
                assert_eq!(*lo, cursor);
                assert!(lo < hi);
                assert!(grain.start(*lo) == *lo && grain.start(*hi) == *hi);
                cursor = *hi;
            }
            assert_eq!(cursor, b);
            let months = pieces
                .iter()
                .filter(|p| p.0 == Grain::Month)
                .map(|p| periods(std::slice::from_ref(p)))
                .sum::<i64>();
            assert!(periods(&pieces) - months <= 2 * 19, "{a}..{b}: {pieces:?}");
        }
    }
}
