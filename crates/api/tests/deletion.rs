//! Tenant deletion and GDPR erasure through the API (the in-memory router on a real
//! SQLite store; the store's behaviour on both backends is in
//! crates/store/tests/deletion.rs): who may call them, precise problems for bad input,
//! the reply's counts, the event, a deleted tenant's key refused at once here and on a
//! second node within its directory refresh, and an erased address gone from every
//! answer the API gives.

mod common;

use axum::http::StatusCode;
use common::{Api, OPERATOR};
use mailroom_api::{RefreshIntervals, spawn_refreshers};
use mailroom_policy::AuthVerdict;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn message(from: &str, to: &[&str]) -> Value {
    json!({"from": from, "to": to, "subject": format!("for {}", to[0]), "text": format!("Hello {}", to[0])})
}

async fn send(api: &Api, key: &str, from: &str, to: &[&str]) -> String {
    let r = api.post("/v1/messages", key, message(from, to)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    r.json["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn deleting_a_tenant_is_for_the_operator_and_says_what_went() {
    let api = Api::new().await;
    let (id, key) = api.tenant("acme", "acme.test").await;
    let (other_id, other_key) = api.tenant("other", "other.test").await;
    let r = api
        .post(
            &format!("/v1/tenants/{id}/smtp-credentials"),
            OPERATOR,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let user = r.json["username"].as_str().unwrap().to_string();
    let password = r.json["password"].as_str().unwrap().to_string();
    let r = api
        .post(
            "/v1/suppressions",
            &key,
            json!({"address": "no@example.net"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.json);
    let msg = send(
        &api,
        &key,
        "app@acme.test",
        &["a@example.net", "b@example.net"],
    )
    .await;
    let uri = format!("/v1/tenants/{id}");

    // Not for a tenant, not even itself; bad input named.
    api.delete(&uri, &key)
        .await
        .assert_problem(StatusCode::FORBIDDEN, None);
    api.delete(&format!("{uri}?purge=yes"), OPERATOR)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("purge"));
    api.delete(&format!("{uri}?force=true"), OPERATOR)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("force"));
    api.delete("/v1/tenants/01JZZZZZZZZZZZZZZZZZZZZZZZ", OPERATOR)
        .await
        .assert_problem(StatusCode::NOT_FOUND, None);
    api.delete("/v1/tenants/nonsense", OPERATOR)
        .await
        .assert_problem(StatusCode::NOT_FOUND, None);

    let r = api.delete(&uri, OPERATOR).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["deleted"], true);
    assert_eq!(r.json["purged"], false);
    assert_eq!(r.json["name"], "acme");
    let removed = &r.json["removed"];
    assert_eq!(removed["api_keys"], 1, "{}", r.json);
    assert_eq!(removed["smtp_credentials"], 1);
    assert_eq!(removed["domains"], 1);
    assert!(removed["dkim_keys"].as_u64().unwrap() >= 1);
    assert_eq!(removed["suppressions"], 1);
    assert_eq!(removed["cancelled_recipients"], 2);
    assert_eq!(r.json["queued_mail"]["cancelled"], 2);
    let event_id = r.json["event_id"].as_str().unwrap().to_string();

    // At once on this node: its key is 401, its SMTP credential refused.
    api.get(&uri, &key)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, None);
    let r = api
        .post(
            "/v1/messages",
            &key,
            message("app@acme.test", &["x@example.net"]),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
    let ip = "192.0.2.1".parse().unwrap();
    assert_eq!(
        api.policy.authenticate(ip, &user, &password).await,
        AuthVerdict::Rejected
    );
    api.get(&uri, OPERATOR)
        .await
        .assert_problem(StatusCode::NOT_FOUND, None);
    let r = api.get("/v1/domains/acme.test", OPERATOR).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);

    // Its message stays (for the operator), cancelled; the event is the operator's.
    let r = api.get(&format!("/v1/messages/{msg}"), OPERATOR).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let text = r.json.to_string();
    assert!(text.matches("\"cancelled\"").count() >= 2, "{text}");
    let r = api.get("/v1/events?type=tenant.deleted", OPERATOR).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let events = r.json["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{}", r.json);
    assert_eq!(events[0]["id"], event_id.as_str());
    assert_eq!(events[0]["tenant_id"], id.as_str());
    assert_eq!(events[0]["detail"]["removed"]["api_keys"], 1);
    let r = api.get("/v1/events?type=tenant.deleted", &other_key).await;
    assert_eq!(r.json["events"].as_array().unwrap().len(), 0, "{}", r.json);

    // The other tenant carries on.
    send(&api, &other_key, "app@other.test", &["a@example.net"]).await;

    // Deleting again: 404; purging what it left: its message and events go now.
    api.delete(&uri, OPERATOR)
        .await
        .assert_problem(StatusCode::NOT_FOUND, None);
    let r = api.delete(&format!("{uri}?purge=true"), OPERATOR).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["purged"], true);
    assert_eq!(r.json["removed"]["messages"], 1, "{}", r.json);
    let r = api.get(&format!("/v1/messages/{msg}"), OPERATOR).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
    api.delete(&format!("{uri}?purge=true"), OPERATOR)
        .await
        .assert_problem(StatusCode::NOT_FOUND, None);
    assert!(
        api.get(&format!("/v1/tenants/{other_id}"), OPERATOR)
            .await
            .status
            .is_success()
    );
}

#[tokio::test]
async fn a_deleted_tenants_key_is_refused_on_another_node_within_two_seconds() {
    let a = Api::new().await;
    let b = a.another_node(None).await;
    let shutdown = CancellationToken::new();
    for node in [&a, &b] {
        spawn_refreshers(&node.state, RefreshIntervals::default(), shutdown.clone());
    }
    let (id, key) = a.tenant("acme", "acme.test").await;
    let uri = format!("/v1/tenants/{id}");
    let start = Instant::now();
    while b.get(&uri, &key).await.status != StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "B never saw the tenant"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = a.delete(&uri, OPERATOR).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let start = Instant::now();
    loop {
        let status = b.get(&uri, &key).await.status;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        // Until B reloads, the key still authenticates there; the tenant is gone.
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "{status}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "B still accepts the deleted tenant's key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "deleted tenant's key refused by the other node after {} ms",
        start.elapsed().as_millis()
    );
    shutdown.cancel();
}

#[tokio::test]
async fn erasure_redacts_an_address_in_everything_the_api_shows() {
    let api = Api::new().await;
    let (a_id, a_key) = api.tenant("a", "a.test").await;
    let (b_id, b_key) = api.tenant("b", "b.test").await;
    let alice = "Alice@Example.net";
    let in_a = send(&api, &a_key, "app@a.test", &[alice, "bob@example.net"]).await;
    let in_b = send(&api, &b_key, "app@b.test", &[alice]).await;
    for key in [&a_key, &b_key] {
        let r = api
            .post("/v1/suppressions", key, json!({"address": alice}))
            .await;
        assert!(r.status.is_success(), "{}", r.json);
    }

    // Bad input, named; a tenant cannot reach into another.
    api.post("/v1/erasure", &a_key, json!({"address": "not an address"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("address"));
    api.post("/v1/erasure", &a_key, json!({}))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, Some("address"));
    api.post(
        "/v1/erasure",
        &a_key,
        json!({"address": alice, "tenant": b_id}),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, None);
    api.post(
        "/v1/erasure",
        OPERATOR,
        json!({"address": alice, "tenant": "x"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("tenant"));

    // Tenant a erases it in its own data.
    let r = api
        .post("/v1/erasure", &a_key, json!({"address": alice}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["tenant_id"], a_id.as_str());
    assert_eq!(r.json["counts"]["recipients"], 1, "{}", r.json);
    assert_eq!(r.json["counts"]["cancelled"], 1, "{}", r.json);
    assert_eq!(r.json["counts"]["suppressions"], 1, "{}", r.json);
    assert!(
        r.json["counts"]["bodies"].as_u64().unwrap() >= 1,
        "{}",
        r.json
    );
    let sha = r.json["address_sha256"].as_str().unwrap().to_string();
    let redacted = r.json["redacted"].as_str().unwrap().to_string();
    assert!(redacted.ends_with("@erased.invalid"));
    let r = api.get(&format!("/v1/messages/{in_a}"), &a_key).await;
    let text = r.json.to_string().to_lowercase();
    assert!(!text.contains("alice@example.net"), "{text}");
    assert!(
        text.contains(&redacted) && text.contains("bob@example.net"),
        "{text}"
    );
    let r = api.get("/v1/events?limit=1000", &a_key).await;
    let text = r.json.to_string().to_lowercase();
    assert!(!text.contains("alice@example.net"), "{text}");
    assert!(
        text.contains("address.erased") && text.contains(&sha),
        "{text}"
    );
    // Tenant b's copy is untouched.
    let r = api.get(&format!("/v1/messages/{in_b}"), &b_key).await;
    assert!(r.json.to_string().contains(alice), "{}", r.json);

    // The operator erases it everywhere; a second time there is nothing left.
    let r = api
        .post("/v1/erasure", OPERATOR, json!({"address": alice}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["tenant_id"], Value::Null);
    assert_eq!(r.json["counts"]["recipients"], 1, "{}", r.json);
    let r = api
        .post("/v1/erasure", OPERATOR, json!({"address": alice}))
        .await;
    assert_eq!(r.json["total"], 0, "{}", r.json);
    for (uri, token) in [
        (format!("/v1/messages/{in_b}"), &b_key),
        ("/v1/events?limit=1000".to_string(), &b_key),
        ("/v1/events?limit=1000".to_string(), &OPERATOR.to_string()),
        (
            format!("/v1/suppressions?tenant={b_id}"),
            &OPERATOR.to_string(),
        ),
        ("/v1/messages?limit=100".to_string(), &OPERATOR.to_string()),
    ] {
        let r = api.get(&uri, token).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.json);
        let text = r.json.to_string().to_lowercase();
        assert!(!text.contains("alice@example.net"), "{uri}: {text}");
    }
}
