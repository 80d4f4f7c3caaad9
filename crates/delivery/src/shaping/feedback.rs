//! Concurrency feedback after Postfix's 1/N scheme: the connection window to a site
//! grows by 1/N for each success (about one connection per N successes at
//! concurrency N) and shrinks by one for each connection failure or bare `421`
//! (a `421` that no response rule explains), never below one nor above the
//! profile's limit. Starts at a small initial window, like Postfix's
//! `initial_destination_concurrency`, and opens up as the site answers.

/// The adaptive connection window of one site.
#[derive(Clone, Debug, PartialEq)]
pub struct Feedback {
    window: f64,
    max: usize,
}

impl Feedback {
    /// The initial window (`initial`, capped at `max`).
    pub fn new(initial: usize, max: usize) -> Self {
        let max = max.max(1);
        Self {
            window: initial.clamp(1, max) as f64,
            max,
        }
    }

    /// The connections allowed now.
    pub fn limit(&self) -> usize {
        (self.window.floor() as usize).clamp(1, self.max)
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
        self.window = self.window.min(self.max as f64);
    }

    /// A message accepted (or refused for a reason that says nothing about load).
    pub fn success(&mut self) {
        self.window = (self.window + 1.0 / self.window).min(self.max as f64);
    }

    /// A connection failed, timed out, or the site answered a bare `421`.
    pub fn failure(&mut self) {
        self.window = (self.window - 1.0).max(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_one_over_n_successes_and_falls_on_failures() {
        let mut f = Feedback::new(2, 10);
        assert_eq!(f.limit(), 2);
        f.success();
        f.success();
        assert_eq!(f.limit(), 2);
        f.success();
        assert_eq!(f.limit(), 3);
        for _ in 0..200 {
            f.success();
        }
        assert_eq!(f.limit(), 10);
        f.failure();
        assert_eq!(f.limit(), 9);
        for _ in 0..50 {
            f.failure();
        }
        assert_eq!(f.limit(), 1);
    }

    #[test]
    fn max_caps_the_window() {
        let mut f = Feedback::new(8, 20);
        f.set_max(3);
        assert_eq!(f.limit(), 3);
        assert_eq!(Feedback::new(0, 0).limit(), 1);
    }
}
