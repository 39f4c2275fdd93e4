//! Login throttling: per account with exponential backoff capped at [`MAX_DELAY`] — never a
//! permanent lockout, since over an ssh tunnel every request comes from 127.0.0.1 and a ban
//! would lock the admin out — plus a global token bucket for names that are no account.
//!
//! # Reserve, then verify
//! An attempt is *reserved* before its password is checked: [`Throttle::reserve`] counts it as a
//! failure at once (and sets the backoff that failure earns), and only a success takes it back
//! ([`Throttle::success`]). So parallel guesses cannot all pass the check while the first ones
//! are still hashing: of any number sent at once, at most [`FREE_FAILURES`] + 1 are verified.
//!
//! # Known accounts are out of the global bucket's reach
//! The global bucket ([`GLOBAL_BURST`], [`GLOBAL_PER_SEC`]) only meters names that are not an
//! account, so a flood of made-up names cannot lock the admin out; a known account is limited
//! by its own backoff alone. An unknown name the bucket refuses is not answered 429 (that would
//! tell which names exist): it gets [`Verdict::Fake`], a plain "wrong password" after the time a
//! verification takes, without the argon2 work. Unknown names keep a backoff of their own, with
//! the same schedule as accounts, so repeated guesses on any name are answered alike.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before the backoff starts.
pub const FREE_FAILURES: u32 = 3;
/// The longest wait between two attempts on one account.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// A name's failures are forgotten this long after its last one.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Unknown names tracked at most; beyond that the least recently failed one is forgotten.
/// (Accounts are always tracked: there are as many as users.)
const MAX_UNKNOWN: usize = 10_000;
/// Global bucket of unknown names: this many verifications at once, refilled at
/// `GLOBAL_PER_SEC`.
pub const GLOBAL_BURST: f64 = 30.0;
pub const GLOBAL_PER_SEC: f64 = 5.0;

#[derive(Debug)]
struct Account {
    failures: u32,
    not_before: Instant,
    last_failure: Instant,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Accounts {
    known: HashMap<String, Account>,
    unknown: HashMap<String, Account>,
}

pub struct Throttle {
    accounts: Mutex<Accounts>,
    global: Mutex<Bucket>,
}

/// What a reserved attempt may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the password (against the account's hash, or the dummy hash for an unknown name).
    Verify,
    /// An unknown name over the global bucket: answer "wrong password" after the time a
    /// verification takes, without computing one.
    Fake,
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
            accounts: Mutex::new(Accounts {
                known: HashMap::new(),
                unknown: HashMap::new(),
            }),
            global: Mutex::new(Bucket {
                tokens: GLOBAL_BURST,
                at: Instant::now(),
            }),
        }
    }

    /// Before checking a password of `name` (`known`: it is an account): `Err(seconds)` when
    /// the attempt must wait; otherwise the attempt is counted as a failure until
    /// [`Throttle::success`] takes it back.
    pub fn reserve(&self, name: &str, known: bool) -> Result<Verdict, u64> {
        let now = Instant::now();
        {
            let mut all = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
            let map = if known {
                &mut all.known
            } else {
                &mut all.unknown
            };
            if let Some(a) = map.get(name)
                && a.not_before > now
            {
                return Err(retry_secs(a.not_before - now));
            }
            if !known && map.len() >= MAX_UNKNOWN && !map.contains_key(name) {
                map.retain(|_, a| now.saturating_duration_since(a.last_failure) < FORGET_AFTER);
                if map.len() >= MAX_UNKNOWN
                    && let Some(oldest) = map
                        .iter()
                        .min_by_key(|(_, a)| a.last_failure)
                        .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
            let a = map.entry(name.to_owned()).or_insert(Account {
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
        if known {
            return Ok(Verdict::Verify);
        }
        let mut g = self.global.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(g.at).as_secs_f64();
        g.tokens = (g.tokens + elapsed * GLOBAL_PER_SEC).min(GLOBAL_BURST);
        g.at = now;
        if g.tokens < 1.0 {
            return Ok(Verdict::Fake);
        }
        g.tokens -= 1.0;
        Ok(Verdict::Verify)
    }

    /// After a successful login: the account starts afresh (its reserved attempt included).
    pub fn success(&self, name: &str) {
        let mut all = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        all.known.remove(name);
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
        for _ in 0..=FREE_FAILURES {
            assert_eq!(t.reserve("a", true), Ok(Verdict::Verify));
        }
        assert_eq!(t.reserve("a", true), Err(1));
        assert!(
            t.reserve("b", true).is_ok(),
            "other accounts are not affected"
        );
        t.success("a");
        assert!(t.reserve("a", true).is_ok());
    }

    #[test]
    fn parallel_attempts_are_reserved_before_any_is_verified() {
        // 30 attempts arrive before the first verification ends: only the free ones and the
        // one that earns the first delay get through.
        let t = Throttle::new();
        let passed = (0..30).filter(|_| t.reserve("a", true).is_ok()).count();
        assert_eq!(passed, FREE_FAILURES as usize + 1);
    }

    #[test]
    fn the_global_bucket_meters_unknown_names_only() {
        let t = Throttle::new();
        let verified = (0..100)
            .filter(|i| t.reserve(&format!("u{i}"), false) == Ok(Verdict::Verify))
            .count();
        assert!((30..=31).contains(&verified), "{verified}");
        // The flood neither refuses nor fakes a known account.
        assert_eq!(t.reserve("admin", true), Ok(Verdict::Verify));
        // An unknown name over the bucket is not told so (no 429 that only unknown names get).
        assert_eq!(t.reserve("u-next", false), Ok(Verdict::Fake));
    }

    #[test]
    fn unknown_names_are_bounded() {
        let t = Throttle::new();
        for i in 0..MAX_UNKNOWN + 10 {
            let _ = t.reserve(&format!("n{i}"), false);
        }
        let all = t.accounts.lock().unwrap();
        assert!(all.unknown.len() <= MAX_UNKNOWN);
    }
}
