//! Bounce intake and sender health on both backends: an async bounce turns a delivered
//! recipient into `bounced` with its event and suppression, once; a complaint records
//! `complained` and suppresses, once; health counts and level changes (with the pause)
//! are written together.

#[macro_use]
mod common;

use mailroom_model::{EventType, MessageId, RecipientState, TenantId, TenantStatus, now_millis};
use mailroom_store::{
    AsyncBounce, Complaint, DynStore, HealthChange, HealthLevel, IntakeRecorded, NewMessage,
    Outcome,
};

async fn setup(store: &DynStore) -> TenantId {
    common::tenant(store, "acme").await
}

/// Stores a two-recipient message and records both as delivered.
async fn delivered_message(store: &DynStore, tenant: &TenantId) -> MessageId {
    common::delivered_message(
        store,
        tenant,
        &["a@example.net", "b@example.net"],
        Some("bounces.acme.test"),
    )
    .await
}

conformance!(
    async_bounce_turns_delivered_into_bounced_once,
    |store: DynStore| async move {
        let tenant = setup(&store).await;
        let id = delivered_message(&store, &tenant).await;
        let target = store.bounce_target(&id).await.unwrap().unwrap();
        assert_eq!(target.return_path.as_deref(), Some("bounces.acme.test"));
        assert_eq!(target.recipients.len(), 2);
        assert_eq!(target.recipients[1].state, RecipientState::Delivered);
        assert!(
            store
                .bounce_target(&MessageId::generate())
                .await
                .unwrap()
                .is_none()
        );

        let bounce = AsyncBounce {
            message_id: id.clone(),
            idx: 1,
            at: now_millis(),
            reply: Some("550 5.1.1 user unknown".into()),
            hard: true,
            detail: hard_async(),
        };
        let r = store.record_async_bounce(bounce.clone()).await.unwrap();
        assert_eq!(
            r,
            IntakeRecorded::Recorded {
                tenant_id: tenant.clone(),
                recipient: "b@example.net".into()
            }
        );
        assert_eq!(
            store.record_async_bounce(bounce.clone()).await.unwrap(),
            IntakeRecorded::Duplicate
        );
        let missing = AsyncBounce { idx: 7, ..bounce };
        assert_eq!(
            store.record_async_bounce(missing).await.unwrap(),
            IntakeRecorded::NotFound
        );
        let view = store.get_message(&id).await.unwrap().unwrap();
        assert_eq!(view.recipients[0].state, RecipientState::Delivered);
        let b = &view.recipients[1];
        assert_eq!(b.state, RecipientState::Bounced);
        assert_eq!(b.last_reply.as_deref(), Some("550 5.1.1 user unknown"));
        let kinds: Vec<EventType> = b.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventType::Accepted,
                EventType::Delivered,
                EventType::Bounced
            ]
        );
        let s = store
            .get_suppression(&tenant, "B@example.net")
            .await
            .unwrap()
            .expect("suppressed");
        assert_eq!(s.reason, "bounce");

        let counts = store.health_counts(&tenant, 0).await.unwrap();
        assert_eq!(counts.delivered, 2);
        assert_eq!(counts.bounced_at_delivery, 0);
        assert_eq!(counts.hard_bounces, 1);
        assert_eq!(counts.sent(), 2);
    }
);

conformance!(
    complaint_suppresses_once_and_keeps_the_state,
    |store: DynStore| async move {
        let tenant = setup(&store).await;
        let id = delivered_message(&store, &tenant).await;
        let c = Complaint {
            message_id: id.clone(),
            idx: 0,
            at: now_millis(),
            detail: abuse(),
        };
        assert!(matches!(
            store.record_complaint(c.clone()).await.unwrap(),
            IntakeRecorded::Recorded { .. }
        ));
        assert_eq!(
            store.record_complaint(c).await.unwrap(),
            IntakeRecorded::Duplicate
        );
        let view = store.get_message(&id).await.unwrap().unwrap();
        assert_eq!(view.recipients[0].state, RecipientState::Delivered);
        assert_eq!(
            view.recipients[0].events.last().map(|e| e.kind),
            Some(EventType::Complained)
        );
        let s = store
            .get_suppression(&tenant, "a@example.net")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.reason, "complaint");
        assert_eq!(store.health_counts(&tenant, 0).await.unwrap().complaints, 1);
        // A window starting later counts nothing.
        let later = store
            .health_counts(&tenant, now_millis() + 60_000)
            .await
            .unwrap();
        assert_eq!(later.sent() + later.complaints, 0);
    }
);

conformance!(
    health_change_pauses_an_active_tenant_with_its_event,
    |store: DynStore| async move {
        let tenant = setup(&store).await;
        assert!(store.get_sender_health(&tenant).await.unwrap().is_none());
        let at = now_millis();
        let paused = store
            .set_sender_health(HealthChange {
                tenant_id: tenant.clone(),
                level: HealthLevel::Paused,
                window_start: 0,
                at,
                pause: true,
                event: Some((EventType::SenderHealthPaused, paused_detail())),
            })
            .await
            .unwrap();
        assert!(paused);
        let t = store.get_tenant(&tenant).await.unwrap().unwrap();
        assert_eq!(t.status, TenantStatus::Paused);
        let h = store.get_sender_health(&tenant).await.unwrap().unwrap();
        assert_eq!(h.level, HealthLevel::Paused);
        let events = store.list_tenant_events(&tenant, 10).await.unwrap();
        assert_eq!(events[0].kind, EventType::SenderHealthPaused);
        // Already paused: the status is not changed again.
        let again = store
            .set_sender_health(HealthChange {
                tenant_id: tenant.clone(),
                level: HealthLevel::Ok,
                window_start: at,
                at,
                pause: true,
                event: None,
            })
            .await
            .unwrap();
        assert!(!again);
        let h = store.get_sender_health(&tenant).await.unwrap().unwrap();
        assert_eq!((h.level, h.window_start), (HealthLevel::Ok, at));
    }
);

conformance_db!(
    two_nodes_recording_the_same_report_record_it_once,
    |db: TestDb| async move {
        let a = db.open().await;
        let b = db.open().await;
        let tenant = setup(&a).await;
        for round in 0..5 {
            let id = delivered_message(&a, &tenant).await;
            let c = Complaint {
                message_id: id.clone(),
                idx: 0,
                at: now_millis(),
                detail: abuse(),
            };
            let bounce = AsyncBounce {
                message_id: id.clone(),
                idx: 1,
                at: now_millis(),
                reply: Some("550 5.1.1 gone".into()),
                hard: true,
                detail: hard_async(),
            };
            let (ca, cb, ba, bb) = tokio::join!(
                a.record_complaint(c.clone()),
                b.record_complaint(c),
                a.record_async_bounce(bounce.clone()),
                b.record_async_bounce(bounce),
            );
            let results = [ca.unwrap(), cb.unwrap(), ba.unwrap(), bb.unwrap()];
            for pair in results.chunks(2) {
                let recorded = pair
                    .iter()
                    .filter(|r| matches!(r, IntakeRecorded::Recorded { .. }))
                    .count();
                assert_eq!(recorded, 1, "round {round}: {pair:?}");
                assert!(pair.contains(&IntakeRecorded::Duplicate), "{pair:?}");
            }
            let view = b.get_message(&id).await.unwrap().unwrap();
            let kinds = |i: usize| -> Vec<EventType> {
                view.recipients[i].events.iter().map(|e| e.kind).collect()
            };
            assert_eq!(
                kinds(0),
                [
                    EventType::Accepted,
                    EventType::Delivered,
                    EventType::Complained
                ]
            );
            assert_eq!(
                kinds(1),
                [
                    EventType::Accepted,
                    EventType::Delivered,
                    EventType::Bounced
                ]
            );
            assert_eq!(view.recipients[1].state, RecipientState::Bounced);
        }
        let counts = a.health_counts(&tenant, 0).await.unwrap();
        assert_eq!(
            (
                counts.delivered,
                counts.hard_bounces,
                counts.complaints,
                counts.bounced_at_delivery
            ),
            (10, 5, 5, 0)
        );
        // Both addresses are suppressed once each (the first reason wins).
        assert_eq!(
            a.list_suppressions(&tenant, None, 10).await.unwrap().len(),
            2
        );
    }
);

/// A bounce for a recipient whose delivery attempt is still in flight (queued, leased)
/// fences that attempt: its outcome is lost and the recipient stays bounced.
/// PostgreSQL only: SQLite's bounce clears `lease_until` but keeps the token, so
/// there the late outcome overwrites the bounce (reported, not changed here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_fences_the_attempt_in_flight() {
    let db = common::TestDb::postgres().await;
    let store = db.open().await;
    let tenant = setup(&store).await;
    let id = delivered_message(&store, &tenant).await;
    // A second message, claimed (in flight) but not yet recorded.
    let lease = mailroom_store::Lease {
        owner: "node-a".into(),
        token: 99,
        until: now_millis() + 60_000,
    };
    let mut m = store.get_message(&id).await.unwrap().unwrap();
    assert_eq!(m.recipients.len(), 2);
    let fresh = MessageId::generate();
    let body = store.load_body(&id).await.unwrap().unwrap();
    store
        .enqueue(NewMessage {
            id: fresh.clone(),
            body,
            return_path: Some("bounces.acme.test".into()),
            ..common::new_message(
                &tenant,
                &m.mail_from,
                vec![common::recipient(&m.recipients.remove(0).address)],
            )
        })
        .await
        .unwrap();
    let claimed = store.claim_due(&lease, now_millis(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message_id, fresh);
    let r = store
        .record_async_bounce(AsyncBounce {
            message_id: fresh.clone(),
            idx: 0,
            at: now_millis(),
            reply: Some("550 5.1.1 gone".into()),
            hard: true,
            detail: hard_async(),
        })
        .await
        .unwrap();
    assert!(matches!(r, IntakeRecorded::Recorded { .. }), "{r:?}");
    let lost = store
        .record_outcomes(vec![Outcome {
            message_id: fresh.clone(),
            idx: 0,
            recipient: claimed[0].address.clone(),
            tenant_id: tenant.clone(),
            state: RecipientState::Delivered,
            attempted: true,
            next_attempt_at: None,
            last_reply: Some("250 ok".into()),
            last_mx: None,
            event: EventType::Delivered,
            detail: Default::default(),
            at: now_millis(),
            suppress: false,
            lease_token: 99,
        }])
        .await
        .unwrap();
    assert_eq!(lost, [(fresh.clone(), 0)]);
    let view = store.get_message(&fresh).await.unwrap().unwrap();
    assert_eq!(view.recipients[0].state, RecipientState::Bounced);
    let kinds: Vec<EventType> = view.recipients[0].events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventType::Accepted, EventType::Bounced]);
}

/// A hard bounce report's detail.
fn hard_async() -> mailroom_model::AsyncBounceDetail {
    mailroom_model::AsyncBounceDetail {
        is_async: true,
        bounce_category: mailroom_model::BounceCategory::BadMailbox,
        bounce_class: mailroom_model::BounceClass::Hard,
        format: "dsn".into(),
        remote_mta: None,
        reply: Default::default(),
        reported_recipient: None,
        reporting_mta: None,
    }
}

/// An abuse complaint's detail.
fn abuse() -> mailroom_model::ComplaintDetail {
    mailroom_model::ComplaintDetail {
        arrival_date: None,
        feedback_type: "abuse".into(),
        reported_recipient: None,
        reporting_mta: None,
        source_ip: None,
        user_agent: None,
    }
}

/// A pause's detail.
fn paused_detail() -> mailroom_model::SenderHealthDetail {
    mailroom_model::SenderHealthDetail {
        bounce_rate: 0.2,
        complaint_rate: 0.0,
        counts: Default::default(),
        sent: 10,
        thresholds: Default::default(),
    }
}
