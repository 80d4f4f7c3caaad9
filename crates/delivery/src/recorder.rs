//! The recorder task: writes the outcomes of every connection in batches, sends the
//! bounce reports that depend on them once they are written, and holds outcomes the
//! storage refuses (disk full, read-only) until it takes writes again.

use crate::engine::Engine;
use crate::lease::Held;
use crate::outcome::{PendingBounce, bounce};
use mailroom_store::Outcome;
use std::sync::Arc;
use std::time::Duration;

/// Work for the recorder task: outcomes to write, and a bounce report to send once
/// they are written.
pub(crate) enum Recording {
    Outcomes {
        outcomes: Vec<Outcome>,
        bounce: Option<PendingBounce>,
        /// The lease the outcomes were reached under: renewed until they are written.
        lease: Arc<Held>,
    },
    /// Answers once everything sent before it is written (shutdown).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Outcomes per batch, beyond which the recorder stops taking more before writing.
const MAX_BATCH_OUTCOMES: usize = 2000;
/// After the first outcome of a batch the recorder waits this long for more before
/// writing, unless [`LINGER_UNTIL`] have come or a flush is asked for (under load that
/// many come within a few milliseconds, and the store's writer carries them in its
/// next round with new messages). Nothing waits
/// on an outcome's commit (connections go on at once; the lease is kept meanwhile), so
/// at a few hundred deliveries a second outcomes are written a dozen at a time rather
/// than each in a commit of its own of some twenty pages and an fsync.
const LINGER: Duration = Duration::from_millis(20);
const LINGER_UNTIL: usize = 32;
/// The pause before trying again a batch the storage refused (full, read-only):
/// doubling from the first to the last, so a long fault costs a write every few
/// seconds, not a busy loop.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// While outcomes are held, a reminder in the log this often.
const HELD_LOG_EVERY: Duration = Duration::from_secs(60);

/// Outcomes waiting to be written in one transaction, with what depends on them.
#[derive(Default)]
struct Batch {
    outcomes: Vec<Outcome>,
    bounces: Vec<PendingBounce>,
    flushes: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Dropped once the batch is written (or given up): their leases stop renewing.
    leases: Vec<Arc<Held>>,
}

impl Batch {
    fn add(&mut self, item: Recording) {
        match item {
            Recording::Outcomes {
                outcomes,
                bounce,
                lease,
            } => {
                self.outcomes.extend(outcomes);
                self.bounces.extend(bounce);
                self.leases.push(lease);
            }
            Recording::Flush(done) => self.flushes.push(done),
        }
    }

    /// Takes whatever else is waiting, up to the batch bound.
    fn fill(&mut self, rx: &mut tokio::sync::mpsc::Receiver<Recording>) {
        while self.outcomes.len() < MAX_BATCH_OUTCOMES {
            match rx.try_recv() {
                Ok(item) => self.add(item),
                Err(_) => break,
            }
        }
    }

    /// Takes what comes in until `until`, or until the batch is big enough, a flush is
    /// asked for, the sender is gone or the engine shuts down.
    async fn linger(
        &mut self,
        rx: &mut tokio::sync::mpsc::Receiver<Recording>,
        until: tokio::time::Instant,
        shutdown: &tokio_util::sync::CancellationToken,
    ) {
        while self.outcomes.len() < LINGER_UNTIL && self.flushes.is_empty() {
            tokio::select! {
                item = tokio::time::timeout_at(until, rx.recv()) => match item {
                    Ok(Some(item)) => {
                        self.add(item);
                        self.fill(rx);
                    }
                    Ok(None) | Err(_) => return,
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }

    fn finish(self) {
        drop(self.leases);
        for done in self.flushes {
            let _ = done.send(());
        }
    }
}

/// Writes outcomes for all connections in batches: whatever has queued up while the
/// previous batch was being committed, and what comes in within [`LINGER`] of a
/// batch's first outcome, goes into one transaction. Connections never
/// wait for the disk; an outcome lost to a crash means the recipient is delivered
/// again (at least once).
///
/// When the storage refuses a batch (disk full, read-only file system or database:
/// see `StoreError::refuses_writes`), that batch is given up (it was handed over
/// without a copy, so the common path pays nothing for this): its leases run out and
/// its recipients are delivered again, at most one batch. From then on until a write
/// succeeds, every batch is written from a copy and, when refused, held with its
/// leases and tried again after a pause (250 ms doubling to 5 s) together with
/// whatever came in meanwhile, until it is written. Meanwhile the scheduler claims
/// nothing new (`Engine::recording_held`), so the deliveries whose outcome waits are
/// only those already under way. Once written, the outcomes are fenced by their lease
/// tokens as always: on a single node no one else can have claimed the recipients
/// (claims are writes too), so they are not delivered twice. Other errors, and a
/// refusal during shutdown, give the batch up as before: the leases run out and the
/// recipients are tried again (delivered at least once).
pub(crate) async fn run_recorder(
    engine: Arc<Engine>,
    mut rx: tokio::sync::mpsc::Receiver<Recording>,
) {
    let mut held: Option<Batch> = None;
    let mut pause = RETRY_FIRST;
    // When the storage first refused the held outcomes, and when that was last logged.
    let mut refused: Option<(std::time::Instant, std::time::Instant)> = None;
    loop {
        let mut batch = match held.take() {
            Some(b) => {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = engine.shutdown.cancelled() => {}
                }
                b
            }
            None => match rx.recv().await {
                Some(first) => {
                    let mut b = Batch::default();
                    b.add(first);
                    b.fill(&mut rx);
                    let until = tokio::time::Instant::now() + LINGER;
                    b.linger(&mut rx, until, &engine.shutdown).await;
                    b
                }
                None => return,
            },
        };
        batch.fill(&mut rx);
        let count = batch.outcomes.len();
        // While the storage refuses writes a copy is kept, to try again; otherwise the
        // batch is handed over without one (no copy on the common path), so the first
        // refused batch is given up (its recipients are delivered again).
        let outcomes = if refused.is_some() {
            batch.outcomes.clone()
        } else {
            std::mem::take(&mut batch.outcomes)
        };
        let result = engine.store.record_outcomes(outcomes).await;
        match result {
            Ok(lost) => {
                // (A batch of flushes alone wrote nothing: no news about the storage.)
                if count > 0
                    && let Some((since, _)) = refused.take()
                {
                    tracing::info!(
                        count,
                        after_secs = since.elapsed().as_secs(),
                        "the storage takes outcome writes again"
                    );
                }
                pause = RETRY_FIRST;
                if !lost.is_empty() {
                    // Another node holds these now: it records their outcome.
                    engine.note_lost_leases(lost.len());
                    tracing::warn!(
                        count = lost.len(),
                        "outcomes not recorded: the lease was lost to another node"
                    );
                }
                let lost: std::collections::HashSet<_> = lost.into_iter().collect();
                for (body, mut failed, now) in std::mem::take(&mut batch.bounces) {
                    failed.retain(|(r, _, _)| !lost.contains(&(r.message_id.clone(), r.idx)));
                    if !failed.is_empty() {
                        bounce(&engine, &body, failed, now).await;
                    }
                }
                batch.finish();
            }
            Err(e) if e.refuses_writes() && !engine.shutdown.is_cancelled() => {
                let now = std::time::Instant::now();
                match &mut refused {
                    None => {
                        refused = Some((now, now));
                        // This batch went without a copy: given up (at least once).
                        tracing::error!(
                            error = %e, count,
                            "the storage refuses outcome writes: these recipients will be tried again; outcomes from now on are held until it takes writes (nothing new is claimed while some are held)"
                        );
                        batch.finish();
                    }
                    Some((since, logged)) => {
                        if logged.elapsed() >= HELD_LOG_EVERY {
                            *logged = now;
                            tracing::warn!(
                                error = %e, count, refused_secs = since.elapsed().as_secs(),
                                "outcomes still held: the storage refuses writes"
                            );
                        } else {
                            tracing::debug!(error = %e, count, "outcomes held");
                        }
                        pause = (pause * 2).min(RETRY_MAX);
                        held = Some(batch);
                    }
                }
            }
            Err(e) => {
                // The leases expire and the recipients are tried again: at least once.
                tracing::error!(
                    error = %e, count,
                    "recording outcomes failed; those recipients will be tried again"
                );
                batch.finish();
            }
        }
        let holding = held.as_ref().map_or(0, |b| b.outcomes.len());
        engine.set_recording_held(holding > 0);
        metrics::gauge!("mailroom_delivery_outcomes_held").set(holding as f64);
    }
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
