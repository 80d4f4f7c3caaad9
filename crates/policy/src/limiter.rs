//! Failed-AUTH rate limit per client address: after `max` failures within `window`,
//! the address is locked out until the window has passed. Memory is bounded: expired
//! entries are swept when the table grows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct AuthLimiter {
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

const SWEEP_ABOVE: usize = 50_000;

impl AuthLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_locked(&self, ip: IpAddr) -> bool {
        let map = self.failures.lock().expect("limiter lock");
        matches!(map.get(&ip), Some((n, since)) if *n >= self.max && since.elapsed() < self.window)
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let mut map = self.failures.lock().expect("limiter lock");
        if map.len() > SWEEP_ABOVE {
            let window = self.window;
            map.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn record_success(&self, ip: IpAddr) {
        self.failures.lock().expect("limiter lock").remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures() {
        let l = AuthLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        for _ in 0..3 {
            assert!(!l.is_locked(ip));
            l.record_failure(ip);
        }
        assert!(l.is_locked(ip));
        assert!(!l.is_locked("127.0.0.8".parse().unwrap()));
        let short = AuthLimiter::new(1, Duration::from_millis(1));
        short.record_failure(ip);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!short.is_locked(ip));
    }
}
