//! One connection's share of a run: open a session, take message numbers from
//! the shared counter until none are left or the deadline passes, time each
//! transaction, reopen the session after an error (bounded), and QUIT. In an
//! open-loop run (`--rate`) each message waits for its scheduled start. Each
//! worker keeps its own tally; `run` merges them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::{Instant, sleep, timeout_at};

use crate::message::MessageSpec;
use crate::session::{Endpoint, Session};
use crate::transaction::{Outcome, submit};

/// Consecutive failed session openings after which a worker gives up.
const MAX_OPEN_FAILURES: u32 = 3;
/// Distinct refusal/error texts kept for the report.
const MAX_SAMPLES: usize = 8;
/// Highest latency the histogram tracks (one hour, in microseconds).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// State every worker of a run shares.
pub struct Shared {
    pub endpoint: Endpoint,
    pub spec: MessageSpec,
    /// Next message number to send; numbers at or past `total` are not sent.
    pub next: AtomicU64,
    pub total: u64,
    /// `--max-seconds` after the start: nothing new starts after it.
    pub deadline: Instant,
    /// Open loop (`--rate`): message `n` is due at `started + n / rate`.
    pub pace: Option<(Instant, f64)>,
    /// Sessions opened successfully, to tell "target unreachable" from "slow".
    pub sessions: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new(endpoint: Endpoint, spec: MessageSpec, total: u64, deadline: Instant) -> Self {
        Self {
            endpoint,
            spec,
            next: AtomicU64::new(0),
            total,
            deadline,
            pace: None,
            sessions: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
        }
    }

    /// Keeps `text` if it is new and there is room.
    fn sample(&self, text: String) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() < MAX_SAMPLES && !samples.contains(&text) {
            samples.push(text);
        }
    }

    /// When message `seq` is due in an open-loop run.
    fn due(&self, seq: u64) -> Option<Instant> {
        self.pace
            .map(|(start, rate)| start + Duration::from_secs_f64(seq as f64 / rate))
    }

    pub fn samples(&self) -> Vec<String> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One worker's counts and latencies.
pub struct Tally {
    pub accepted: u64,
    pub rejected: u64,
    pub errors: u64,
    pub connect_errors: u64,
    pub deadline_reached: bool,
    /// Accepted-message latency in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Tally {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            accepted: 0,
            rejected: 0,
            errors: 0,
            connect_errors: 0,
            deadline_reached: false,
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?,
        })
    }

    pub fn merge(&mut self, other: &Self) -> anyhow::Result<()> {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.errors += other.errors;
        self.connect_errors += other.connect_errors;
        self.deadline_reached |= other.deadline_reached;
        self.latency_us.add(&other.latency_us)?;
        Ok(())
    }
}

/// Runs one connection until the work is gone, the deadline passes, or the
/// session cannot be (re)opened `MAX_OPEN_FAILURES` times in a row.
pub async fn work(shared: &Shared, mut tally: Tally) -> Tally {
    let mut session: Option<Session> = None;
    let mut failures = 0u32;
    loop {
        if Instant::now() >= shared.deadline {
            tally.deadline_reached |= shared.next.load(Ordering::Relaxed) < shared.total;
            break;
        }
        let Some(s) = session.as_mut() else {
            match timeout_at(shared.deadline, Session::open(&shared.endpoint)).await {
                Ok(Ok(s)) => {
                    shared.sessions.fetch_add(1, Ordering::Relaxed);
                    failures = 0;
                    session = Some(s);
                }
                Ok(Err(e)) => {
                    tally.connect_errors += 1;
                    shared.sample(format!("session: {e:#}"));
                    failures += 1;
                    if failures >= MAX_OPEN_FAILURES {
                        break;
                    }
                    sleep(Duration::from_millis(100) * failures).await;
                }
                Err(_elapsed) => {} // the loop head notices the deadline
            }
            continue;
        };
        let seq = shared.next.fetch_add(1, Ordering::Relaxed);
        if seq >= shared.total {
            break;
        }
        let message = shared.spec.build(seq, &chrono::Utc::now().to_rfc2822());
        // Open loop: wait for the message's slot, and count its latency from there
        // (a late start, all connections busy, is the relay's latency too).
        let due = shared.due(seq);
        if let Some(due) = due {
            if due >= shared.deadline {
                tally.deadline_reached = true;
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        let started = due.unwrap_or_else(Instant::now);
        let result = timeout_at(
            shared.deadline,
            submit(s, &shared.spec.from, &shared.spec.to, &message),
        )
        .await;
        match result {
            Ok(Ok(Outcome::Accepted)) => {
                tally.accepted += 1;
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally.latency_us.saturating_record(us.max(1));
            }
            Ok(Ok(Outcome::Rejected { sample, close })) => {
                tally.rejected += 1;
                shared.sample(sample);
                if close {
                    session = None;
                }
            }
            Ok(Err(e)) => {
                tally.errors += 1;
                shared.sample(format!("error: {e:#}"));
                session = None;
            }
            Err(_elapsed) => {
                tally.errors += 1;
                tally.deadline_reached = true;
                shared.sample("error: --max-seconds reached mid-transaction".to_owned());
                session = None;
            }
        }
    }
    if let Some(s) = session {
        s.quit().await;
    }
    tally
}
