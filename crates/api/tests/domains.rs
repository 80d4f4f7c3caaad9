//! Sending domains through the API against an in-process DNS server on loopback:
//! verification (correct, wrong value, missing, at the wrong name, SERVFAIL, removed
//! after verification), the records to publish, key rotation, allowed senders, and
//! that every message sent from a domain is DKIM-signed with both of its keys.

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, OPERATOR};
use mailroom_model::{EventType, MessageId, now_millis};
use mailroom_store::KeyState;
use mailroom_store::prelude::*;
use mailroom_testkit::TestZone;
use serde_json::{Value, json};

/// A tenant with the unverified domain `acme.test`; returns (tenant id, key, token).
async fn pending(api: &Api) -> (String, String, String) {
    let r = api
        .post("/v1/tenants", OPERATOR, json!({"name": "acme"}))
        .await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let key = r.json["api_key"].as_str().unwrap().to_string();
    let r = api
        .post(
            &format!("/v1/tenants/{id}/domains"),
            &key,
            json!({"name": "acme.test"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["status"], "pending");
    let token = r.json["verification_token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 32);
    (id, key, token)
}

async fn verify(api: &Api, key: &str) -> Value {
    let r = api
        .call(
            Method::POST,
            "/v1/domains/acme.test/verify",
            Some(key),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    r.json
}

fn record<'a>(view: &'a Value, kind: &str) -> Vec<&'a Value> {
    view["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

fn zone_with_dkim(view: &Value) -> TestZone {
    let mut zone = TestZone::new().ttl(0);
    for r in record(view, "dkim") {
        zone = zone.txt(r["name"].as_str().unwrap(), r["value"].as_str().unwrap());
    }
    zone
}

#[tokio::test]
async fn verification_outcomes_through_dns() {
    let api = Api::new().await;
    let (_, key, token) = pending(&api).await;
    let good = format!("mailroom-verification={token}");

    let v = verify(&api, &key).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["last_check"]["reason"], "missing");

    api.dns.set_zone(
        TestZone::new()
            .ttl(0)
            .txt("_mailroom.acme.test", "mailroom-verification=other"),
    );
    let v = verify(&api, &key).await;
    assert_eq!(v["last_check"]["reason"], "wrong_value", "{v}");
    assert_eq!(v["last_check"]["detail"], "mailroom-verification=other");

    api.dns
        .set_zone(TestZone::new().ttl(0).txt("acme.test", &good));
    let v = verify(&api, &key).await;
    assert_eq!(v["last_check"]["reason"], "found_at_wrong_name", "{v}");
    assert_eq!(v["last_check"]["detail"], "acme.test");

    api.dns
        .set_zone(TestZone::new().ttl(0).servfail("_mailroom.acme.test"));
    let v = verify(&api, &key).await;
    assert_eq!(v["status"], "temporary_failure", "{v}");
    assert_eq!(v["verified"], false);

    api.dns
        .set_zone(TestZone::new().ttl(0).txt("_mailroom.acme.test", &good));
    let v = verify(&api, &key).await;
    assert_eq!(v["status"], "verified", "{v}");
    assert_eq!(v["verified"], true);
    assert_eq!(record(&v, "verification")[0]["state"], "correct");
    assert!(
        api.policy.directory().sender_domain_allowed(
            &api.store
                .get_domain("acme.test")
                .await
                .unwrap()
                .unwrap()
                .tenant_id,
            "acme.test"
        )
    );
}

#[tokio::test]
async fn a_verified_domain_whose_record_disappears_is_degraded_with_an_event() {
    let api = Api::new().await;
    let (id, key, token) = pending(&api).await;
    api.dns.set_zone(TestZone::new().ttl(0).txt(
        "_mailroom.acme.test",
        &format!("mailroom-verification={token}"),
    ));
    assert_eq!(verify(&api, &key).await["status"], "verified");
    api.dns.set_zone(TestZone::new().ttl(0));
    // The background re-check finds it gone.
    let checked = api
        .domains
        .maintain(now_millis() + 2 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(checked, 1);
    let r = api.get("/v1/domains/acme.test", &key).await;
    assert_eq!(r.json["status"], "degraded", "{}", r.json);
    // Still allowed to send (shown as degraded).
    assert_eq!(r.json["verified"], true);
    let tenant = mailroom_model::TenantId::parse(&id).unwrap();
    let events = api.store.list_tenant_events(&tenant, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventType::DomainDnsError);
    assert_eq!(events[0].detail["domain"], "acme.test");
    // A second failing check raises no second event.
    verify(&api, &key).await;
    assert_eq!(
        api.store
            .list_tenant_events(&tenant, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn records_keys_and_no_private_key_in_any_answer() {
    let api = Api::new().await;
    let (id, key, _) = pending(&api).await;
    let r = api.get("/v1/domains/acme.test", &key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let keys = r.json["dkim_keys"].as_array().unwrap();
    let algorithms: Vec<&str> = keys
        .iter()
        .map(|k| k["algorithm"].as_str().unwrap())
        .collect();
    assert_eq!(algorithms, ["ed25519", "rsa2048"]);
    assert!(keys.iter().all(|k| k["state"] == "active"));
    let kinds: Vec<&str> = r.json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "verification",
            "dkim",
            "dkim",
            "spf",
            "dmarc",
            "return_path_mx",
            "return_path_spf"
        ]
    );
    // The defaults (no intake, no return_path_mx, SPF with 127.0.0.1) would not work,
    // and the records say so; the others would.
    let mx = record(&r.json, "return_path_mx")[0];
    assert_eq!(
        (&mx["type"], &mx["name"]),
        (&json!("MX"), &json!("bounces.acme.test"))
    );
    assert_eq!(mx["deliverable"], false);
    let problem = mx["problem"].as_str().unwrap();
    assert!(problem.contains("intake.listen") && problem.contains("domains.return_path_mx"));
    for kind in ["spf", "return_path_spf"] {
        let spf = record(&r.json, kind)[0];
        assert_eq!(spf["deliverable"], false, "{spf}");
        assert!(
            spf["problem"]
                .as_str()
                .unwrap()
                .contains("domains.egress_ips")
        );
    }
    for kind in ["verification", "dkim", "dmarc"] {
        for rec in record(&r.json, kind) {
            assert_eq!(
                (&rec["deliverable"], &rec["problem"]),
                (&json!(true), &Value::Null)
            );
        }
    }
    let dkim = record(&r.json, "dkim");
    assert!(
        dkim[0]["value"]
            .as_str()
            .unwrap()
            .starts_with("v=DKIM1; k=ed25519; p=")
    );
    assert!(dkim.iter().all(|d| d["state"] == "missing"));
    api.dns.set_zone(zone_with_dkim(&r.json));
    let r2 = api.get("/v1/domains/acme.test", &key).await;
    assert!(
        record(&r2.json, "dkim")
            .iter()
            .all(|d| d["state"] == "correct"),
        "{}",
        r2.json
    );

    for uri in [
        "/v1/domains/acme.test".to_string(),
        "/v1/domains".to_string(),
        format!("/v1/tenants/{id}/domains"),
    ] {
        let text = api.get(&uri, OPERATOR).await.json.to_string();
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("private_key"),
            "{uri}: {text}"
        );
    }
    // Another tenant does not see it.
    let (_, other) = api.tenant("other", "other.test").await;
    api.get("/v1/domains/acme.test", &other)
        .await
        .assert_problem(StatusCode::NOT_FOUND, None);
    api.get("/v1/domains/nope.test", OPERATOR)
        .await
        .assert_problem(StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn rotation_signs_with_the_new_key_only_once_published_and_retires_the_old() {
    let api = Api::new().await;
    let (_, key, _) = pending(&api).await;
    let before = api.get("/v1/domains/acme.test", &key).await.json;
    let old: Vec<String> = before["dkim_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["selector"].as_str().unwrap().to_string())
        .collect();
    let r = api
        .call(
            Method::POST,
            "/v1/domains/acme.test/dkim/rotate",
            Some(&key),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let new: Vec<String> = r.json["rotated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["selector"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|s| !old.contains(s)), "{new:?} vs {old:?}");
    assert!(!r.json.to_string().contains("PRIVATE KEY"));
    let signer = api.domains.signer.clone();
    let now = now_millis();
    // Not published yet: nothing changes, the old keys sign.
    assert!(!api.domains.advance_keys("acme.test", now).await.unwrap());
    assert_eq!(signer.selectors("acme.test"), old);
    // Published (the view lists the pending keys' records too).
    api.dns.set_zone(zone_with_dkim(&r.json));
    assert!(api.domains.advance_keys("acme.test", now).await.unwrap());
    let states = |keys: Vec<mailroom_store::DkimKeyRecord>| {
        keys.into_iter()
            .map(|k| (k.selector, k.state))
            .collect::<Vec<_>>()
    };
    let keys = states(api.store.list_dkim_keys(Some("acme.test")).await.unwrap());
    for (selector, state) in &keys {
        let want = if old.contains(selector) {
            KeyState::Retiring
        } else {
            KeyState::Active
        };
        assert_eq!(*state, want, "{selector}");
    }
    // During the grace period all four sign.
    assert_eq!(signer.selectors("acme.test").len(), 4);
    let grace = api.domains.rotation_grace_ms;
    assert!(
        api.domains
            .advance_keys("acme.test", now + grace + 1)
            .await
            .unwrap()
    );
    assert_eq!(signer.selectors("acme.test"), new);
    let keys = states(api.store.list_dkim_keys(Some("acme.test")).await.unwrap());
    assert!(
        keys.iter()
            .filter(|(s, _)| old.contains(s))
            .all(|(_, st)| *st == KeyState::Retired)
    );
}

#[tokio::test]
async fn messages_are_signed_with_both_keys_and_get_a_return_path() {
    let api = Api::new().await;
    let (_, key) = api.tenant("acme", "acme.test").await;
    let r = api
        .post(
            "/v1/messages",
            &key,
            json!({"from": {"address": "app@acme.test"}, "to": "one@example.net", "subject": "Hi", "text": "Hello"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let id = MessageId::parse(r.json["id"].as_str().unwrap()).unwrap();
    let body = String::from_utf8(api.store.load_body(&id).await.unwrap().unwrap()).unwrap();
    let head = body.split("\r\n\r\n").next().unwrap();
    let sigs: Vec<&str> = head
        .match_indices("DKIM-Signature:")
        .map(|(i, _)| &head[i..])
        .collect();
    assert_eq!(sigs.len(), 2, "{head}");
    assert!(
        head.contains("a=ed25519-sha256") && head.contains("a=rsa-sha256"),
        "{head}"
    );
    assert!(head.contains("d=acme.test"), "{head}");
    // Signing comes after the trace headers: the signatures are on top.
    assert!(head.starts_with("DKIM-Signature:"), "{head}");
    let due = api
        .store
        .claim_due(
            &mailroom_store::Lease::new("test", now_millis() + 60_000),
            now_millis() + 1000,
            10,
        )
        .await
        .unwrap();
    assert_eq!(due[0].return_path.as_deref(), Some("bounces.acme.test"));
    assert_eq!(due[0].mail_from, "app@acme.test");
}

#[tokio::test]
async fn allowed_senders_limit_the_from_address() {
    let api = Api::new().await;
    let (_, key) = api.tenant("acme", "acme.test").await;
    let r = api
        .call(
            Method::PUT,
            "/v1/domains/acme.test/senders",
            Some(&key),
            Some(json!({"allowed_local_parts": ["news", "bad address"]})),
            &[],
        )
        .await;
    r.assert_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("allowed_local_parts[1]"),
    );
    // Exactly the documented pattern: no padding, no non-ASCII mailbox names.
    for bad in [" news", "caf\u{e9}", "a..b"] {
        let r = api
            .call(
                Method::PUT,
                "/v1/domains/acme.test/senders",
                Some(&key),
                Some(json!({ "allowed_local_parts": [bad] })),
                &[],
            )
            .await;
        r.assert_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("allowed_local_parts[0]"),
        );
    }
    let r = api
        .call(
            Method::PUT,
            "/v1/domains/acme.test/senders",
            Some(&key),
            Some(json!({"allowed_local_parts": ["News"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["allowed_local_parts"], json!(["news"]));
    let send = |from: &str| json!({"from": {"address": from}, "to": "one@example.net", "subject": "Hi", "text": "Hello"});
    let r = api.post("/v1/messages", &key, send("news@acme.test")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let r = api
        .post("/v1/messages", &key, send("billing@acme.test"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
}
