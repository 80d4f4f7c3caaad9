//! When a failed webhook delivery is tried again: a schedule of delays (the last one
//! repeats) and a limit on how long a delivery is retried before it is `failed`.
//! Both come from configuration, so tests run the whole cycle in milliseconds.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Delay after the 1st, 2nd, … failed attempt; the last one repeats.
    pub schedule: Vec<Duration>,
    /// A delivery whose next attempt would start later than this after it was
    /// created is given up (`failed`).
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            schedule: [10, 30, 60, 300, 900, 1800, 3600]
                .map(Duration::from_secs)
                .to_vec(),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The time (ms) of the next attempt after `attempts` failed ones, or `None` when
    /// the delivery has been retried long enough.
    pub fn next_attempt(&self, created_at: i64, now: i64, attempts: i64) -> Option<i64> {
        let index = usize::try_from(attempts.saturating_sub(1)).unwrap_or(0);
        let delay = self
            .schedule
            .get(index)
            .or(self.schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(60));
        let next = now.saturating_add(millis(delay));
        (next <= created_at.saturating_add(millis(self.give_up_after))).then_some(next)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_backs_off_and_gives_up_after_a_day() {
        let p = RetryPolicy::default();
        assert_eq!(p.next_attempt(0, 0, 1), Some(10_000));
        assert_eq!(p.next_attempt(0, 10_000, 2), Some(40_000));
        assert_eq!(p.next_attempt(0, 0, 7), Some(3_600_000));
        assert_eq!(p.next_attempt(0, 0, 50), Some(3_600_000), "last repeats");
        let day = 24 * 3600 * 1000;
        assert_eq!(p.next_attempt(0, day - 3_600_000, 30), Some(day));
        assert_eq!(p.next_attempt(0, day - 3_599_999, 30), None);
        // Attempts over a day: 7 scheduled steps, then hourly.
        let (mut now, mut n) = (0, 0);
        while let Some(next) = p.next_attempt(0, now, n + 1) {
            now = next;
            n += 1;
        }
        assert!((25..=30).contains(&n), "{n} retries");
    }
}
