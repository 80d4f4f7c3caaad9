//! ACME on the HTTP listener: `GET /.well-known/acme-challenge/{token}` answers a
//! pending challenge's key authorization from the store (whichever node stored it),
//! without authentication, and nothing else; `/readyz` carries the binary's
//! certificate status when one is given.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::Api;
use mailroom_store::AcmeStore;
use std::sync::Arc;
use tower::ServiceExt;

#[tokio::test]
async fn a_pending_challenge_is_answered_and_nothing_else() {
    let api = Api::new().await;
    let path = "/.well-known/acme-challenge/tok_EN-1";
    let r = api.call(Method::GET, path, None, None, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["field"], "token", "{}", r.json);

    let far = mailroom_model::now_millis() + 60_000;
    api.store
        .put_acme_challenge("tok_EN-1", "tok_EN-1.thumb", far)
        .await
        .unwrap();
    let r = api.call(Method::GET, path, None, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.json, "tok_EN-1.thumb");

    // Expired, removed, or not a token at all: 404.
    api.store
        .put_acme_challenge("old", "old.thumb", mailroom_model::now_millis() - 1)
        .await
        .unwrap();
    let r = api
        .call(
            Method::GET,
            "/.well-known/acme-challenge/old",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for bad in ["a.b", "a%20b", &"x".repeat(300)] {
        let r = api
            .call(
                Method::GET,
                &format!("/.well-known/acme-challenge/{bad}"),
                None,
                None,
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
    }
    api.store
        .remove_acme_challenge("tok_EN-1", mailroom_model::now_millis())
        .await
        .unwrap();
    let r = api.call(Method::GET, path, None, None, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn readyz_shows_the_certificate_status_when_given() {
    let api = Api::new().await;
    let r = api.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json.get("certificate").is_none(), "{}", r.json);

    let status = mailroom_api::CertificateStatus(Arc::new(
        || serde_json::json!({"source": "acme", "state": "failing", "last_error": "no CA"}),
    ));
    let app = api.app.clone().layer(axum::Extension(status));
    let res = app
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a failing renewal keeps the node ready"
    );
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], "ready");
    assert_eq!(json["certificate"]["state"], "failing");
    assert_eq!(json["certificate"]["last_error"], "no CA");
}
