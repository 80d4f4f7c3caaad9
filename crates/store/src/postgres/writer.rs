//! Durable acceptance with group commit: `enqueue` hands the message to this node's
//! writer task, which writes whatever queued up during the previous commit in one
//! transaction and answers each caller after COMMIT (`synchronous_commit = on`).

use crate::{NewMessage, StoreError};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

pub(super) struct Job {
    pub message: NewMessage,
    pub done: oneshot::Sender<Result<(), StoreError>>,
}

pub(super) async fn run(_pool: PgPool, mut rx: mpsc::Receiver<Job>) {
    // TODO: group commit (next commit).
    while let Some(job) = rx.recv().await {
        let _ = job.done.send(Err(StoreError::Closed));
    }
}
