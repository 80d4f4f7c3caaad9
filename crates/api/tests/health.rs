//! `GET /v1/tenants/{id}/health`: a fresh tenant is `ok` with no sample and the
//! configured thresholds; another tenant cannot read it; it is described in the spec.

mod common;

use axum::http::StatusCode;
use common::{Api, OPERATOR};

#[tokio::test]
async fn a_fresh_tenant_is_healthy_and_only_it_and_the_operator_see_it() {
    let api = Api::new().await;
    let (id, key) = api.tenant("acme", "acme.test").await;
    let (_, other) = api.tenant("other", "other.test").await;
    let r = api.get(&format!("/v1/tenants/{id}/health"), &key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["level"], "ok");
    assert_eq!(r.json["status"], "active");
    assert_eq!(r.json["sent"], 0);
    assert_eq!(r.json["bounce_rate"], 0.0);
    assert_eq!(r.json["enough_sample"], false);
    assert_eq!(r.json["thresholds"]["bounce_pause"], 0.1);
    assert_eq!(r.json["thresholds"]["complaint_warn"], 0.001);
    let r = api.get(&format!("/v1/tenants/{id}/health"), OPERATOR).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api.get(&format!("/v1/tenants/{id}/health"), &other).await;
    assert!(r.status == StatusCode::NOT_FOUND || r.status == StatusCode::FORBIDDEN);
    let r = api.get("/v1/tenants/nope/health", OPERATOR).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
