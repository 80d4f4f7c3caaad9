//! Per-tenant submission quotas: messages per second (a token bucket) and messages per
//! rolling 24 hours (hourly buckets, seeded from the store at start so a restart does
//! not reset anyone's day). Pure bookkeeping over an injected clock (`now` in Unix
//! milliseconds); memory is one small entry per tenant that has sent recently.

use mailroom_model::TenantId;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

const HOUR_MS: i64 = 3_600_000;
const DAY_HOURS: i64 = 24;

/// The limits that apply to one tenant (0 = unlimited).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimits {
    pub per_second: f64,
    pub per_day: u64,
}

/// Which limit was hit, and when trying again can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub window: QuotaWindow,
    /// Whole seconds until a message would be admitted (at least 1).
    pub retry_after_secs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaWindow {
    Second,
    Day,
}

impl QuotaWindow {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Second => "per-second",
            Self::Day => "24-hour",
        }
    }
}

#[derive(Debug, Default)]
struct Counter {
    tokens: f64,
    refilled_at: i64,
    /// (hour number, messages) for the last 24 hours, oldest first.
    hours: VecDeque<(i64, u64)>,
}

impl Counter {
    fn refill(&mut self, limits: RateLimits, now: i64) {
        let burst = limits.per_second.max(1.0);
        if self.refilled_at == 0 {
            self.tokens = burst;
        } else {
            let elapsed = (now - self.refilled_at).max(0) as f64 / 1000.0;
            self.tokens = (self.tokens + elapsed * limits.per_second).min(burst);
        }
        self.refilled_at = now;
        let oldest = now / HOUR_MS - (DAY_HOURS - 1);
        while self.hours.front().is_some_and(|(h, _)| *h < oldest) {
            self.hours.pop_front();
        }
    }

    fn check(&self, limits: RateLimits, now: i64) -> Result<(), Exceeded> {
        if limits.per_second > 0.0 && self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / limits.per_second;
            return Err(Exceeded {
                window: QuotaWindow::Second,
                retry_after_secs: (wait.ceil() as u64).max(1),
            });
        }
        if limits.per_day > 0 {
            let sent: u64 = self.hours.iter().map(|(_, n)| n).sum();
            if sent >= limits.per_day {
                // Room appears when the oldest hour leaves the 24-hour window.
                let oldest = self.hours.front().map(|(h, _)| *h).unwrap_or(now / HOUR_MS);
                let frees_at = (oldest + DAY_HOURS) * HOUR_MS;
                let secs = ((frees_at - now).max(0) + 999) / 1000;
                return Err(Exceeded {
                    window: QuotaWindow::Day,
                    retry_after_secs: (secs as u64).max(1),
                });
            }
        }
        Ok(())
    }

    fn count(&mut self, now: i64, n: u64) {
        let hour = now / HOUR_MS;
        match self.hours.back_mut() {
            Some((h, count)) if *h == hour => *count += n,
            _ => self.hours.push_back((hour, n)),
        }
    }
}

#[derive(Debug, Default)]
pub struct Quotas {
    counters: Mutex<HashMap<TenantId, Counter>>,
}

impl Quotas {
    /// Seeds the daily windows with (tenant, hour number, messages) from the store.
    pub fn seed(&self, counts: Vec<(TenantId, i64, i64)>) {
        let mut map = self.counters.lock().expect("quota lock");
        let mut sorted = counts;
        sorted.sort_by_key(|(_, h, _)| *h);
        for (tenant, hour, n) in sorted {
            map.entry(tenant)
                .or_default()
                .hours
                .push_back((hour, n.max(0) as u64));
        }
    }

    /// Whether one more message would be admitted now, without counting it.
    pub fn check(&self, tenant: &TenantId, limits: RateLimits, now: i64) -> Result<(), Exceeded> {
        if limits.per_second <= 0.0 && limits.per_day == 0 {
            return Ok(());
        }
        let mut map = self.counters.lock().expect("quota lock");
        let c = map.entry(tenant.clone()).or_default();
        c.refill(limits, now);
        c.check(limits, now)
    }

    /// Admits and counts one message, or says which limit it would exceed. Messages
    /// are counted for the daily window even when no limit is set, so that setting
    /// one later takes the day so far into account.
    pub fn admit(&self, tenant: &TenantId, limits: RateLimits, now: i64) -> Result<(), Exceeded> {
        let mut map = self.counters.lock().expect("quota lock");
        let c = map.entry(tenant.clone()).or_default();
        c.refill(limits, now);
        c.check(limits, now)?;
        if limits.per_second > 0.0 {
            c.tokens -= 1.0;
        }
        c.count(now, 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn per_second_bucket_refills() {
        let q = Quotas::default();
        let t = TenantId::generate();
        let limits = RateLimits {
            per_second: 2.0,
            per_day: 0,
        };
        assert!(q.admit(&t, limits, T0).is_ok());
        assert!(q.admit(&t, limits, T0).is_ok());
        let e = q.admit(&t, limits, T0).unwrap_err();
        assert_eq!(e.window, QuotaWindow::Second);
        assert_eq!(e.retry_after_secs, 1);
        assert!(q.check(&t, limits, T0 + 100).is_err());
        assert!(q.admit(&t, limits, T0 + 600).is_ok());
    }

    #[test]
    fn daily_window_rolls_and_survives_restart() {
        let t = TenantId::generate();
        let limits = RateLimits {
            per_second: 0.0,
            per_day: 3,
        };
        let q = Quotas::default();
        // Two messages 23 hours ago (from the store), one now.
        q.seed(vec![(t.clone(), T0 / HOUR_MS - 23, 2)]);
        assert!(q.admit(&t, limits, T0).is_ok());
        let e = q.admit(&t, limits, T0).unwrap_err();
        assert_eq!(e.window, QuotaWindow::Day);
        assert!(e.retry_after_secs <= 3600, "{e:?}");
        // An hour later the seeded hour has left the window.
        assert!(q.admit(&t, limits, T0 + HOUR_MS).is_ok());
        // Other tenants are not affected.
        assert!(q.admit(&TenantId::generate(), limits, T0).is_ok());
    }

    #[test]
    fn unlimited_admits_everything() {
        let q = Quotas::default();
        let t = TenantId::generate();
        let limits = RateLimits {
            per_second: 0.0,
            per_day: 0,
        };
        for _ in 0..1000 {
            assert!(q.admit(&t, limits, T0).is_ok());
        }
    }
}
