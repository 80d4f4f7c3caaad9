//! A token bucket over an injected clock (milliseconds): `per_minute` tokens a
//! minute, holding at most `burst`. Used for a site's message and connection rates
//! and for throttle rules.

/// A rate limit: take a token, or learn how long to wait for one.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    per_minute: u32,
    burst: f64,
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    /// `per_minute` = 0 means unlimited. The burst is one second's worth, at least one.
    pub fn new(per_minute: u32, now_ms: i64) -> Self {
        let burst = (per_minute as f64 / 60.0).max(1.0);
        Self {
            per_minute,
            burst,
            tokens: burst,
            last_ms: now_ms,
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Changes the rate, keeping the tokens already earned (capped at the new burst).
    pub fn set_rate(&mut self, per_minute: u32, now_ms: i64) {
        if per_minute == self.per_minute {
            return;
        }
        self.refill(now_ms);
        self.per_minute = per_minute;
        self.burst = (per_minute as f64 / 60.0).max(1.0);
        self.tokens = self.tokens.min(self.burst);
    }

    fn refill(&mut self, now_ms: i64) {
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * self.per_minute as f64 / 60_000.0).min(self.burst);
    }

    /// Takes one token: `Ok` now, or `Err(ms)` to wait before one is there.
    pub fn take(&mut self, now_ms: i64) -> Result<(), i64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err((missing * 60_000.0 / self.per_minute as f64).ceil() as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_holds_over_a_minute_with_a_fake_clock() {
        let mut b = TokenBucket::new(60, 0);
        let mut taken = 0;
        let mut now = 0;
        while now < 60_000 {
            match b.take(now) {
                Ok(()) => taken += 1,
                Err(wait) => {
                    assert!(wait > 0 && wait <= 1000);
                    now += wait;
                }
            }
        }
        // One per second plus the initial burst of one.
        assert!((60..=61).contains(&taken), "{taken}");
    }

    #[test]
    fn unlimited_and_rate_change() {
        let mut b = TokenBucket::new(0, 0);
        for _ in 0..1000 {
            assert!(b.take(0).is_ok());
        }
        let mut b = TokenBucket::new(600, 0);
        for _ in 0..10 {
            assert!(b.take(0).is_ok());
        }
        assert!(b.take(0).is_err());
        b.set_rate(6, 0);
        assert_eq!(b.take(0), Err(10_000));
        assert!(b.take(10_000).is_ok());
    }

    #[test]
    fn a_clock_going_back_does_not_mint_tokens() {
        let mut b = TokenBucket::new(60, 10_000);
        assert!(b.take(10_000).is_ok());
        assert!(b.take(5_000).is_err());
    }
}
