//! Every authenticated operation of `openapi.json`, walked with keys of each scope and
//! state: the list of routes comes from the document, so a new route is covered the
//! day it is described. A revoked key and a rotated-out secret get 401 everywhere; a
//! `read` key gets 403 on every state-changing operation and exactly what a `full`
//! key gets on every GET; a `send` key gets 403 everywhere except the send endpoint,
//! where it gets what a `full` key gets.

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, Response};
use mailroom_model::TenantId;
use serde_json::{Value, json};

/// The operations a `send` key may call, written out here (not taken from the
/// server), so that widening the server's list fails this test.
const SEND_ENDPOINTS: &[(&str, &str)] = &[("POST", "/v1/messages")];

/// (method, path) of every operation that declares bearer security.
fn authenticated_operations() -> Vec<(Method, String)> {
    let spec: Value = serde_json::from_str(include_str!("../openapi.json")).expect("spec");
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Ok(m) = method.to_ascii_uppercase().parse::<Method>() else {
                continue;
            };
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if secured {
                out.push((m, path.clone()));
            }
        }
    }
    out
}

fn concrete(path: &str) -> String {
    let id = TenantId::generate().to_string();
    path.replace("{id}", &id)
        .replace("{cred}", &id)
        .replace("{name}", "acme.test")
        .replace("{address}", "someone@example.net")
}

fn message() -> Value {
    json!({"from": "app@acme.test", "to": "someone@example.net", "subject": "s", "text": "t"})
}

async fn call(api: &Api, method: &Method, uri: &str, token: &str) -> Response {
    let body = matches!(*method, Method::POST | Method::PUT | Method::PATCH).then(|| {
        if uri == "/v1/messages" {
            message()
        } else {
            json!({})
        }
    });
    api.call(method.clone(), uri, Some(token), body, &[]).await
}

async fn key(api: &Api, admin: &str, name: &str, scope: &str) -> (String, String) {
    let r = api
        .post("/v1/keys", admin, json!({"name": name, "scope": scope}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    (
        r.json["id"].as_str().unwrap().into(),
        r.json["api_key"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn every_documented_route_enforces_revocation_and_scope() {
    let api = Api::new().await;
    let (_, full) = api.tenant("acme", "acme.test").await;
    let (_, read) = key(&api, &full, "reader", "read").await;
    let (_, send) = key(&api, &full, "sender", "send").await;
    let (revoked_id, revoked) = key(&api, &full, "gone", "full").await;
    let r = api.delete(&format!("/v1/keys/{revoked_id}"), &full).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let (rotated_id, rotated_out) = key(&api, &full, "rotated", "full").await;
    let r = api
        .post(
            &format!("/v1/keys/{rotated_id}/rotate"),
            &full,
            json!({"grace_seconds": 0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let ops = authenticated_operations();
    assert!(ops.len() >= 40, "only {} operations found", ops.len());
    for (m, p) in [
        ("POST", "/v1/keys"),
        ("DELETE", "/v1/keys/{id}"),
        ("POST", "/v1/messages"),
    ] {
        assert!(
            ops.iter().any(|(om, op)| om.as_str() == m && op == p),
            "{m} {p} missing from the walk"
        );
    }
    let mut forbidden = 0;
    for (method, path) in &ops {
        let uri = concrete(path);
        for (what, token) in [
            ("revoked", &revoked),
            ("rotated-out", &rotated_out),
            ("unknown", &"mrk_not_a_key_at_all".to_string()),
        ] {
            let r = call(&api, method, &uri, token).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{what} key, {method} {path}: {}",
                r.json
            );
            r.assert_problem(StatusCode::UNAUTHORIZED, None);
        }

        let is_get = *method == Method::GET;
        let is_send = SEND_ENDPOINTS
            .iter()
            .any(|(m, p)| method.as_str() == *m && path == p);
        let reference = if is_get || is_send {
            Some(call(&api, method, &uri, &full).await.status)
        } else {
            None
        };

        let r = call(&api, method, &uri, &read).await;
        if is_get {
            assert_eq!(
                Some(r.status),
                reference,
                "read key, {method} {path}: {}",
                r.json
            );
        } else {
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "read key, {method} {path}: {}",
                r.json
            );
            r.assert_problem(StatusCode::FORBIDDEN, None);
            forbidden += 1;
        }

        let r = call(&api, method, &uri, &send).await;
        if is_send {
            assert_eq!(
                Some(r.status),
                reference,
                "send key, {method} {path}: {}",
                r.json
            );
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
        } else {
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "send key, {method} {path}: {}",
                r.json
            );
            r.assert_problem(StatusCode::FORBIDDEN, None);
        }
    }
    assert!(
        forbidden >= 20,
        "only {forbidden} state-changing operations"
    );

    // The walk did not change anything it should not have: the full key still works
    // and its tenant still has its four live keys.
    let r = api.get("/v1/keys", &full).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["keys"].as_array().unwrap().len(), 4, "{}", r.json);
}
