//! The pipeline against a real SQLite store: a VERP address is accepted only for its
//! own message and return-path domain; a DSN turns a delivered recipient into an async
//! hard bounce (suppressed); an ARF report becomes `complained`; and sender health
//! pauses a tenant above the threshold (with a small minimum sample) and starts afresh
//! once an operator resumes it.

use mailroom_intake::{HealthMonitor, Intake};
use mailroom_model::verp::verp_address;
use mailroom_model::{EventType, MessageId, RecipientState, TenantId, TenantStatus};
use mailroom_policy::health::HealthThresholds;
use mailroom_policy::{Policy, PolicyConfig};
use mailroom_store::{DynStore, HealthLevel, TenantSettings};
use mailroom_testkit::{messages, stores};
use serde_json::json;
use std::sync::Arc;

const RP: &str = "bounces.acme.test";

struct World {
    _dir: tempfile::TempDir,
    store: DynStore,
    policy: Arc<Policy>,
    tenant: TenantId,
    intake: Intake,
    health: Arc<HealthMonitor>,
}

async fn world(min_sample: i64) -> World {
    let (store, tenant, dir) = stores::sqlite_with_tenant().await;
    let config = PolicyConfig {
        health: HealthThresholds {
            min_sample,
            ..Default::default()
        },
        ..Default::default()
    };
    let policy = Policy::load(store.clone(), config).await.unwrap();
    let health = Arc::new(HealthMonitor::new(store.clone(), policy.clone(), true));
    let intake = Intake::new(store.clone(), health.clone());
    World {
        _dir: dir,
        store,
        policy,
        tenant,
        intake,
        health,
    }
}

/// A delivered message to `to` (one recipient per address).
async fn delivered(w: &World, to: &[&str]) -> MessageId {
    messages::delivered_message(&w.store, &w.tenant, to, Some(RP)).await
}

fn dsn(to: &str, rcpt: &str, status: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.net\r\nTo: {to}\r\nSubject: failure\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n\
         Diagnostic-Code: smtp; 550 {status} no such user\r\n\r\n--B--\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn verp_addresses_are_checked_against_the_store() {
    let w = world(100).await;
    let id = delivered(&w, &["a@example.net"]).await;
    let good = verp_address(RP, &id, 0);
    let a = w.intake.check_recipient(&good).await.unwrap().unwrap();
    assert_eq!((a.idx, a.recipient.as_str()), (0, "a@example.net"));
    assert!(
        w.intake
            .check_recipient(&good.to_uppercase())
            .await
            .unwrap()
            .is_some()
    );
    for bad in [
        verp_address(RP, &id, 1),
        verp_address("bounces.evil.test", &id, 0),
        verp_address(RP, &MessageId::generate(), 0),
        "postmaster@bounces.acme.test".to_string(),
        String::new(),
    ] {
        assert!(
            w.intake.check_recipient(&bad).await.unwrap().is_none(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn dsn_and_arf_are_recorded_once() {
    let w = world(100).await;
    let id = delivered(&w, &["a@example.net", "b@example.net"]).await;
    let verp = verp_address(RP, &id, 1);
    let env = vec![w.intake.check_recipient(&verp).await.unwrap().unwrap()];
    let done = w
        .intake
        .process(&env, &dsn(&verp, "b@example.net", "5.1.1"))
        .await
        .unwrap();
    assert_eq!(done.bounces, 1);
    let again = w
        .intake
        .process(&env, &dsn(&verp, "b@example.net", "5.1.1"))
        .await
        .unwrap();
    assert_eq!((again.bounces, again.ignored), (0, 1));
    let view = w.store.get_message(&id).await.unwrap().unwrap();
    assert_eq!(view.recipients[1].state, RecipientState::Bounced);
    let ev = view.recipients[1].events.last().unwrap();
    assert_eq!(ev.kind, EventType::Bounced);
    assert_eq!(ev.detail["async"], json!(true));
    assert_eq!(ev.detail["bounce_class"], json!("hard"));
    assert!(
        w.store
            .get_suppression(&w.tenant, "b@example.net")
            .await
            .unwrap()
            .is_some()
    );

    // A complaint about recipient 0, arriving at recipient 1's address, is matched
    // through the original's Return-Path.
    let arf = format!(
        "From: fbl@isp.example\r\nSubject: complaint\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=F\r\n\r\n\
         --F\r\nContent-Type: text/plain\r\n\r\nabuse report\r\n\
         --F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n\
         User-Agent: FBL/1\r\nVersion: 1\r\n\r\n\
         --F\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <{}>\r\nFrom: app@acme.test\r\n\
         To: redacted@isp.example\r\nSubject: x\r\n\r\nbody\r\n--F--\r\n",
        verp_address(RP, &id, 0)
    );
    let done = w.intake.process(&env, arf.as_bytes()).await.unwrap();
    assert_eq!(done.complaints, 1);
    let s = w
        .store
        .get_suppression(&w.tenant, "a@example.net")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.reason, "complaint");
    let view = w.store.get_message(&id).await.unwrap().unwrap();
    assert_eq!(
        view.recipients[0].events.last().unwrap().kind,
        EventType::Complained
    );

    let junk = w
        .intake
        .process(&env, b"Subject: hi\r\n\r\nout of office\r\n")
        .await;
    assert!(junk.is_err());
}

#[tokio::test]
async fn soft_async_bounce_is_not_suppressed() {
    let w = world(100).await;
    let id = delivered(&w, &["a@example.net"]).await;
    let verp = verp_address(RP, &id, 0);
    let env = vec![w.intake.check_recipient(&verp).await.unwrap().unwrap()];
    let done = w
        .intake
        .process(&env, &dsn(&verp, "a@example.net", "5.2.2"))
        .await
        .unwrap();
    assert_eq!(done.bounces, 1);
    assert!(
        w.store
            .get_suppression(&w.tenant, "a@example.net")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn health_pauses_above_the_threshold_and_resumes() {
    let w = world(10).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(delivered(&w, &[&format!("u{i}@example.net")]).await);
    }
    assert_eq!(
        w.health.check_now(&w.tenant).await.unwrap(),
        HealthLevel::Ok
    );
    // 1 hard bounce in 10: 10 % → pause.
    let verp = verp_address(RP, &ids[0], 0);
    let env = vec![w.intake.check_recipient(&verp).await.unwrap().unwrap()];
    w.intake
        .process(&env, &dsn(&verp, "u0@example.net", "5.1.1"))
        .await
        .unwrap();
    let t = w.store.get_tenant(&w.tenant).await.unwrap().unwrap();
    assert_eq!(t.status, TenantStatus::Paused);
    assert!(w.policy.may_submit(&w.tenant).is_err(), "policy reloaded");
    let events = w.store.list_tenant_events(&w.tenant, 10).await.unwrap();
    assert_eq!(events[0].kind, EventType::SenderHealthPaused);
    assert_eq!(events[0].detail["counts"]["hard_bounces"], json!(1));

    // The operator resumes: the next check starts a new window and does not re-pause.
    w.store
        .update_tenant(
            &w.tenant,
            TenantSettings {
                status: Some(TenantStatus::Active),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.policy.reload().await.unwrap();
    assert_eq!(
        w.health.check_now(&w.tenant).await.unwrap(),
        HealthLevel::Ok
    );
    let t = w.store.get_tenant(&w.tenant).await.unwrap().unwrap();
    assert_eq!(t.status, TenantStatus::Active);
    let v = w.health.view(&w.tenant).await.unwrap();
    assert_eq!(v.assessment.counts.sent(), 0);
}

#[tokio::test]
async fn warning_below_the_pause_threshold() {
    let w = world(10).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(delivered(&w, &[&format!("u{i}@example.net")]).await);
    }
    let verp = verp_address(RP, &ids[3], 0);
    let env = vec![w.intake.check_recipient(&verp).await.unwrap().unwrap()];
    w.intake
        .process(&env, &dsn(&verp, "u3@example.net", "5.1.1"))
        .await
        .unwrap();
    // 1 in 20 = 5 %: warning, still active.
    let t = w.store.get_tenant(&w.tenant).await.unwrap().unwrap();
    assert_eq!(t.status, TenantStatus::Active);
    let events = w.store.list_tenant_events(&w.tenant, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventType::SenderHealthWarning);
    // Checking again raises no second warning.
    assert_eq!(
        w.health.check_now(&w.tenant).await.unwrap(),
        HealthLevel::Warning
    );
    assert_eq!(
        w.store
            .list_tenant_events(&w.tenant, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}
