//! The retry schedule: when the next attempt happens after `n` failed attempts, with
//! jitter so a destination that was down is not hit by every message at once.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RetrySchedule {
    /// Delay after the 1st, 2nd, ... failed attempt; the last one repeats.
    pub steps: Vec<Duration>,
    /// Up to this fraction of the delay is added at random (0.0 to 1.0).
    pub jitter: f64,
    /// After this long in the queue a recipient expires.
    pub lifetime: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        let m = |n: u64| Duration::from_secs(60 * n);
        Self {
            steps: vec![m(1), m(5), m(15), m(30), m(60), m(120), m(240), m(480)],
            jitter: 0.1,
            lifetime: Duration::from_secs(72 * 3600),
        }
    }
}

impl RetrySchedule {
    /// Delay before the next attempt, given how many attempts have failed so far
    /// (1 after the first failure). `unit` in 0..1 picks the jitter.
    pub fn delay(&self, failed_attempts: u32, unit: f64) -> Duration {
        let i = (failed_attempts.max(1) as usize - 1).min(self.steps.len().saturating_sub(1));
        let base = self
            .steps
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(60));
        base + base.mul_f64(self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0))
    }

    /// The next attempt time in Unix ms, or `None` when the recipient must expire
    /// instead (the next attempt would fall after its lifetime).
    pub fn next_attempt(
        &self,
        received_at: i64,
        now: i64,
        failed_attempts: u32,
        unit: f64,
    ) -> Option<i64> {
        let next = now + self.delay(failed_attempts, unit).as_millis() as i64;
        let deadline = received_at + self.lifetime.as_millis() as i64;
        (now < deadline).then_some(next.min(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_steps_then_repeats_the_last() {
        let s = RetrySchedule::default();
        assert_eq!(s.delay(1, 0.0), Duration::from_secs(60));
        assert_eq!(s.delay(2, 0.0), Duration::from_secs(300));
        assert_eq!(s.delay(8, 0.0), Duration::from_secs(8 * 3600));
        assert_eq!(s.delay(30, 0.0), Duration::from_secs(8 * 3600));
        assert_eq!(s.delay(1, 1.0), Duration::from_secs(66));
    }

    #[test]
    fn expires_at_the_lifetime() {
        let s = RetrySchedule {
            lifetime: Duration::from_secs(600),
            ..Default::default()
        };
        assert_eq!(s.next_attempt(0, 1000, 1, 0.0), Some(61_000));
        // The last retry is clamped to the deadline, then the recipient expires.
        assert_eq!(s.next_attempt(0, 590_000, 3, 0.0), Some(600_000));
        assert_eq!(s.next_attempt(0, 600_000, 3, 0.0), None);
    }
}
