//! Login throttling: per account (known or not, so throttling reveals nothing) with exponential
//! backoff capped at [`MAX_DELAY`] — never a permanent lockout, since over an ssh tunnel every
//! request comes from 127.0.0.1 and a ban would lock the admin out — plus a global token bucket
//! that caps login attempts of all accounts together.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before the backoff starts.
pub const FREE_FAILURES: u32 = 3;
/// The longest wait between two attempts on one account.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// An account's failures are forgotten this long after its last one.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Accounts tracked at most (unknown names included); beyond that only the global cap applies.
const MAX_ACCOUNTS: usize = 10_000;
/// Global bucket: this many attempts at once, refilled at `GLOBAL_PER_SEC`.
const GLOBAL_BURST: f64 = 30.0;
const GLOBAL_PER_SEC: f64 = 5.0;

struct Account {
    failures: u32,
    not_before: Instant,
    last_failure: Instant,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Throttle {
    accounts: Mutex<HashMap<String, Account>>,
    global: Mutex<Bucket>,
}

/// The delay after the `failures`-th failure in a row: none for the first [`FREE_FAILURES`], then
/// 1 s, 2 s, 4 s ... up to [`MAX_DELAY`].
pub fn delay_after(failures: u32) -> Duration {
    if failures <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (failures - FREE_FAILURES - 1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_DELAY)
}

fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Throttle {
    pub fn new() -> Self {
        Self {
            accounts: Mutex::new(HashMap::new()),
            global: Mutex::new(Bucket {
                tokens: GLOBAL_BURST,
                at: Instant::now(),
            }),
        }
    }

    /// Before checking a password: `Err(seconds)` when this attempt must wait.
    pub fn check(&self, name: &str) -> Result<(), u64> {
        let now = Instant::now();
        {
            let accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(a) = accounts.get(name)
                && a.not_before > now
            {
                return Err(retry_secs(a.not_before - now));
            }
        }
        let mut g = self.global.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(g.at).as_secs_f64();
        g.tokens = (g.tokens + elapsed * GLOBAL_PER_SEC).min(GLOBAL_BURST);
        g.at = now;
        if g.tokens < 1.0 {
            let wait = (1.0 - g.tokens) / GLOBAL_PER_SEC;
            return Err(retry_secs(Duration::from_secs_f64(wait)));
        }
        g.tokens -= 1.0;
        Ok(())
    }

    /// After a wrong password (or an unknown name).
    pub fn failure(&self, name: &str) {
        let now = Instant::now();
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if accounts.len() >= MAX_ACCOUNTS {
            accounts.retain(|_, a| now.saturating_duration_since(a.last_failure) < FORGET_AFTER);
            if accounts.len() >= MAX_ACCOUNTS && !accounts.contains_key(name) {
                return;
            }
        }
        let a = accounts.entry(name.to_owned()).or_insert(Account {
            failures: 0,
            not_before: now,
            last_failure: now,
        });
        if now.saturating_duration_since(a.last_failure) >= FORGET_AFTER {
            a.failures = 0;
        }
        a.failures = a.failures.saturating_add(1);
        a.last_failure = now;
        a.not_before = now + delay_after(a.failures);
    }

    /// After a successful login: the account starts afresh.
    pub fn success(&self, name: &str) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        accounts.remove(name);
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule() {
        let table = [
            (1, 0),
            (3, 0),
            (4, 1),
            (5, 2),
            (6, 4),
            (12, 256),
            (13, 300),
            (1000, 300),
        ];
        for (failures, secs) in table {
            assert_eq!(
                delay_after(failures),
                Duration::from_secs(secs),
                "{failures}"
            );
        }
    }

    #[test]
    fn account_backoff_and_reset() {
        let t = Throttle::new();
        for _ in 0..FREE_FAILURES {
            assert!(t.check("a").is_ok());
            t.failure("a");
        }
        assert!(t.check("a").is_ok());
        t.failure("a");
        assert_eq!(t.check("a"), Err(1));
        assert!(t.check("b").is_ok(), "other accounts are not affected");
        t.success("a");
        assert!(t.check("a").is_ok());
    }

    #[test]
    fn global_cap() {
        let t = Throttle::new();
        let allowed = (0..100)
            .filter(|i| t.check(&format!("u{i}")).is_ok())
            .count();
        assert!((30..=31).contains(&allowed), "{allowed}");
    }
}
