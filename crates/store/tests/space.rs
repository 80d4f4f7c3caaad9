//! What a queued message costs on disk, on both backends (conformance): bodies are
//! stored deflated when that pays and come back byte for byte; once every recipient
//! of a message is final its body is emptied, not before; and on SQLite the freed
//! pages go back to the file system.

#[macro_use]
mod common;

use common::{outcome, tenant};
use mailroom_model::{RecipientState, TenantId, now_millis};
use mailroom_store::{DynStore, Lease, NewMessage};

fn message(tenant: &TenantId, body: Vec<u8>, rcpts: usize) -> NewMessage {
    NewMessage {
        body,
        ..common::new_message(tenant, "app@acme.test", common::recipients(rcpts))
    }
}

fn text_body(lines: usize) -> Vec<u8> {
    let mut b = b"From: app@acme.test\r\nSubject: space\r\n\r\n".to_vec();
    for i in 0..lines {
        b.extend_from_slice(format!("line {i}: the quick brown fox jumps over it\r\n").as_bytes());
    }
    b
}

fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

conformance!(
    bodies_round_trip_whatever_their_codec,
    |store: DynStore| async move {
        let t = tenant(&store, "acme").await;
        for body in [
            text_body(200),
            noise(3000),
            b"Subject: tiny\r\n\r\nhi\r\n".to_vec(),
            Vec::new(),
        ] {
            let m = message(&t, body.clone(), 1);
            store.enqueue(m.clone()).await.expect("enqueue");
            let got = store.load_body(&m.id).await.expect("load").expect("found");
            assert_eq!(got, body);
            let view = store
                .get_message(&m.id)
                .await
                .expect("view")
                .expect("found");
            assert_eq!(view.size, body.len() as i64);
        }
    }
);

conformance!(
    a_body_is_emptied_once_every_recipient_is_final,
    |store: DynStore| async move {
        let t = tenant(&store, "acme").await;
        let body = text_body(100);
        let m = message(&t, body.clone(), 3);
        let other = message(&t, body.clone(), 1);
        store.enqueue(m.clone()).await.expect("enqueue");
        store.enqueue(other.clone()).await.expect("enqueue");
        let now = now_millis();
        let lease = Lease::new("node-a", now + 60_000);
        let claimed = store.claim_due(&lease, now, 10).await.expect("claim");
        assert_eq!(claimed.len(), 4);

        // Delivered and deferred: one recipient still waits, the body stays.
        let lost = store
            .record_outcomes(vec![
                outcome(&m, 0, RecipientState::Delivered, lease.token),
                outcome(&m, 1, RecipientState::Deferred, lease.token),
            ])
            .await
            .expect("record");
        assert!(lost.is_empty());
        let got = store.load_body(&m.id).await.expect("load").expect("found");
        assert_eq!(got, body);

        // The last open one bounces: still the deferred one waits.
        store
            .record_outcomes(vec![outcome(&m, 2, RecipientState::Bounced, lease.token)])
            .await
            .expect("record");
        assert_eq!(
            store.load_body(&m.id).await.expect("load").as_deref(),
            Some(body.as_slice())
        );

        // The deferred one comes due, is claimed again and delivered: nothing waits.
        let now = now_millis() + 120_000;
        let again = Lease::new("node-a", now + 60_000);
        // (`other` comes due again too: its lease ran out unrecorded.)
        let claimed = store.claim_due(&again, now, 10).await.expect("claim");
        let mine: Vec<_> = claimed.iter().filter(|r| r.message_id == m.id).collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].idx, 1);
        store
            .record_outcomes(vec![outcome(&m, 1, RecipientState::Delivered, again.token)])
            .await
            .expect("record");
        assert_eq!(
            store.load_body(&m.id).await.expect("load").as_deref(),
            Some(&b""[..])
        );
        // Its record stays whole for the API; another message keeps its body.
        let view = store
            .get_message(&m.id)
            .await
            .expect("view")
            .expect("found");
        assert_eq!(view.size, body.len() as i64);
        assert_eq!(view.recipients.len(), 3);
        assert_eq!(
            store.load_body(&other.id).await.expect("load").as_deref(),
            Some(body.as_slice())
        );
    }
);

/// SQLite only: the file shrinks once delivered messages' bodies are emptied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_shrinks_after_the_queue_drains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("space.db");
    let store = mailroom_store::sqlite::SqliteStore::open(&path)
        .await
        .expect("open");
    let auto_vacuum: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(store.pool())
        .await
        .expect("pragma");
    assert_eq!(auto_vacuum, 2, "incremental auto-vacuum on a new file");
    let store: DynStore = std::sync::Arc::new(store);
    let t = tenant(&store, "acme").await;
    let mut all = Vec::new();
    for _ in 0..1500 {
        // Incompressible, as large as a signed 1 KiB message.
        let m = message(&t, noise(2100), 1);
        store.enqueue(m.clone()).await.expect("enqueue");
        all.push(m);
    }
    let sqlite = mailroom_store::sqlite::SqliteStore::open(&path)
        .await
        .expect("second handle");
    let checkpoint = || async {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(sqlite.pool())
            .await
            .expect("checkpoint");
        std::fs::metadata(&path).expect("stat").len()
    };
    let full = checkpoint().await;
    assert!(full > 1500 * 2100, "{full}");
    let now = now_millis();
    let lease = Lease::new("node-a", now + 60_000);
    let claimed = store.claim_due(&lease, now, 2000).await.expect("claim");
    assert_eq!(claimed.len(), all.len());
    let outcomes = all
        .iter()
        .map(|m| outcome(m, 0, RecipientState::Delivered, lease.token))
        .collect();
    store.record_outcomes(outcomes).await.expect("record");
    let freed = sqlite.reclaim_space().await.expect("reclaim");
    assert!(freed > 500, "pages freed: {freed}");
    let after = checkpoint().await;
    assert!(after < full / 2, "file {full} → {after} bytes");
}
