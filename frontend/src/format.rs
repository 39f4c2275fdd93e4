//! Numbers and times as people read them.

/// `1536` → `1.5 KiB`.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n;
    let mut i = 0;
    while v.abs() >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else if v.abs() >= 100.0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Bytes given as an integer.
pub fn bytes_u(n: u64) -> String {
    bytes(n as f64)
}

/// Cores: `0.253` → `0.25`.
pub fn cores(c: f64) -> String {
    if c >= 10.0 {
        format!("{c:.1}")
    } else {
        format!("{c:.2}")
    }
}

/// Money with its currency: `12.3456, "USD"` → `12.35 USD` (small amounts keep 4 decimals).
pub fn money(v: f64, currency: &str) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        format!("{v:.4} {currency}")
    } else {
        format!("{v:.2} {currency}")
    }
}

/// Seconds as a short duration: `3725` → `1h 2m`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// How long ago a Unix-ms instant was, from the browser's clock.
pub fn ago(ms: f64) -> String {
    let d = ((crate::api::now_ms() - ms) / 1000.0).max(0.0);
    if d < 2.0 {
        "just now".into()
    } else {
        format!("{} ago", duration(d))
    }
}

fn two(n: u32) -> String {
    format!("{n:02}")
}

/// A Unix-ms instant in the browser's time zone: `2026-11-29 08:04:20`.
pub fn datetime_ms(ms: f64) -> String {
    let d = js_sys::Date::new(&ms.into());
    format!(
        "{}-{}-{} {}:{}:{}",
        d.get_full_year(),
        two(d.get_month() + 1),
        two(d.get_date()),
        two(d.get_hours()),
        two(d.get_minutes()),
        two(d.get_seconds())
    )
}

/// A Unix-seconds instant, like [`datetime_ms`].
pub fn datetime(secs: i64) -> String {
    datetime_ms(secs as f64 * 1000.0)
}

/// A clock label for a chart axis: `08:04`, or `11-29` for spans over two days.
pub fn axis_time(ms: f64, span_ms: f64) -> String {
    let d = js_sys::Date::new(&ms.into());
    if span_ms > 2.0 * 86_400_000.0 {
        axis_day(ms)
    } else if span_ms < 600_000.0 {
        format!(
            "{}:{}:{}",
            two(d.get_hours()),
            two(d.get_minutes()),
            two(d.get_seconds())
        )
    } else {
        format!("{}:{}", two(d.get_hours()), two(d.get_minutes()))
    }
}

/// A date as an axis label, `MM-DD` (browser time zone).
pub fn axis_day(ms: f64) -> String {
    let d = js_sys::Date::new(&ms.into());
    format!("{}-{}", two(d.get_month() + 1), two(d.get_date()))
}

/// The current month as `YYYY-MM` (browser time zone).
pub fn this_month() -> String {
    let d = js_sys::Date::new_0();
    format!("{}-{}", d.get_full_year(), two(d.get_month() + 1))
}

/// The month before this one as `YYYY-MM` (browser time zone).
pub fn last_month() -> String {
    let d = js_sys::Date::new_0();
    let (y, m) = (d.get_full_year(), d.get_month());
    if m == 0 {
        format!("{}-12", y - 1)
    } else {
        format!("{y}-{}", two(m))
    }
}

/// Parses a size such as `512M`, `1.5G`, `1048576` into bytes (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let lower = lower.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1024f64),
        Some('m') => (&lower[..lower.len() - 1], 1024f64.powi(2)),
        Some('g') => (&lower[..lower.len() - 1], 1024f64.powi(3)),
        Some('t') => (&lower[..lower.len() - 1], 1024f64.powi(4)),
        _ => (lower, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok((v * mult).round() as u64),
        _ => Err(format!(
            "{t:?} is not a size: use bytes or a suffix, e.g. 512M, 1.5G"
        )),
    }
}

/// A byte count as the shortest exact size text (`536870912` → `512M`), for form fields.
pub fn size_text(n: u64) -> String {
    for (unit, m) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if n >= m && n.is_multiple_of(m) {
            return format!("{}{unit}", n / m);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("lots").is_err());
        assert_eq!(size_text(512 << 20), "512M");
        assert_eq!(size_text(1000), "1000");
    }
}
