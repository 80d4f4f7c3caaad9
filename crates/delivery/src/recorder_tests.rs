//! The recorder's batching: what comes in while a batch lingers joins it; a flush,
//! a full batch or the end of the linger ends the wait.

use super::*;
use crate::lease::LeaseKeeper;
use mailroom_model::RecipientState::Delivered;
use mailroom_model::TenantId;
use mailroom_testkit::messages::{new_message, outcome, recipient};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn outcomes(keeper: &LeaseKeeper, n: usize) -> Recording {
    let message = new_message(
        &TenantId::from_stored("t".into()),
        "s@acme.test",
        vec![recipient("r@example.net")],
    );
    Recording::Outcomes {
        outcomes: (0..n).map(|_| outcome(&message, 0, Delivered, 1)).collect(),
        bounce: None,
        lease: keeper.hold(1, mailroom_model::now_millis() + 60_000),
    }
}

#[tokio::test(start_paused = true)]
async fn outcomes_that_come_within_the_linger_join_the_batch() {
    let keeper = LeaseKeeper::new("node", Duration::from_secs(60));
    let (tx, mut rx) = mpsc::channel(16);
    let start = Instant::now();
    let mut batch = Batch::default();
    batch.add(outcomes(&keeper, 1));
    let sender = {
        let a = outcomes(&keeper, 1);
        let b = outcomes(&keeper, 2);
        let late = outcomes(&keeper, 1);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send(a).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send(b).await.unwrap();
            // After the linger: the next batch's.
            tokio::time::sleep(LINGER).await;
            tx.send(late).await.unwrap();
        })
    };
    batch
        .linger(&mut rx, start + LINGER, &CancellationToken::new())
        .await;
    assert_eq!(batch.outcomes.len(), 4);
    assert_eq!(
        Instant::now() - start,
        LINGER,
        "waited to the end of the linger"
    );
    sender.await.unwrap();
    assert!(
        rx.try_recv().is_ok(),
        "the late one is left for the next batch"
    );
}

#[tokio::test(start_paused = true)]
async fn a_flush_or_a_full_batch_ends_the_linger_at_once() {
    let keeper = LeaseKeeper::new("node", Duration::from_secs(60));
    let (tx, mut rx) = mpsc::channel(16);
    let start = Instant::now();
    let mut batch = Batch::default();
    batch.add(outcomes(&keeper, 1));
    let (done, _wait) = tokio::sync::oneshot::channel();
    tx.send(Recording::Flush(done)).await.unwrap();
    batch
        .linger(&mut rx, start + LINGER, &CancellationToken::new())
        .await;
    assert_eq!(Instant::now(), start, "a flush is written at once");
    assert_eq!(batch.flushes.len(), 1);

    let mut batch = Batch::default();
    batch.add(outcomes(&keeper, 1));
    tx.send(outcomes(&keeper, LINGER_UNTIL)).await.unwrap();
    batch
        .linger(&mut rx, start + LINGER, &CancellationToken::new())
        .await;
    assert_eq!(Instant::now(), start, "a full batch is written at once");
    assert_eq!(batch.outcomes.len(), LINGER_UNTIL + 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_the_linger() {
    let keeper = LeaseKeeper::new("node", Duration::from_secs(60));
    let (_tx, mut rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    let start = Instant::now();
    let mut batch = Batch::default();
    batch.add(outcomes(&keeper, 1));
    batch.linger(&mut rx, start + LINGER, &shutdown).await;
    assert_eq!(Instant::now(), start);
}
