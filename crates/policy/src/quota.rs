//! Per-tenant submission quotas: messages per second (a token bucket) and messages per
//! rolling 24 hours (hourly buckets). Pure bookkeeping over an injected clock (`now` in
//! Unix milliseconds); memory is one small entry per tenant that has sent recently.
//!
//! **Across nodes** (several nodes on one database), and how exact it is:
//!
//! - *Per day*: the hourly buckets hold every node's accepted messages as the store
//!   counted them at the last sync ([`Quotas::begin_sync`] / [`Quotas::finish_sync`],
//!   run every few seconds by the policy's quota sync and in full at start, so a
//!   restart does not reset anyone's day), plus this node's own admits since that sync
//!   began. The cluster can therefore over-accept by at most what the *other* nodes
//!   accepted during one sync interval (plus messages in flight between admission and
//!   commit at the moment of a sync); it never under-counts committed mail for longer
//!   than one interval.
//! - *Per second*: each node runs its own token bucket at the tenant's rate divided by
//!   the number of live nodes. With traffic spread over the nodes the cluster admits at
//!   most the tenant's rate (plus one burst per node); a tenant whose traffic all goes
//!   to one node gets only its share of the rate there. The node count is the
//!   heartbeat's view, so for one heartbeat period after a node joins or dies the
//!   share is off by that node.

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
    /// (hour number, messages) for the last 24 hours, oldest first: every node's
    /// messages as of the last sync plus this node's admits since.
    hours: VecDeque<(i64, u64)>,
    /// This node's admits since the current sync began (hour number, messages): the
    /// part of `hours` the store's counts may not include yet.
    fresh: VecDeque<(i64, u64)>,
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
        while self.fresh.front().is_some_and(|(h, _)| *h < oldest) {
            self.fresh.pop_front();
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
        for buckets in [&mut self.hours, &mut self.fresh] {
            match buckets.back_mut() {
                Some((h, count)) if *h == hour => *count += n,
                _ => buckets.push_back((hour, n)),
            }
        }
    }

    /// Takes back the latest admit (its message was not stored).
    fn uncount(&mut self, limits: RateLimits) {
        if limits.per_second > 0.0 {
            self.tokens = (self.tokens + 1.0).min(limits.per_second.max(1.0));
        }
        for buckets in [&mut self.hours, &mut self.fresh] {
            if let Some((_, n)) = buckets.back_mut() {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// `hours` becomes: its own buckets before `from_hour`, the store's from
    /// `from_hour` on, plus this node's admits since the sync began.
    fn merge(&mut self, stored: &[(i64, u64)], from_hour: i64) {
        let mut by_hour = std::collections::BTreeMap::new();
        for (h, n) in self.hours.iter().filter(|(h, _)| *h < from_hour) {
            *by_hour.entry(*h).or_insert(0) += n;
        }
        for (h, n) in stored.iter().filter(|(h, _)| *h >= from_hour) {
            *by_hour.entry(*h).or_insert(0) += n;
        }
        for (h, n) in &self.fresh {
            *by_hour.entry(*h).or_insert(0) += n;
        }
        self.hours = by_hour.into_iter().collect();
    }
}

#[derive(Debug, Default)]
pub struct Quotas {
    counters: Mutex<HashMap<TenantId, Counter>>,
}

impl Quotas {
    /// Seeds the daily windows with (tenant, hour number, messages) from the store
    /// (every hour replaced): a full sync.
    pub fn seed(&self, counts: Vec<(TenantId, i64, i64)>) {
        self.begin_sync();
        self.finish_sync(counts, i64::MIN);
    }

    /// Starts a sync: from now on, this node's admits are remembered apart, to be
    /// added to the store's counts (which may not include them yet). Call right before
    /// reading the counts.
    pub fn begin_sync(&self) {
        let mut map = self.counters.lock().expect("quota lock");
        for c in map.values_mut() {
            c.fresh.clear();
        }
    }

    /// Ends a sync with the store's (tenant, hour number, messages) for every hour
    /// from `from_hour` on: those hours are replaced by the store's counts plus this
    /// node's admits since [`Self::begin_sync`]; earlier hours are kept.
    pub fn finish_sync(&self, counts: Vec<(TenantId, i64, i64)>, from_hour: i64) {
        let mut stored: HashMap<TenantId, Vec<(i64, u64)>> = HashMap::new();
        for (tenant, hour, n) in counts {
            stored
                .entry(tenant)
                .or_default()
                .push((hour, n.max(0) as u64));
        }
        let mut map = self.counters.lock().expect("quota lock");
        for tenant in stored.keys() {
            map.entry(tenant.clone()).or_default();
        }
        for (tenant, c) in map.iter_mut() {
            let s = stored.get(tenant).map(Vec::as_slice).unwrap_or_default();
            c.merge(s, from_hour);
        }
    }

    /// Takes back one admitted message that was not stored after all (the store
    /// failed, or another node won an idempotency race).
    pub fn refund(&self, tenant: &TenantId, limits: RateLimits) {
        let mut map = self.counters.lock().expect("quota lock");
        if let Some(c) = map.get_mut(tenant) {
            c.uncount(limits);
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
    fn sync_adds_what_other_nodes_accepted() {
        let t = TenantId::generate();
        let limits = RateLimits {
            per_second: 0.0,
            per_day: 10,
        };
        let hour = T0 / HOUR_MS;
        let q = Quotas::default();
        q.seed(vec![(t.clone(), hour - 5, 1)]);
        for _ in 0..3 {
            q.admit(&t, limits, T0).unwrap();
        }
        q.begin_sync();
        // Admitted while the counts are read: the store may not have it yet.
        q.admit(&t, limits, T0).unwrap();
        // The store: this node's 3 committed plus 4 from other nodes this hour.
        q.finish_sync(vec![(t.clone(), hour, 7)], hour - 1);
        // 1 (hour - 5, kept) + 7 (store) + 1 (fresh) = 9: one more, then full.
        q.admit(&t, limits, T0).unwrap();
        assert_eq!(
            q.admit(&t, limits, T0).unwrap_err().window,
            QuotaWindow::Day
        );
        // The next sync sees everything committed (this node's 5 and the others' 4
        // this hour): 1 + 9 = 10, nothing counted twice, so a limit of 11 has room
        // for exactly one more.
        q.begin_sync();
        q.finish_sync(vec![(t.clone(), hour, 9)], hour - 1);
        let eleven = RateLimits {
            per_day: 11,
            ..limits
        };
        q.admit(&t, eleven, T0).unwrap();
        assert!(q.admit(&t, eleven, T0).is_err());
        // A tenant the store knows but this node never saw is limited too.
        let other = TenantId::generate();
        q.begin_sync();
        q.finish_sync(vec![(other.clone(), hour, 10)], hour - 1);
        assert!(q.check(&other, limits, T0).is_err());
    }

    #[test]
    fn refund_gives_the_admit_back() {
        let t = TenantId::generate();
        let limits = RateLimits {
            per_second: 1.0,
            per_day: 1,
        };
        let q = Quotas::default();
        q.admit(&t, limits, T0).unwrap();
        assert!(q.admit(&t, limits, T0).is_err());
        q.refund(&t, limits);
        q.admit(&t, limits, T0).unwrap();
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
