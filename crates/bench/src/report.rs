//! The figures of a finished run and their two renderings: a short human
//! summary (`Display`) and one JSON object (`to_json`). It does no measuring.

use std::fmt;
use std::time::Duration;

use serde_json::json;

/// What a run achieved.
///
/// `accepted + rejected + errors + unsent == requested`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `--messages`.
    pub requested: u64,
    /// Messages whose final reply after the body was 2xx.
    pub accepted: u64,
    /// Messages refused with a 4xx/5xx reply at any stage.
    pub rejected: u64,
    /// Messages lost to an I/O or protocol error mid-transaction (or cut by
    /// `--max-seconds`); the connection was reopened after each.
    pub errors: u64,
    /// Messages never started: the deadline passed or every connection gave up.
    pub unsent: u64,
    /// Failed attempts to open a session (connect, greeting, EHLO, TLS, AUTH).
    pub connect_errors: u64,
    /// `--max-seconds` stopped the run before every message was tried.
    pub deadline_reached: bool,
    /// Wall time from the first connect to the last session's end.
    pub elapsed: Duration,
    /// Accepted messages per second of `elapsed`.
    pub per_sec: f64,
    /// Latency of accepted messages, MAIL FROM to final reply, in milliseconds.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// The first few distinct refusals and errors, verbatim.
    pub samples: Vec<String>,
}

impl Report {
    /// The report as one JSON object; `elapsed` is in seconds (`elapsed_s`).
    pub fn to_json(&self) -> String {
        json!({
            "requested": self.requested,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "errors": self.errors,
            "unsent": self.unsent,
            "connect_errors": self.connect_errors,
            "deadline_reached": self.deadline_reached,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "per_sec": self.per_sec,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms,
            "max_ms": self.max_ms,
            "samples": self.samples,
        })
        .to_string()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "accepted     {} of {}", self.accepted, self.requested)?;
        writeln!(f, "rejected     {}", self.rejected)?;
        writeln!(f, "errors       {}", self.errors)?;
        if self.unsent > 0 || self.connect_errors > 0 {
            writeln!(f, "unsent       {}", self.unsent)?;
            writeln!(f, "conn errors  {}", self.connect_errors)?;
        }
        let stop = if self.deadline_reached {
            " (stopped by --max-seconds)"
        } else {
            ""
        };
        writeln!(f, "elapsed      {:.3} s{stop}", self.elapsed.as_secs_f64())?;
        writeln!(f, "throughput   {:.1} msg/s", self.per_sec)?;
        writeln!(f, "latency p50  {:.2} ms", self.p50_ms)?;
        writeln!(f, "latency p90  {:.2} ms", self.p90_ms)?;
        writeln!(f, "latency p99  {:.2} ms", self.p99_ms)?;
        writeln!(f, "latency p999 {:.2} ms", self.p999_ms)?;
        write!(f, "latency max  {:.2} ms", self.max_ms)?;
        for sample in &self.samples {
            write!(f, "\nsample       {sample}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            requested: 10,
            accepted: 9,
            rejected: 1,
            errors: 0,
            unsent: 0,
            connect_errors: 0,
            deadline_reached: false,
            elapsed: Duration::from_millis(1500),
            per_sec: 6.0,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: 3.0,
            p999_ms: 3.5,
            max_ms: 4.0,
            samples: vec!["RCPT TO: 550 5.1.1 \"no\" such user".into()],
        }
    }

    #[test]
    fn json_has_every_figure_and_escapes_samples() {
        let v: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        assert_eq!(v["accepted"], 9);
        assert_eq!(v["elapsed_s"], 1.5);
        assert_eq!(v["p99_ms"], 3.0);
        assert_eq!(v["samples"][0], "RCPT TO: 550 5.1.1 \"no\" such user");
    }

    #[test]
    fn text_has_one_line_per_figure() {
        let text = report().to_string();
        assert!(text.starts_with("accepted     9 of 10\n"));
        assert!(text.contains("throughput   6.0 msg/s\n"));
        assert!(text.ends_with("sample       RCPT TO: 550 5.1.1 \"no\" such user"));
    }
}
