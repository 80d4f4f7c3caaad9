//! Failed console sign-ins per client address: after `max_failures` failures within
//! `window`, further sign-ins from that address are refused (`429` with `Retry-After`)
//! until the window that started with its first failure ends. A success does not
//! reset the count (an attacker holding one valid key cannot use it to keep guessing).
//!
//! The count is per node, in memory: a guesser spread over N nodes gets N times the
//! budget, which still bounds guessing 192-bit tokens to nothing useful. The table is
//! bounded: beyond `MAX_TRACKED` addresses, expired entries are dropped, and if none
//! has expired the untracked addresses share one bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many client addresses are tracked at most.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct SigninLimiter {
    max_failures: u32,
    window: Duration,
    /// Address (`None`: the shared overflow bucket) → (window start, failures).
    failures: Mutex<HashMap<Option<IpAddr>, (Instant, u32)>>,
}

impl SigninLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn key(map: &HashMap<Option<IpAddr>, (Instant, u32)>, ip: Option<IpAddr>) -> Option<IpAddr> {
        if map.contains_key(&ip) || map.len() < MAX_TRACKED {
            ip
        } else {
            None
        }
    }

    /// `Err(seconds to wait)` while the address is over its budget.
    pub fn check(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let key = Self::key(&map, ip);
        match map.get(&key) {
            Some((start, n)) if *n >= self.max_failures => {
                let end = *start + self.window;
                if end > now {
                    Err((end - now).as_secs().max(1))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts one failed sign-in from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED {
            let window = self.window;
            map.retain(|_, (start, _)| *start + window > now);
        }
        let key = Self::key(&map, ip);
        let entry = map.entry(key).or_insert((now, 0));
        if entry.0 + self.window <= now {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_budget_until_the_window_ends() {
        let l = SigninLimiter::new(3, Duration::from_secs(60));
        let ip: Option<IpAddr> = Some("127.0.0.7".parse().unwrap());
        let other: Option<IpAddr> = Some("127.0.0.8".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip, t0).is_ok());
            l.failed(ip, t0);
        }
        let wait = l.check(ip, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, 50);
        assert!(
            l.check(other, t0).is_ok(),
            "another address has its own budget"
        );
        assert!(l.check(ip, t0 + Duration::from_secs(61)).is_ok());
        l.failed(ip, t0 + Duration::from_secs(61));
        assert!(
            l.check(ip, t0 + Duration::from_secs(62)).is_ok(),
            "a new window"
        );
    }
}
