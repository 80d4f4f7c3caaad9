//! The dispatcher against real HTTP receivers on 127.0.0.1:0: a receiver that fails
//! the first attempt (500) gets the event again after the retry delay, correctly
//! signed; a receiver that never answers does not delay it; one that always fails
//! ends `failed`.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use mailroom_events::{Dispatcher, DispatcherConfig, RetryPolicy, WebhookClient, signature};
use mailroom_model::{TenantId, WebhookId, now_millis};
use mailroom_secrets::{Keyring, webhook_context};
use mailroom_store::prelude::*;
use mailroom_store::sqlite::SqliteStore;
use mailroom_store::{DeliveryState, DynStore, NewMessage, NewWebhook};
use mailroom_testkit::{messages, stores};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Seen {
    /// (Mailroom-Event-Id, Mailroom-Signature, body) per request.
    requests: Vec<(String, String, Vec<u8>)>,
}

/// Serves `POST /` answering with `answer(n)` for the n-th request (0-based);
/// `None` means never answer.
async fn receiver(answer: fn(usize) -> Option<StatusCode>) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let app = Router::new().route(
        "/",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                let n = {
                    let mut s = s.lock().unwrap();
                    let h = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    s.requests.push((
                        h("mailroom-event-id"),
                        h("mailroom-signature"),
                        body.to_vec(),
                    ));
                    s.requests.len() - 1
                };
                match answer(n) {
                    Some(status) => status,
                    None => std::future::pending().await,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), seen)
}

async fn add_webhook(
    store: &SqliteStore,
    keyring: &Keyring,
    tenant: &TenantId,
    url: &str,
) -> (WebhookId, String) {
    let secret = signature::new_secret();
    let id = WebhookId::generate();
    let sealed = keyring
        .seal_str(&webhook_context(id.as_str()), &secret)
        .unwrap();
    let w = store
        .create_webhook(NewWebhook {
            id,
            tenant_id: tenant.clone(),
            url: url.into(),
            event_types: None,
            secret: sealed,
        })
        .await
        .unwrap();
    (w.id, secret)
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !ok().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn retries_sign_and_isolate_slow_endpoints() {
    let (store, _dir) = stores::sqlite().await;
    let keyring = Arc::new(Keyring::ephemeral());
    let dyn_store: DynStore = store.clone();
    let tenant = stores::tenant(&dyn_store, "acme").await;
    let (flaky_url, flaky) = receiver(|n| {
        Some(if n == 0 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        })
    })
    .await;
    let (hang_url, hang) = receiver(|_| None).await;
    let (dead_url, _dead) = receiver(|_| Some(StatusCode::SERVICE_UNAVAILABLE)).await;
    let (flaky_id, secret) = add_webhook(&store, &keyring, &tenant, &flaky_url).await;
    let (hang_id, _) = add_webhook(&store, &keyring, &tenant, &hang_url).await;
    let (dead_id, _) = add_webhook(&store, &keyring, &tenant, &dead_url).await;

    let shutdown = CancellationToken::new();
    let cfg = DispatcherConfig {
        retry: RetryPolicy {
            schedule: vec![Duration::from_millis(200)],
            give_up_after: Duration::from_millis(1500),
        },
        timeout: Duration::from_secs(20),
        concurrency_per_webhook: 2,
        poll_interval: Duration::from_millis(50),
        fan_out_batch: 100,
    };
    let client = WebhookClient::new(cfg.timeout, true).unwrap();
    let dispatcher = tokio::spawn(
        Dispatcher::new(dyn_store, client, cfg, keyring.clone(), shutdown.clone()).run(),
    );

    let m = NewMessage {
        rfc_message_id: Some("<m1@acme.test>".into()),
        source: "api",
        accepted_detail: mailroom_model::AcceptedDetail {
            source: "api".into(),
            ..Default::default()
        }
        .into(),
        ..messages::new_message(
            &tenant,
            "s@acme.test",
            vec![messages::recipient("r@example.net")],
        )
    };
    let message = m.id.clone();
    store.enqueue(m).await.unwrap();

    // Delivered on the second attempt, long before the hanging receiver's timeout.
    let start = Instant::now();
    wait_for(
        "the flaky webhook's delivery",
        Duration::from_secs(10),
        async || {
            store
                .list_deliveries(&flaky_id, Some(DeliveryState::Delivered), 10)
                .await
                .unwrap()
                .len()
                == 1
        },
    )
    .await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        hang.lock().unwrap().requests.len(),
        1,
        "the hanging one was tried"
    );
    let pending = store.list_deliveries(&hang_id, None, 10).await.unwrap();
    assert_eq!(
        pending[0].state,
        DeliveryState::Pending,
        "and is still waiting"
    );

    let requests = flaky.lock().unwrap().requests.clone();
    assert_eq!(requests.len(), 2, "one 500, one 200");
    for (event_id, sig, body) in &requests {
        let now = now_millis() / 1000;
        assert_eq!(
            signature::verify(&secret, sig, body, now, 300),
            Ok(()),
            "{sig}"
        );
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        let e = &json["events"][0];
        assert_eq!(
            e["id"],
            event_id.as_str(),
            "Mailroom-Event-Id is the event id"
        );
        assert_eq!(e["type"], "accepted");
        assert_eq!(e["message_id"], message.as_str());
        assert_eq!(e["rfc_message_id"], "<m1@acme.test>");
        assert_eq!(e["recipient"], "r@example.net");
    }
    assert_eq!(
        requests[0].0, requests[1].0,
        "a retry carries the same event id"
    );
    let row = &store.list_deliveries(&flaky_id, None, 10).await.unwrap()[0];
    assert_eq!(row.attempts, 2);
    assert_eq!(row.last_status, Some(200));

    // Always 503: given up after the retry window.
    wait_for(
        "the dead webhook to fail",
        Duration::from_secs(10),
        async || {
            store
                .list_deliveries(&dead_id, Some(DeliveryState::Failed), 10)
                .await
                .unwrap()
                .len()
                == 1
        },
    )
    .await;
    let row = &store.list_deliveries(&dead_id, None, 10).await.unwrap()[0];
    assert_eq!(row.last_status, Some(503));
    assert!(row.attempts >= 3, "{row:?}");

    // The hanging attempt would hold shutdown for its timeout; not needed here.
    shutdown.cancel();
    dispatcher.abort();
}
