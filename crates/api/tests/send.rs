//! `POST /v1/messages`, idempotency, the suppression list, quotas, the sandbox and
//! suspension, through the real router on a real store.

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, OPERATOR};
use mailroom_model::{MessageId, RecipientState};
use mailroom_store::prelude::*;
use serde_json::{Value, json};

fn simple(to: Value) -> Value {
    json!({
        "from": {"address": "app@acme.test", "name": "Acme"},
        "to": to,
        "subject": "Your receipt",
        "text": "Thanks!",
        "html": "<p>Thanks!</p>",
        "tags": ["receipt"],
        "metadata": {"order": "A-17"}
    })
}

async fn body_of(api: &Api, id: &str) -> String {
    let id = MessageId::parse(id).expect("message id");
    String::from_utf8(api.store.load_body(&id).await.unwrap().unwrap()).unwrap()
}

#[tokio::test]
async fn send_queues_each_recipient_and_stores_a_complete_message() {
    let api = Api::new().await;
    let (_, key) = api.tenant("acme", "acme.test").await;
    let mut req = simple(json!(["one@example.net", {"address": "two@example.org", "name": "Two"}]));
    req["bcc"] = json!("audit@example.com");
    req["attachments"] = json!([{"filename": "r.pdf", "content_type": "application/pdf", "content": "JVBERi0xLjQK"}]);
    let r = api.post("/v1/messages", &key, req).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let id = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.json["recipients"],
        json!([
            {"address": "one@example.net", "status": "queued"},
            {"address": "two@example.org", "status": "queued"},
            {"address": "audit@example.com", "status": "queued"},
        ])
    );
    let body = body_of(&api, &id).await;
    assert!(body.contains("Subject: Your receipt\r\n"), "{body}");
    assert!(body.contains("From: \"Acme\" <app@acme.test>"), "{body}");
    assert!(
        !body.contains("audit@example.com"),
        "Bcc must not be in the message"
    );
    assert!(body.contains("r.pdf"));
    // Signed last: the DKIM signatures come before the trace header.
    assert!(body.starts_with("DKIM-Signature: "), "{body}");
    assert!(body.contains("\r\nReceived: "), "{body}");
    let shown = api.get(&format!("/v1/messages/{id}"), &key).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.json["source"], "api");
    let accepted = &shown.json["recipients"][0]["events"][0];
    assert_eq!(accepted["type"], "accepted");
    assert_eq!(accepted["detail"]["tags"], json!(["receipt"]));
    assert_eq!(accepted["detail"]["metadata"]["order"], "A-17");
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let api = Api::new().await;
    let (_, key) = api.tenant("acme", "acme.test").await;
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"to": ["a@example.net"], "subject": "s", "text": "t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "from",
        ),
        (
            json!({"from": "app@acme.test", "to": ["a@example.net", "nope"], "subject": "s", "text": "t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "to[1]",
        ),
        (
            json!({"from": "app@acme.test", "to": "a@example.net", "subject": "s\nBcc: x@y.z", "text": "t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "subject",
        ),
        (
            json!({"from": "app@acme.test", "to": "a@example.net", "subject": "s", "text": "t", "headers": {"X-A": "1\r\nBcc: x@y.z"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "headers.X-A",
        ),
        (
            json!({"from": "app@acme.test", "to": "a@example.net", "subject": "s", "text": "t", "headers": {"DKIM-Signature": "x"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "headers.DKIM-Signature",
        ),
        (
            json!({"from": "app@acme.test", "to": "a@example.net", "subject": "s", "text": "t", "attachments": [{"filename": "a", "content": "***"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "attachments[0].content",
        ),
        (
            json!({"from": "app@acme.test", "to": "a@example.net", "subject": 5, "text": "t"}),
            StatusCode::BAD_REQUEST,
            "subject",
        ),
        (
            json!({"from": "app@acme.test", "to": "a@example.net", "subject": "s", "text": "t", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            json!({"from": "app@other.test", "to": "a@example.net", "subject": "s", "text": "t"}),
            StatusCode::FORBIDDEN,
            "from",
        ),
        (
            json!({"raw": "RnJvbTogYXBwQGFjbWUudGVzdA0KDQpoaQ0K", "envelope": {"from": "app@other.test", "to": ["a@example.net"]}}),
            StatusCode::FORBIDDEN,
            "envelope.from",
        ),
        (
            json!({"raw": "RnJvbTogeEBvdGhlci50ZXN0DQoNCmhpDQo=", "envelope": {"from": "app@acme.test", "to": ["a@example.net"]}}),
            StatusCode::FORBIDDEN,
            "raw",
        ),
    ];
    for (body, status, field) in cases {
        let r = api.post("/v1/messages", &key, body.clone()).await;
        assert_eq!(r.status, status, "{body} → {}", r.json);
        if !field.is_empty() {
            assert_eq!(r.json["field"], field, "{body} → {}", r.json);
        }
    }
    let many: Vec<String> = (0..51).map(|i| format!("r{i}@example.net")).collect();
    let r = api.post("/v1/messages", &key, simple(json!(many))).await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("to"));
    // The operator token does not send.
    let r = api
        .post("/v1/messages", OPERATOR, simple(json!("a@example.net")))
        .await;
    r.assert_problem(StatusCode::FORBIDDEN, None);
    // Nothing was stored by any of these.
    let counts = api.store.count_recipients_by_state().await.unwrap();
    assert!(counts.is_empty(), "{counts:?}");
}

#[tokio::test]
async fn raw_message_with_envelope_is_accepted() {
    let api = Api::new().await;
    let (_, key) = api.tenant("acme", "acme.test").await;
    // LF line endings in the raw message are normalised to CRLF.
    let raw = "From: app@acme.test\nTo: x@example.net\nSubject: raw\n\nbody\n";
    use base64::Engine;
    let r = api
        .post(
            "/v1/messages",
            &key,
            json!({"raw": base64::engine::general_purpose::STANDARD.encode(raw), "envelope": {"from": "bounce@acme.test", "to": ["x@example.net"]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let body = body_of(&api, r.json["id"].as_str().unwrap()).await;
    assert!(body.contains("Subject: raw\r\n\r\nbody\r\n"), "{body}");
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response() {
    let api = Api::new().await;
    let (_, key) = api.tenant("acme", "acme.test").await;
    let body = simple(json!("one@example.net"));
    let send = |b: Value, k: &'static str| {
        let api = &api;
        let key = key.clone();
        async move {
            api.call(
                Method::POST,
                "/v1/messages",
                Some(&key),
                Some(b),
                &[("Idempotency-Key", k)],
            )
            .await
        }
    };
    let first = send(body.clone(), "order-17").await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.json);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = send(body.clone(), "order-17").await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.json, first.json);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let counts = api.store.count_recipients_by_state().await.unwrap();
    assert_eq!(counts, [("queued".to_string(), 1)], "one message only");
    let other = send(simple(json!("two@example.net")), "order-17").await;
    other.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("Idempotency-Key"));
    let bad = send(body.clone(), "has space").await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("Idempotency-Key"));
    // Another tenant's identical key is its own.
    let (_, key2) = api.tenant("beta", "beta.test").await;
    let mut b2 = body.clone();
    b2["from"] = json!("app@beta.test");
    let r = api
        .call(
            Method::POST,
            "/v1/messages",
            Some(&key2),
            Some(b2),
            &[("Idempotency-Key", "order-17")],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    assert_ne!(r.json["id"], first.json["id"]);
}

#[tokio::test]
async fn suppressed_recipients_are_reported_and_never_queued() {
    let api = Api::new().await;
    let (tenant, key) = api.tenant("acme", "acme.test").await;
    let r = api
        .post(
            "/v1/suppressions",
            &key,
            json!({"address": "Gone@Example.NET", "note": "asked to stop"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["address"], "gone@example.net");
    assert_eq!(r.json["reason"], "manual");
    let again = api
        .post(
            "/v1/suppressions",
            &key,
            json!({"address": "gone@example.net"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let r = api
        .post(
            "/v1/messages",
            &key,
            simple(json!(["GONE@example.net", "here@example.net"])),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    assert_eq!(r.json["recipients"][0]["status"], "suppressed");
    assert_eq!(r.json["recipients"][1]["status"], "queued");
    let id = MessageId::parse(r.json["id"].as_str().unwrap()).unwrap();
    let m = api.store.get_message(&id).await.unwrap().unwrap();
    assert_eq!(m.recipients[0].state, RecipientState::Suppressed);
    assert_eq!(m.recipients[1].state, RecipientState::Queued);
    // Listing, showing, cross-tenant isolation, removal.
    let list = api.get("/v1/suppressions", &key).await;
    assert_eq!(list.json["suppressions"][0]["address"], "gone@example.net");
    let shown = api.get("/v1/suppressions/gone@EXAMPLE.net", &key).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.json);
    let (_, other) = api.tenant("beta", "beta.test").await;
    let foreign = api.get("/v1/suppressions/gone@example.net", &other).await;
    foreign.assert_problem(StatusCode::NOT_FOUND, None);
    let foreign = api
        .get(&format!("/v1/suppressions?tenant={tenant}"), &other)
        .await;
    foreign.assert_problem(StatusCode::NOT_FOUND, None);
    assert_eq!(
        api.get("/v1/suppressions", &other).await.json["suppressions"],
        json!([])
    );
    let by_operator = api
        .get(&format!("/v1/suppressions?tenant={tenant}"), OPERATOR)
        .await;
    assert_eq!(
        by_operator.json["suppressions"][0]["address"],
        "gone@example.net"
    );
    let bad = api
        .post(
            "/v1/suppressions",
            &key,
            json!({"address": "x@y.z", "reason": "whim"}),
        )
        .await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("reason"));
    let bad = api
        .post(
            "/v1/suppressions",
            &key,
            json!({"address": "not-an-address"}),
        )
        .await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("address"));
    let r = api.delete("/v1/suppressions/Gone@example.net", &key).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.delete("/v1/suppressions/gone@example.net", &key).await;
    r.assert_problem(StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn quotas_answer_429_with_retry_after() {
    let api = Api::new().await;
    let (tenant, key) = api.tenant("acme", "acme.test").await;
    // A tenant cannot raise its own limits.
    let r = api
        .patch(
            &format!("/v1/tenants/{tenant}"),
            &key,
            json!({"messages_per_day": 1000}),
        )
        .await;
    r.assert_problem(StatusCode::FORBIDDEN, None);
    let r = api
        .patch(
            &format!("/v1/tenants/{tenant}"),
            OPERATOR,
            json!({"messages_per_day": 0}),
        )
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("messages_per_day"));
    let r = api
        .patch(
            &format!("/v1/tenants/{tenant}"),
            OPERATOR,
            json!({"messages_per_day": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["limits"]["messages_per_day"], 2);
    for _ in 0..2 {
        let r = api
            .post("/v1/messages", &key, simple(json!("a@example.net")))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    }
    let r = api
        .post("/v1/messages", &key, simple(json!("a@example.net")))
        .await;
    r.assert_problem(StatusCode::TOO_MANY_REQUESTS, None);
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&wait), "{wait}");
    // Back to the default (unlimited), then a per-second limit.
    let r = api
        .patch(
            &format!("/v1/tenants/{tenant}"),
            OPERATOR,
            json!({"messages_per_day": null, "messages_per_second": 1}),
        )
        .await;
    assert_eq!(
        r.json["limits"]["messages_per_day"],
        Value::Null,
        "{}",
        r.json
    );
    let first = api
        .post("/v1/messages", &key, simple(json!("a@example.net")))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.json);
    let second = api
        .post("/v1/messages", &key, simple(json!("a@example.net")))
        .await;
    second.assert_problem(StatusCode::TOO_MANY_REQUESTS, None);
    assert_eq!(second.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn message_size_and_recipient_limits_per_tenant() {
    let api = Api::new().await;
    let (tenant, key) = api.tenant("acme", "acme.test").await;
    api.patch(
        &format!("/v1/tenants/{tenant}"),
        OPERATOR,
        json!({"max_recipients": 2, "max_message_size": 2000}),
    )
    .await;
    let r = api
        .post(
            "/v1/messages",
            &key,
            simple(json!(["a@example.net", "b@example.net", "c@example.net"])),
        )
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("to"));
    let mut big = simple(json!("a@example.net"));
    big["text"] = json!("x".repeat(3000));
    let r = api.post("/v1/messages", &key, big).await;
    r.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, None);
}

#[tokio::test]
async fn sandbox_and_suspension() {
    let api = Api::new().await;
    let (tenant, key) = api.tenant("acme", "acme.test").await;
    let r = api
        .patch(
            &format!("/v1/tenants/{tenant}"),
            OPERATOR,
            json!({"sandbox": true, "sandbox_recipients": ["Friend@example.net"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = api
        .post(
            "/v1/messages",
            &key,
            simple(json!(["friend@example.net", "stranger@example.net"])),
        )
        .await;
    r.assert_problem(StatusCode::FORBIDDEN, Some("to[1]"));
    let r = api
        .post(
            "/v1/messages",
            &key,
            simple(json!(["friend@example.net", "me@acme.test"])),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let r = api
        .patch(
            &format!("/v1/tenants/{tenant}"),
            OPERATOR,
            json!({"status": "suspended"}),
        )
        .await;
    assert_eq!(r.json["status"], "suspended");
    let r = api
        .post("/v1/messages", &key, simple(json!("friend@example.net")))
        .await;
    r.assert_problem(StatusCode::FORBIDDEN, None);
    assert!(r.json["detail"].as_str().unwrap().contains("suspended"));
    let r = api
        .patch(
            &format!("/v1/tenants/{tenant}"),
            OPERATOR,
            json!({"status": "dormant"}),
        )
        .await;
    r.assert_problem(StatusCode::BAD_REQUEST, Some("status"));
    let r = api
        .patch(
            &format!("/v1/tenants/{tenant}"),
            &key,
            json!({"status": "active"}),
        )
        .await;
    r.assert_problem(StatusCode::FORBIDDEN, None);
}

#[tokio::test]
async fn metrics_count_submissions_and_show_the_queue() {
    let api = Api::new().await;
    let (tenant, key) = api.tenant("metered", "metered.test").await;
    let mut body = simple(json!(["one@example.net", "two@example.net"]));
    body["from"] = json!("app@metered.test");
    let r = api.post("/v1/messages", &key, body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let m = api.call(Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(m.status, StatusCode::OK);
    let text = m.json.as_str().expect("text").to_string();
    assert!(
        text.contains(&format!(
            "mailroom_messages_accepted_total{{tenant=\"{tenant}\",source=\"api\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "mailroom_recipients_accepted_total{{tenant=\"{tenant}\"}} 2"
        )),
        "{text}"
    );
    assert!(
        text.contains("mailroom_queue_recipients{state=\"queued\"}"),
        "{text}"
    );
    assert!(
        text.contains("mailroom_queue_recipients{state=\"suppressed\"} 0"),
        "{text}"
    );
    let ready = api.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(ready.json["status"], "ready");
}
