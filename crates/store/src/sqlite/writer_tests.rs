//! The writer task's rounds, driven directly: jobs and ops put in its channels before
//! it starts are all waiting at its first round, so they are written together.

use super::*;
use crate::sqlite::SqliteStore;
use crate::sqlite::ops::Op;
use crate::{MessageStore, NewRecipient, QueueStore};
use mailroom_model::{MessageId, TenantId, now_millis};
use sqlx::ConnectOptions;
use std::path::Path;
use std::time::Duration;

/// A message to one recipient. (Not `mailroom_testkit`'s builder: that crate depends on
/// this one, and its `NewMessage` would be another type in these unit tests.)
fn message(n: usize) -> NewMessage {
    let address = format!("r{n}@example.net");
    NewMessage {
        id: MessageId::generate(),
        tenant_id: TenantId::from_stored("t1".into()),
        mail_from: "sender@acme.test".into(),
        rfc_message_id: Some(format!("m{n}@acme.test")),
        received_at: now_millis(),
        source: "smtp",
        client_ip: None,
        dsn_ret: None,
        dsn_envid: None,
        smtputf8: false,
        require_tls: false,
        body: format!("From: sender@acme.test\r\nSubject: {n}\r\n\r\nbody {n}\r\n").into_bytes(),
        recipients: vec![NewRecipient {
            address,
            domain: "example.net".into(),
            dsn_notify: None,
            dsn_orcpt: None,
            suppressed: None,
        }],
        accepted_detail: mailroom_model::AcceptedDetail::default().into(),
        lease: None,
        idempotency: None,
        meta: None,
        return_path: None,
        quarantine: None,
    }
}

type Answer = oneshot::Receiver<Result<(), StoreError>>;

fn job(message: NewMessage) -> (Job, Answer) {
    let (done, wait) = oneshot::channel();
    let packed = crate::body_codec::Packed::of(&message.body);
    let job = Job {
        message,
        packed,
        done,
        staged: None,
    };
    (job, wait)
}

async fn connect(path: &Path) -> SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap()
}

/// A writer task on its own connection, whose outcomes alone wait up to `wait`; it ends
/// once both senders are dropped.
async fn spawn_writer(
    path: &Path,
    wait: Duration,
) -> (
    mpsc::Sender<Job>,
    mpsc::Sender<Op>,
    tokio::task::JoinHandle<()>,
) {
    let (jobs_tx, jobs_rx) = mpsc::channel(16);
    let (ops_tx, ops_rx) = mpsc::channel(16);
    let conn = connect(path).await;
    let writer = tokio::spawn(run(
        conn,
        jobs_rx,
        ops_rx,
        Default::default(),
        wait,
        Default::default(),
    ));
    (jobs_tx, ops_tx, writer)
}

/// An outcome for `m`'s first recipient, which holds no lease: the store reports it
/// lost, and writes nothing.
type Lost = oneshot::Receiver<Result<Vec<(MessageId, i64)>, StoreError>>;

fn record(m: &NewMessage) -> (Op, Lost) {
    let (done, wait) = oneshot::channel();
    let outcome = crate::Outcome {
        message_id: m.id.clone(),
        idx: 0,
        recipient: m.recipients[0].address.clone(),
        tenant_id: m.tenant_id.clone(),
        state: mailroom_model::RecipientState::Delivered,
        attempted: true,
        next_attempt_at: None,
        last_reply: None,
        last_mx: None,
        event: mailroom_model::EventType::Delivered,
        detail: Default::default(),
        at: now_millis(),
        suppress: false,
        lease_token: 7,
    };
    let op = Op::Record {
        outcomes: vec![outcome],
        done,
    };
    (op, wait)
}

/// Runs one writer task over `jobs` and `ops` (all queued before it starts) on its own
/// connection to `path`, until both are done.
async fn run_writer(path: &Path, jobs: Vec<Job>, ops: Vec<Op>) {
    let conn = connect(path).await;
    let (jobs_tx, jobs_rx) = mpsc::channel(16);
    let (ops_tx, ops_rx) = mpsc::channel(16);
    for j in jobs {
        jobs_tx.try_send(j).map_err(|_| "queue").unwrap();
    }
    for o in ops {
        ops_tx.try_send(o).map_err(|_| "queue").unwrap();
    }
    // With both senders gone the task ends once it has taken everything.
    drop((jobs_tx, ops_tx));
    run(
        conn,
        jobs_rx,
        ops_rx,
        Default::default(),
        OUTCOMES_WAIT,
        Default::default(),
    )
    .await;
}

fn cancel(id: &MessageId) -> (Op, oneshot::Receiver<Result<u64, StoreError>>) {
    let (done, wait) = oneshot::channel();
    let op = Op::Cancel {
        id: id.clone(),
        now: now_millis(),
        done,
    };
    (op, wait)
}

async fn states(store: &SqliteStore, id: &MessageId) -> Vec<String> {
    store
        .get_message(id)
        .await
        .unwrap()
        .map(|m| {
            m.recipients
                .into_iter()
                .map(|r| r.state.as_str().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn setup() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    SqliteStore,
    NewMessage,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailroom.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let first = message(0);
    store.enqueue(first.clone()).await.unwrap();
    (dir, path, store, first)
}

#[tokio::test]
async fn new_messages_and_waiting_ops_are_all_written_and_answered() {
    let (_dir, path, store, first) = setup().await;
    let (b, c) = (message(1), message(2));
    let (jb, wb) = job(b.clone());
    let (jc, wc) = job(c.clone());
    let (op, wop) = cancel(&first.id);
    run_writer(&path, vec![jb, jc], vec![op]).await;
    wb.await.unwrap().unwrap();
    wc.await.unwrap().unwrap();
    assert_eq!(wop.await.unwrap().unwrap(), 1);
    assert_eq!(states(&store, &first.id).await, ["cancelled"]);
    for m in [&b, &c] {
        assert_eq!(states(&store, &m.id).await, ["queued"]);
        let body = store.load_body(&m.id).await.unwrap().unwrap();
        assert_eq!(body, m.body);
    }
    let counts: Vec<(String, i64)> = store.count_recipients_by_state().await.unwrap();
    let count = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    assert_eq!((count("queued"), count("cancelled")), (2, 1));
}

#[tokio::test]
async fn a_bad_message_in_the_round_fails_alone_and_the_ops_still_commit() {
    let (_dir, path, store, first) = setup().await;
    // The same id again: its INSERT fails, and with it the round's transaction.
    let (again, wagain) = job(first.clone());
    let c = message(2);
    let (jc, wc) = job(c.clone());
    let (op, wop) = cancel(&first.id);
    run_writer(&path, vec![again, jc], vec![op]).await;
    assert!(wagain.await.unwrap().is_err());
    wc.await.unwrap().unwrap();
    assert_eq!(wop.await.unwrap().unwrap(), 1);
    assert_eq!(states(&store, &first.id).await, ["cancelled"]);
    assert_eq!(states(&store, &c.id).await, ["queued"]);
}

#[tokio::test]
async fn a_failing_op_in_the_round_fails_alone_and_the_messages_still_commit() {
    let (_dir, path, store, first) = setup().await;
    sqlx::query(
        "CREATE TRIGGER refuse_cancel BEFORE UPDATE OF state ON recipients \
         WHEN NEW.state = 'cancelled' BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let (b, c) = (message(1), message(2));
    let (jb, wb) = job(b.clone());
    let (jc, wc) = job(c.clone());
    let (op, wop) = cancel(&first.id);
    run_writer(&path, vec![jb, jc], vec![op]).await;
    wb.await.unwrap().unwrap();
    wc.await.unwrap().unwrap();
    assert!(wop.await.unwrap().is_err());
    assert_eq!(states(&store, &first.id).await, ["queued"]);
    for m in [&b, &c] {
        assert_eq!(states(&store, &m.id).await, ["queued"]);
    }
}

#[tokio::test]
async fn outcomes_alone_wait_for_the_next_messages_and_commit_with_them() {
    let (_dir, path, store, first) = setup().await;
    let wait = Duration::from_secs(5);
    let (jobs_tx, ops_tx, writer) = spawn_writer(&path, wait).await;
    let (op, mut answered) = record(&first);
    ops_tx.send(op).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        answered.try_recv().is_err(),
        "outcomes alone wait for messages to share a commit with"
    );
    let b = message(1);
    let (jb, wb) = job(b.clone());
    jobs_tx.send(jb).await.unwrap();
    wb.await.unwrap().unwrap();
    let lost = answered.await.unwrap().unwrap();
    assert_eq!(lost, [(first.id.clone(), 0)]);
    assert_eq!(states(&store, &b.id).await, ["queued"]);
    drop((jobs_tx, ops_tx));
    writer.await.unwrap();
}

#[tokio::test]
async fn outcomes_alone_are_written_when_no_message_comes_and_other_ops_do_not_wait() {
    let (_dir, path, _store, first) = setup().await;
    let wait = Duration::from_millis(300);
    let (jobs_tx, ops_tx, writer) = spawn_writer(&path, wait).await;
    let started = std::time::Instant::now();
    let (op, answered) = record(&first);
    ops_tx.send(op).await.unwrap();
    answered.await.unwrap().unwrap();
    assert!(
        started.elapsed() >= wait,
        "written after the wait, not before"
    );
    // A cancel (an operator waits for it) is not held back.
    let started = std::time::Instant::now();
    let (op, answered) = cancel(&first.id);
    ops_tx.send(op).await.unwrap();
    assert_eq!(answered.await.unwrap().unwrap(), 1);
    assert!(started.elapsed() < wait, "a cancel is written at once");
    drop((jobs_tx, ops_tx));
    writer.await.unwrap();
}
