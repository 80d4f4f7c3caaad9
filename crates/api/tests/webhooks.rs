//! The event stream and webhook endpoints, in memory on a real SQLite store: tenant
//! isolation (another tenant's webhook is 404), problems naming the bad field or
//! parameter, cursor paging, and the SSRF refusals for webhook URLs.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use mailroom_model::{MessageId, TenantId};
use mailroom_store::NewMessage;
use mailroom_store::prelude::*;
use mailroom_store::sqlite::SqliteStore;
use mailroom_testkit::messages;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

mod common;

use common::OPERATOR;

struct Api {
    app: Router,
    store: Arc<SqliteStore>,
    _inner: common::Api,
}

impl Api {
    async fn new(allow_private: bool) -> Self {
        let inner = common::Api::with_webhooks(allow_private).await;
        Self {
            app: inner.app.clone(),
            store: inner.store.clone(),
            _inner: inner,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
            .expect("request");
        let res = self.app.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("body");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        (status, json)
    }

    async fn tenant(&self, name: &str) -> (String, String) {
        let (s, j) = self
            .call(
                Method::POST,
                "/v1/tenants",
                OPERATOR,
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{j}");
        (
            j["id"].as_str().unwrap().into(),
            j["api_key"].as_str().unwrap().into(),
        )
    }

    /// Stores a message with `n` recipients (one `accepted` event each).
    async fn message(&self, tenant: &str, n: usize) -> MessageId {
        let id = MessageId::generate();
        self.store
            .enqueue(NewMessage {
                id: id.clone(),
                rfc_message_id: Some(format!("<{id}@acme.test>")),
                source: "api",
                accepted_detail: mailroom_model::AcceptedDetail {
                    source: "api".into(),
                    tags: Some(json!(["t1"])),
                    ..Default::default()
                }
                .into(),
                ..messages::new_message(
                    &TenantId::parse(tenant).unwrap(),
                    "s@acme.test",
                    messages::recipients(n),
                )
            })
            .await
            .expect("enqueue");
        id
    }
}

fn assert_field(r: &(StatusCode, Value), status: StatusCode, field: &str) {
    assert_eq!(r.0, status, "{}", r.1);
    assert_eq!(r.1["field"], field, "{}", r.1);
}

#[tokio::test]
async fn events_are_tenant_scoped_and_paged_by_cursor() {
    let api = Api::new(true).await;
    let (a, key_a) = api.tenant("a").await;
    let (b, key_b) = api.tenant("b").await;
    let ma = api.message(&a, 3).await;
    api.message(&b, 2).await;

    let (s, j) = api.call(Method::GET, "/v1/events", &key_a, None).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    let events = j["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    for e in events {
        assert_eq!(e["tenant_id"], a.as_str());
        assert_eq!(e["type"], "accepted");
        assert_eq!(e["message_id"], ma.as_str());
        assert_eq!(e["rfc_message_id"], format!("<{ma}@acme.test>"));
        assert_eq!(e["detail"]["tags"][0], "t1");
        assert!(e["id"].is_string() && e["at"].is_i64() && e["recipient"].is_string());
    }
    // A tenant cannot widen its view with ?tenant=.
    let r = api
        .call(Method::GET, &format!("/v1/events?tenant={b}"), &key_a, None)
        .await;
    assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.1);
    let (_, j) = api.call(Method::GET, "/v1/events", &key_b, None).await;
    assert_eq!(j["events"].as_array().unwrap().len(), 2);
    let (_, j) = api.call(Method::GET, "/v1/events", OPERATOR, None).await;
    assert_eq!(j["events"].as_array().unwrap().len(), 5);
    let (_, j) = api
        .call(
            Method::GET,
            &format!("/v1/events?tenant={b}"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(j["events"].as_array().unwrap().len(), 2);

    // Paging: limit 2, then the rest, then nothing; no event twice.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..4 {
        let (s, j) = api
            .call(
                Method::GET,
                &format!("/v1/events?limit=2&after={cursor}"),
                OPERATOR,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        for e in j["events"].as_array().unwrap() {
            seen.push(e["id"].as_str().unwrap().to_string());
        }
        cursor = j["next_cursor"].as_str().unwrap().to_string();
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(seen.len(), 5);
    assert_eq!(unique.len(), 5);

    // Filters.
    let uri =
        format!("/v1/events?recipient=r1@example.net&message_id={ma}&type=accepted,delivered");
    let (_, j) = api.call(Method::GET, &uri, &key_a, None).await;
    assert_eq!(j["events"].as_array().unwrap().len(), 1);
    let (_, j) = api
        .call(Method::GET, "/v1/events?type=delivered", &key_a, None)
        .await;
    assert_eq!(j["events"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn bad_event_parameters_name_the_parameter() {
    let api = Api::new(true).await;
    for (query, field) in [
        ("after=abc", "after"),
        ("after=-1", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("type=accepted,nope", "type"),
        ("message_id=xyz", "message_id"),
        ("colour=red", "colour"),
    ] {
        let r = api
            .call(Method::GET, &format!("/v1/events?{query}"), OPERATOR, None)
            .await;
        assert_field(&r, StatusCode::UNPROCESSABLE_ENTITY, field);
    }
}

#[tokio::test]
async fn webhooks_are_tenant_scoped() {
    let api = Api::new(true).await;
    let (a, key_a) = api.tenant("a").await;
    let (_b, key_b) = api.tenant("b").await;
    let (s, w) = api
        .call(
            Method::POST,
            "/v1/webhooks",
            &key_a,
            Some(json!({ "url": "http://127.0.0.1:9/hook", "event_types": ["delivered", "bounced"] })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    assert!(w["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(w["tenant_id"], a.as_str());
    assert_eq!(w["event_types"], json!(["delivered", "bounced"]));
    let id = w["id"].as_str().unwrap();

    let (s, j) = api
        .call(Method::GET, &format!("/v1/webhooks/{id}"), &key_a, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(j.get("secret").is_none(), "the secret is shown only once");
    let (_, j) = api.call(Method::GET, "/v1/webhooks", &key_a, None).await;
    assert_eq!(j["webhooks"].as_array().unwrap().len(), 1);
    let (_, j) = api.call(Method::GET, "/v1/webhooks", &key_b, None).await;
    assert_eq!(j["webhooks"].as_array().unwrap().len(), 0);

    // Everything about A's webhook is "not found" to B.
    for (m, path, body) in [
        (Method::GET, format!("/v1/webhooks/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/webhooks/{id}"),
            Some(json!({ "enabled": false })),
        ),
        (Method::DELETE, format!("/v1/webhooks/{id}"), None),
        (Method::POST, format!("/v1/webhooks/{id}/test"), None),
        (Method::GET, format!("/v1/webhooks/{id}/deliveries"), None),
    ] {
        let (s, j) = api.call(m.clone(), &path, &key_b, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {path}: {j}");
    }

    // PATCH: null event types means all again; disable.
    let (s, j) = api
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            &key_a,
            Some(json!({ "event_types": null, "enabled": false })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["event_types"], Value::Null);
    assert_eq!(j["enabled"], false);
    let (s, j) = api
        .call(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?state=failed"),
            &key_a,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["deliveries"], json!([]));
    let r = api
        .call(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?state=lost"),
            &key_a,
            None,
        )
        .await;
    assert_field(&r, StatusCode::UNPROCESSABLE_ENTITY, "state");

    // The operator sees it and can remove it.
    let (s, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/webhooks/{id}"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api
        .call(Method::GET, &format!("/v1/webhooks/{id}"), &key_a, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn webhook_validation_names_the_field() {
    let api = Api::new(true).await;
    let (a, key_a) = api.tenant("a").await;
    let cases = [
        (
            OPERATOR,
            json!({ "url": "http://127.0.0.1:9/" }),
            "tenant_id",
        ),
        (
            OPERATOR,
            json!({ "url": "http://127.0.0.1:9/", "tenant_id": "nope" }),
            "tenant_id",
        ),
        (&key_a, json!({}), "url"),
        (&key_a, json!({ "url": "ftp://example.com/" }), "url"),
        (
            &key_a,
            json!({ "url": "http://127.0.0.1:9/", "event_types": [] }),
            "event_types",
        ),
        (
            &key_a,
            json!({ "url": "http://127.0.0.1:9/", "event_types": ["delivered", "nope"] }),
            "event_types[1]",
        ),
        (
            &key_a,
            json!({ "url": "http://127.0.0.1:9/", "colour": 1 }),
            "",
        ),
    ];
    for (token, body, field) in cases {
        let (s, j) = api
            .call(Method::POST, "/v1/webhooks", token, Some(body.clone()))
            .await;
        assert!(s.is_client_error(), "{body}: {s} {j}");
        if !field.is_empty() {
            assert_eq!(j["field"], field, "{body}: {j}");
        }
    }
    let (s, j) = api
        .call(
            Method::POST,
            "/v1/webhooks",
            OPERATOR,
            Some(json!({ "url": "http://127.0.0.1:9/", "tenant_id": a })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{j}");
    assert_eq!(j["tenant_id"], a.as_str());
}

#[tokio::test]
async fn internal_webhook_urls_are_refused() {
    let api = Api::new(false).await;
    let (_a, key_a) = api.tenant("a").await;
    for url in [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://[::ffff:10.0.0.1]/",
        "http://2130706433/",
        "http://localhost:8080/",
    ] {
        let r = api
            .call(
                Method::POST,
                "/v1/webhooks",
                &key_a,
                Some(json!({ "url": url })),
            )
            .await;
        assert_field(&r, StatusCode::UNPROCESSABLE_ENTITY, "url");
    }
}
