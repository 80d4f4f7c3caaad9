//! `GET /v1/nodes`: the operator sees every node that ever sent a heartbeat, alive or
//! dead by its own heartbeat period, with the recipients it holds under a live lease;
//! a tenant key gets 403; no token 401.

mod common;

use axum::http::StatusCode;
use common::{Api, OPERATOR};
use mailroom_model::now_millis;
use mailroom_store::prelude::*;
use mailroom_store::{Lease, NodeInfo};
use serde_json::json;

fn node(id: &str, last_seen: i64, heartbeat_ms: i64) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        started_at: last_seen - 60_000,
        last_seen,
        version: "9.9.9".into(),
        detail: json!({"hostname": "h", "smtp": ["127.0.0.1:2587"], "http": "127.0.0.1:8080", "heartbeat_ms": heartbeat_ms}),
    }
}

#[tokio::test]
async fn the_operator_sees_live_and_dead_nodes_and_their_leases() {
    let api = Api::new().await;
    let (_, key) = api.tenant("acme", "acme.test").await;
    let r = api.get("/v1/nodes", OPERATOR).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["nodes"], json!([]));

    let now = now_millis();
    // a: seen now (alive); b: seen 20 s ago with 5 s heartbeats (dead); c: seen 20 s
    // ago but beats every 10 s (alive: 20 s < 3 × 10 s).
    api.store.heartbeat(&node("a", now, 5_000)).await.unwrap();
    api.store
        .heartbeat(&node("b", now - 20_000, 5_000))
        .await
        .unwrap();
    api.store
        .heartbeat(&node("c", now - 20_000, 10_000))
        .await
        .unwrap();
    // d: seen now, but it said it stopped.
    let mut d = node("d", now, 5_000);
    d.detail["stopped"] = json!(true);
    api.store.heartbeat(&d).await.unwrap();
    let to = json!(["one@example.net", "two@example.org", "three@example.com"]);
    let r = api
        .post(
            "/v1/messages",
            &key,
            json!({"from": "app@acme.test", "to": to, "subject": "s", "text": "t"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let later = now_millis() + 1;
    let claimed = api
        .store
        .claim_due(&Lease::new("a", later + 60_000), later, 2)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    // b's lease has run out: it holds nothing any more.
    let expired = api
        .store
        .claim_due(&Lease::new("b", later - 1), later, 5)
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);

    let r = api.get("/v1/nodes", OPERATOR).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let nodes = r.json["nodes"].as_array().unwrap();
    let got: Vec<_> = nodes
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap(),
                n["alive"].as_bool().unwrap(),
                n["leased_recipients"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", true, 2),
            ("b", false, 0),
            ("c", true, 0),
            ("d", false, 0)
        ]
    );
    let a = &nodes[0];
    assert_eq!(a["last_seen"], now);
    assert_eq!(a["started_at"], now - 60_000);
    assert_eq!(a["version"], "9.9.9");
    assert_eq!(a["detail"]["smtp"], json!(["127.0.0.1:2587"]));

    let r = api.get("/v1/nodes", &key).await;
    r.assert_problem(StatusCode::FORBIDDEN, None);
    let r = api
        .call(axum::http::Method::GET, "/v1/nodes", None, None, &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
