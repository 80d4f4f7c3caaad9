//! The queue and directory basics on both backends (conformance): concurrent enqueue
//! through the group-commit writer, durability across a reopen, typed conflicts and
//! the administrative operations' answers.

#[macro_use]
mod common;

use mailroom_model::{CredentialId, EventType, MessageId, RecipientState, TenantId, now_millis};
use mailroom_store::DynStore;
use mailroom_store::{
    AllowedIp, NewCredential, NewDomain, NewMessage, NewRecipient, NewTenant, StoreError,
};
use std::collections::HashMap;

const TASKS: usize = 50;
const PER_TASK: usize = 10;

fn new_tenant(name: &str) -> NewTenant {
    NewTenant {
        id: TenantId::generate(),
        name: name.into(),
        api_key_hash: format!("hash-of-{name}"),
    }
}

/// Message number `n`: 1 to 3 recipients, a body that names it.
fn new_message(tenant: &TenantId, n: usize) -> NewMessage {
    let recipients = (0..1 + n % 3)
        .map(|i| NewRecipient {
            dsn_notify: (i == 1).then(|| "FAILURE".to_string()),
            ..common::recipient(&format!("r{i}.m{n}@example{i}.net"))
        })
        .collect();
    NewMessage {
        rfc_message_id: Some(format!("m{n}@acme.test")),
        client_ip: Some("192.0.2.1".into()),
        dsn_envid: Some(format!("env{n}")),
        body: format!("From: sender{n}@acme.test\r\nSubject: {n}\r\n\r\nmessage {n}\r\n")
            .into_bytes(),
        accepted_detail: mailroom_model::AcceptedDetail {
            size: n as u64,
            ..Default::default()
        }
        .into(),
        ..common::new_message(tenant, &format!("sender{n}@acme.test"), recipients)
    }
}

/// Checks that `m` was stored whole: metadata, recipients queued with one `accepted`
/// event each, and the body byte for byte.
async fn assert_stored(store: &DynStore, m: &NewMessage) {
    let view = store
        .get_message(&m.id)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("message {} is missing", m.id));
    assert_eq!(view.tenant_id, m.tenant_id);
    assert_eq!(view.mail_from, m.mail_from);
    assert_eq!(view.rfc_message_id, m.rfc_message_id);
    assert_eq!(view.size, m.body.len() as i64);
    assert_eq!(view.received_at, m.received_at);
    assert_eq!(view.source, "smtp");
    assert_eq!(view.dsn_envid, m.dsn_envid);
    let addresses: Vec<&str> = view.recipients.iter().map(|r| r.address.as_str()).collect();
    let want: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addresses, want);
    for (r, nr) in view.recipients.iter().zip(&m.recipients) {
        assert_eq!(r.state, RecipientState::Queued);
        assert_eq!(r.attempts, 0);
        assert_eq!(r.dsn_notify, nr.dsn_notify);
        assert_eq!(r.events.len(), 1, "{}", r.address);
        let e = &r.events[0];
        assert_eq!(e.kind, EventType::Accepted);
        assert_eq!(e.message_id.as_ref(), Some(&m.id));
        assert_eq!(e.tenant_id.as_ref(), Some(&m.tenant_id));
        assert_eq!(e.detail, m.accepted_detail.to_value());
    }
    let body = store.load_body(&m.id).await.expect("read body");
    assert_eq!(body.as_deref(), Some(m.body.as_slice()));
}

conformance_db!(
    concurrent_enqueue_is_durable_and_survives_a_reopen,
    |db: TestDb| async move {
        let store = db.open().await;
        let tenant = store
            .create_tenant(new_tenant("acme"))
            .await
            .expect("tenant");

        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = store.clone();
            let tenant = tenant.id.clone();
            tasks.push(tokio::spawn(async move {
                let mut done = Vec::new();
                for i in 0..PER_TASK {
                    let m = new_message(&tenant, t * PER_TASK + i);
                    store.enqueue(m.clone()).await.expect("enqueue");
                    done.push(m);
                }
                done
            }));
        }
        let mut messages = Vec::new();
        for task in tasks {
            messages.extend(task.await.expect("task"));
        }
        assert_eq!(messages.len(), TASKS * PER_TASK);
        let recipients: usize = messages.iter().map(|m| m.recipients.len()).sum();

        for m in &messages {
            assert_stored(&store, m).await;
        }
        assert_eq!(
            store.count_recipients_by_state().await.expect("count"),
            [("queued".to_string(), recipients as i64)]
        );

        // Drop every handle (the writer task stops with its channel) and open again.
        drop(store);
        let store = db.open().await;
        for m in &messages {
            assert_stored(&store, m).await;
        }
        assert_eq!(
            store.count_recipients_by_state().await.expect("count"),
            [("queued".to_string(), recipients as i64)]
        );
        let tenants = store.list_tenants().await.expect("tenants");
        assert_eq!(tenants.len(), 1);
        assert_eq!(tenants[0].name, "acme");
        // The reopened store takes new work too.
        let more = new_message(&tenant.id, 9999);
        store
            .enqueue(more.clone())
            .await
            .expect("enqueue after reopen");
        assert_stored(&store, &more).await;
    }
);

conformance_db!(directory_survives_a_reopen, |db: TestDb| async move {
    let store = db.open().await;
    let tenant = store.create_tenant(new_tenant("acme")).await.unwrap();
    let cred = store
        .create_credential(NewCredential {
            id: CredentialId::generate(),
            tenant_id: tenant.id.clone(),
            username: "mrs_one".into(),
            password_hash: "$argon2id$fake".into(),
        })
        .await
        .unwrap();
    common::verified_domain(&store, &tenant.id, "acme.test").await;
    let allowed = vec![AllowedIp {
        tenant_id: tenant.id.clone(),
        cidr: "192.0.2.0/24".into(),
        require_tls: true,
    }];
    store.set_allowed_ips(&tenant.id, &allowed).await.unwrap();
    drop(store);

    let store = db.open().await;
    let snapshot = store.load_directory().await.unwrap();
    assert_eq!(snapshot.tenants.len(), 1);
    assert_eq!(snapshot.tenants[0].id, tenant.id);
    assert_eq!(snapshot.tenants[0].api_key_hash, "hash-of-acme");
    assert_eq!(snapshot.credentials.len(), 1);
    assert_eq!(snapshot.credentials[0].id, cred.id);
    assert_eq!(snapshot.credentials[0].password_hash, "$argon2id$fake");
    assert_eq!(snapshot.domains.len(), 1);
    assert_eq!(snapshot.domains[0].name, "acme.test");
    assert!(snapshot.domains[0].verified);
    assert_eq!(snapshot.allowed_ips, allowed);
    assert_eq!(store.list_allowed_ips(&tenant.id).await.unwrap(), allowed);
});

conformance_db!(
    unique_values_conflict_with_a_typed_error,
    |db: TestDb| async move {
        let store = db.open().await;
        let acme = store.create_tenant(new_tenant("acme")).await.unwrap();

        let mut again = new_tenant("acme");
        again.api_key_hash = "another-hash".into();
        match store.create_tenant(again).await {
            Err(StoreError::Conflict(what)) => assert_eq!(what, "tenant"),
            other => panic!("duplicate tenant name: {other:?}"),
        }
        let mut same_key = new_tenant("other");
        same_key.api_key_hash = "hash-of-acme".into();
        assert!(matches!(
            store.create_tenant(same_key).await,
            Err(StoreError::Conflict("tenant"))
        ));
        let beta = store.create_tenant(new_tenant("beta")).await.unwrap();

        let domain = |t: &TenantId| NewDomain {
            tenant_id: t.clone(),
            name: "acme.test".into(),
            verified: false,
            verification_token: "tok".into(),
            dkim_keys: vec![],
        };
        store.add_domain(domain(&acme.id)).await.unwrap();
        assert!(matches!(
            store.add_domain(domain(&beta.id)).await,
            Err(StoreError::Conflict("domain"))
        ));

        let cred = |t: &TenantId| NewCredential {
            id: CredentialId::generate(),
            tenant_id: t.clone(),
            username: "mrs_same".into(),
            password_hash: "x".into(),
        };
        store.create_credential(cred(&acme.id)).await.unwrap();
        assert!(matches!(
            store.create_credential(cred(&beta.id)).await,
            Err(StoreError::Conflict("credential"))
        ));

        // A conflict changes nothing.
        let tenants = store.list_tenants().await.unwrap();
        let mut names: Vec<&str> = tenants.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["acme", "beta"]);
        assert_eq!(store.list_domains(Some(&beta.id)).await.unwrap().len(), 0);
        assert_eq!(store.list_credentials(&beta.id).await.unwrap().len(), 0);
    }
);

conformance_db!(duplicate_message_id_fails_alone, |db: TestDb| async move {
    let store = db.open().await;
    let tenant = store.create_tenant(new_tenant("acme")).await.unwrap();
    let first = new_message(&tenant.id, 1);
    store.enqueue(first.clone()).await.unwrap();

    // The duplicate and its neighbours arrive together, so they may share a batch.
    let mut dup = new_message(&tenant.id, 2);
    dup.id = first.id.clone();
    let mut jobs = vec![dup];
    jobs.extend((3..40).map(|n| new_message(&tenant.id, n)));
    let handles: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|m| {
            let store = store.clone();
            tokio::spawn(async move { store.enqueue(m).await })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap());
    }
    assert!(
        matches!(results[0], Err(StoreError::Conflict(_))),
        "{:?}",
        results[0]
    );
    for (m, r) in jobs.iter().zip(&results).skip(1) {
        assert!(r.is_ok(), "{}: {r:?}", m.id);
        assert_stored(&store, m).await;
    }
    // The original is untouched.
    assert_stored(&store, &first).await;
    let by_state: HashMap<String, i64> = store
        .count_recipients_by_state()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let want: usize = std::iter::once(&first)
        .chain(jobs.iter().skip(1))
        .map(|m| m.recipients.len())
        .sum();
    assert_eq!(by_state.get("queued"), Some(&(want as i64)));
    assert_eq!(by_state.len(), 1);
});

conformance_db!(
    revoke_credential_answers_whether_it_removed_one,
    |db: TestDb| async move {
        let store = db.open().await;
        let acme = store.create_tenant(new_tenant("acme")).await.unwrap();
        let beta = store.create_tenant(new_tenant("beta")).await.unwrap();
        let cred = store
            .create_credential(NewCredential {
                id: CredentialId::generate(),
                tenant_id: acme.id.clone(),
                username: "mrs_acme".into(),
                password_hash: "x".into(),
            })
            .await
            .unwrap();

        assert!(
            !store
                .revoke_credential(&acme.id, &CredentialId::generate())
                .await
                .unwrap()
        );
        // Another tenant cannot revoke it, and it is still there afterwards.
        assert!(!store.revoke_credential(&beta.id, &cred.id).await.unwrap());
        assert_eq!(store.list_credentials(&acme.id).await.unwrap().len(), 1);
        assert!(store.revoke_credential(&acme.id, &cred.id).await.unwrap());
        assert!(!store.revoke_credential(&acme.id, &cred.id).await.unwrap());
        assert!(store.list_credentials(&acme.id).await.unwrap().is_empty());
        assert!(store.load_directory().await.unwrap().credentials.is_empty());
    }
);

conformance_db!(unknown_message_reads_as_none, |db: TestDb| async move {
    let store = db.open().await;
    let id = MessageId::generate();
    assert!(store.get_message(&id).await.unwrap().is_none());
    assert!(store.load_body(&id).await.unwrap().is_none());
    assert!(store.count_recipients_by_state().await.unwrap().is_empty());
});

conformance_db!(
    domains_keys_checks_and_tenant_events,
    |db: TestDb| async move {
        use mailroom_model::EventType;
        use mailroom_store::{DomainCheck, DomainStatus, KeyState, NewDkimKey};
        let store = db.open().await;
        let t = store.create_tenant(new_tenant("keys")).await.unwrap();
        let key = |selector: &str, state| NewDkimKey {
            domain: "keys.test".into(),
            selector: selector.into(),
            algorithm: "ed25519".into(),
            private_key: mailroom_secrets::Sealed::from_stored(
                "-----BEGIN PRIVATE KEY-----".into(),
            ),
            state,
        };
        let d = store
            .add_domain(NewDomain {
                tenant_id: t.id.clone(),
                name: "keys.test".into(),
                verified: false,
                verification_token: "tok123".into(),
                dkim_keys: vec![key("s1", KeyState::Active)],
            })
            .await
            .unwrap();
        assert_eq!(d.status, DomainStatus::Pending);
        assert!(!d.verified);
        store
            .add_dkim_key(key("s2", KeyState::Pending))
            .await
            .unwrap();
        let keys = store.list_dkim_keys(Some("keys.test")).await.unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].activated_at.is_some() && keys[1].activated_at.is_none());
        let json = serde_json::to_string(&keys).unwrap();
        assert!(!json.contains("PRIVATE"), "{json}");

        // Re-sealing: every secret is listed; an update applies only where the row still
        // holds the value it was computed from.
        use mailroom_store::{SecretOwner, SecretUpdate};
        let secrets = store.list_secrets().await.unwrap();
        assert_eq!(secrets.len(), 2);
        let s1 = SecretOwner::DkimKey {
            domain: "keys.test".into(),
            selector: "s1".into(),
        };
        assert_eq!(secrets[0].owner, s1);
        assert_eq!(s1.context(), "dkim:keys.test:s1");
        let sealed = |t: &str| mailroom_secrets::Sealed::from_stored(t.into());
        let update = |old: &str, new: &str| SecretUpdate {
            owner: s1.clone(),
            old: sealed(old),
            new: sealed(new),
        };
        let changed = store
            .replace_secrets(vec![update("-----BEGIN PRIVATE KEY-----", "mrsec1:k:x")])
            .await
            .unwrap();
        assert_eq!(changed, 1);
        let stale = store
            .replace_secrets(vec![update("-----BEGIN PRIVATE KEY-----", "mrsec1:k:y")])
            .await
            .unwrap();
        assert_eq!(stale, 0, "a stale update changes nothing");
        let keys = store.list_dkim_keys(Some("keys.test")).await.unwrap();
        assert_eq!(keys[0].private_key.as_str(), "mrsec1:k:x");

        assert!(
            store
                .set_dkim_key_state("keys.test", "s2", KeyState::Active, 5, None)
                .await
                .unwrap()
        );
        assert!(
            store
                .set_dkim_key_state("keys.test", "s1", KeyState::Retiring, 5, Some(99))
                .await
                .unwrap()
        );
        let keys = store.list_dkim_keys(None).await.unwrap();
        assert_eq!(keys[1].state, KeyState::Active);
        assert_eq!(keys[1].activated_at, Some(5));
        assert_eq!(keys[0].retire_after, Some(99));

        let check = DomainCheck {
            status: DomainStatus::Verified,
            checked_at: 7,
            result: serde_json::json!({"result": "verified"}),
        };
        assert!(store.record_domain_check("keys.test", check).await.unwrap());
        let parts = ["News".to_string()];
        assert!(
            store
                .set_allowed_local_parts("keys.test", &parts)
                .await
                .unwrap()
        );
        let d = store.get_domain("keys.test").await.unwrap().unwrap();
        assert!(d.verified);
        assert_eq!(d.status, DomainStatus::Verified);
        assert_eq!(d.last_checked_at, Some(7));
        assert_eq!(d.verification_token, "tok123");
        assert_eq!(d.allowed_local_parts, vec!["news".to_string()]);
        assert!(store.get_domain("nope.test").await.unwrap().is_none());

        store
            .insert_tenant_event(
                &t.id,
                EventType::DomainDnsError,
                mailroom_model::DomainDnsErrorDetail {
                    check: serde_json::json!({}),
                    domain: "keys.test".into(),
                }
                .into(),
            )
            .await
            .unwrap();
        let events = store.list_tenant_events(&t.id, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventType::DomainDnsError);
        assert!(events[0].message_id.is_none());
        assert_eq!(
            serde_json::to_value(events[0].kind).unwrap(),
            serde_json::json!("domain.dns_error")
        );
    }
);

/// The events of one recipient of a message, in order.
async fn kinds(store: &DynStore, id: &MessageId, idx: usize) -> Vec<EventType> {
    store.get_message(id).await.unwrap().unwrap().recipients[idx]
        .events
        .iter()
        .map(|e| e.kind)
        .collect()
}

conformance!(
    suppressed_quarantined_cancelled_and_outcomes,
    |store: DynStore| async move {
        use mailroom_store::{Lease, Outcome};
        let tenant = store.create_tenant(new_tenant("acme")).await.unwrap().id;
        // Recipient 1 is on the suppression list: stored `suppressed`, never claimed.
        let mut listed = new_message(&tenant, 1);
        listed.recipients[1].suppressed = Some("bounce".into());
        store.enqueue(listed.clone()).await.unwrap();
        // Held by content protection.
        let mut held = new_message(&tenant, 0);
        held.quarantine = Some(mailroom_model::FilteredDetail {
            reason: "content".into(),
            rules: Vec::new(),
        });
        store.enqueue(held.clone()).await.unwrap();
        assert_eq!(
            kinds(&store, &listed.id, 1).await,
            [EventType::Accepted, EventType::Suppressed]
        );
        assert_eq!(
            kinds(&store, &held.id, 0).await,
            [EventType::Accepted, EventType::Filtered]
        );
        let q = store.list_quarantined(Some(&tenant), 10).await.unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].id, held.id);
        assert_eq!(q[0].recipients, [held.recipients[0].address.clone()]);
        assert_eq!(
            q[0].filter,
            serde_json::json!({ "reason": "content", "rules": [] })
        );
        assert!(
            store
                .list_quarantined(Some(&TenantId::generate()), 10)
                .await
                .unwrap()
                .is_empty()
        );

        let now = now_millis();
        let lease = Lease::new("node", now + 60_000);
        let due = store.claim_due(&lease, now, 100).await.unwrap();
        let mut keys: Vec<(String, i64)> = due
            .iter()
            .map(|d| (d.message_id.to_string(), d.idx))
            .collect();
        keys.sort();
        let mut want = vec![(listed.id.to_string(), 0)];
        want.sort();
        assert_eq!(
            keys, want,
            "only the listed message's first recipient is due"
        );
        assert!(store.claim_due(&lease, now, 100).await.unwrap().is_empty());

        // Released from quarantine: queued and due, with its event; then claimable.
        assert_eq!(store.release_quarantined(&held.id, now).await.unwrap(), 1);
        assert_eq!(store.release_quarantined(&held.id, now).await.unwrap(), 0);
        assert_eq!(
            kinds(&store, &held.id, 0).await,
            [
                EventType::Accepted,
                EventType::Filtered,
                EventType::Released
            ]
        );
        let lease2 = Lease::new("node", now + 60_000);
        let released = store.claim_due(&lease2, now + 1, 100).await.unwrap();
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].message_id, held.id);
        assert_eq!(released[0].lease_token, lease2.token);

        // A hard bounce: bounced, its event, and the address suppressed.
        let bounce = Outcome {
            message_id: due[0].message_id.clone(),
            idx: due[0].idx,
            recipient: due[0].address.clone(),
            tenant_id: tenant.clone(),
            state: RecipientState::Bounced,
            attempted: true,
            next_attempt_at: None,
            last_reply: Some("550 no such user".into()),
            last_mx: Some("mx.example0.net".into()),
            event: EventType::Bounced,
            detail: mailroom_model::AttemptDetail {
                reply: mailroom_model::ReplyDetail {
                    code: Some(550),
                    enhanced: None,
                    text: "550".into(),
                },
                bounce_class: Some(mailroom_model::BounceClass::Hard),
                ..Default::default()
            },
            at: now + 2,
            suppress: true,
            lease_token: due[0].lease_token,
        };
        // A deferral of the released one, in the same call.
        let defer = Outcome {
            message_id: held.id.clone(),
            idx: 0,
            recipient: released[0].address.clone(),
            state: RecipientState::Deferred,
            next_attempt_at: Some(now + 600_000),
            last_reply: Some("451 later".into()),
            event: EventType::Deferred,
            suppress: false,
            lease_token: lease2.token,
            ..bounce.clone()
        };
        let lost = store.record_outcomes(vec![bounce, defer]).await.unwrap();
        assert!(lost.is_empty(), "{lost:?}");
        let view = store.get_message(&listed.id).await.unwrap().unwrap();
        assert_eq!(view.recipients[0].state, RecipientState::Bounced);
        assert_eq!(view.recipients[0].attempts, 1);
        assert_eq!(
            view.recipients[0].last_reply.as_deref(),
            Some("550 no such user")
        );
        assert_eq!(view.recipients[1].state, RecipientState::Suppressed);
        let address = listed.recipients[0].address.to_lowercase();
        let hit = store
            .suppressed_among(&tenant, std::slice::from_ref(&address))
            .await
            .unwrap();
        assert_eq!(hit.get(&address).map(String::as_str), Some("bounce"));
        let view = store.get_message(&held.id).await.unwrap().unwrap();
        assert_eq!(view.recipients[0].state, RecipientState::Deferred);
        assert_eq!(view.recipients[0].next_attempt_at, Some(now + 600_000));

        // Retry now, then cancel: the deferred recipient is cancelled with its event.
        assert_eq!(store.retry_now(&held.id, now + 3).await.unwrap(), 1);
        assert_eq!(store.cancel(&held.id, now + 4).await.unwrap(), 1);
        assert_eq!(store.cancel(&held.id, now + 5).await.unwrap(), 0);
        assert_eq!(
            kinds(&store, &held.id, 0).await.last(),
            Some(&EventType::Cancelled)
        );
        let summary = store.queue_summary().await.unwrap();
        let by_state: HashMap<String, i64> = summary.by_state.into_iter().collect();
        assert_eq!(by_state.get("bounced"), Some(&1));
        assert_eq!(by_state.get("suppressed"), Some(&1));
        assert_eq!(by_state.get("cancelled"), Some(&1));
        assert!(summary.by_domain.is_empty());

        // Leases given back: release_node only touches its own.
        let fresh = new_message(&tenant, 2);
        store.enqueue(fresh.clone()).await.unwrap();
        let mine = store
            .claim_due(&Lease::new("a", now + 60_000), now_millis(), 1)
            .await
            .unwrap();
        let theirs = store
            .claim_due(&Lease::new("b", now + 60_000), now_millis(), 10)
            .await
            .unwrap();
        assert_eq!((mine.len(), theirs.len()), (1, 2));
        assert_eq!(store.release_node("a").await.unwrap(), 1);
        store
            .release("a", vec![(theirs[0].message_id.clone(), theirs[0].idx)])
            .await
            .unwrap();
        let again = store
            .claim_due(&Lease::new("c", now + 60_000), now_millis(), 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1, "only a's recipient is due again");
        assert_eq!(
            (again[0].message_id.clone(), again[0].idx),
            (mine[0].message_id.clone(), mine[0].idx)
        );
        assert_eq!(
            store
                .renew_leases("b", &[theirs[0].lease_token], now + 90_000)
                .await
                .unwrap(),
            2
        );
    }
);

conformance!(
    tracking_unsubscribe_nodes_and_singletons,
    |store: DynStore| async move {
        use mailroom_store::{NewEvent, NodeInfo, Suppression};
        let tenant = store.create_tenant(new_tenant("acme")).await.unwrap().id;
        let m = new_message(&tenant, 0);
        store.enqueue(m.clone()).await.unwrap();
        let address = m.recipients[0].address.clone();
        let event = |kind| NewEvent {
            kind,
            at: now_millis(),
            message_id: m.id.clone(),
            tenant_id: tenant.clone(),
            recipient: Some(address.clone()),
            detail: mailroom_model::TrackingDetail::default().into(),
        };
        store.record_event(event(EventType::Opened)).await.unwrap();
        let s = Suppression {
            tenant_id: tenant.clone(),
            address: address.to_uppercase(),
            reason: "unsubscribe".into(),
            detail: serde_json::json!({}),
            message_id: Some(m.id.clone()),
            created_at: now_millis(),
        };
        store
            .unsubscribe(s.clone(), event(EventType::Unsubscribed))
            .await
            .unwrap();
        store
            .unsubscribe(s, event(EventType::Unsubscribed))
            .await
            .unwrap();
        let kinds: Vec<EventType> = store.get_message(&m.id).await.unwrap().unwrap().recipients[0]
            .events
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                EventType::Accepted,
                EventType::Opened,
                EventType::Unsubscribed,
                EventType::Unsubscribed
            ]
        );
        let hit = store
            .suppressed_among(&tenant, std::slice::from_ref(&address))
            .await
            .unwrap();
        assert_eq!(hit.get(&address).map(String::as_str), Some("unsubscribe"));

        // Node rows: a heartbeat refreshes the row; leased work is counted per node.
        let node = |last_seen| NodeInfo {
            id: "n1".into(),
            started_at: 5,
            last_seen,
            version: "1.0".into(),
            detail: serde_json::json!({ "smtp": "127.0.0.1:2525" }),
        };
        store.heartbeat(&node(10)).await.unwrap();
        store.heartbeat(&node(20)).await.unwrap();
        let now = now_millis();
        let lease = mailroom_store::Lease::new("n1", now + 60_000);
        assert_eq!(store.claim_due(&lease, now, 10).await.unwrap().len(), 1);
        let nodes = store.list_nodes(now).await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!((nodes[0].last_seen, nodes[0].leased_recipients), (20, 1));
        assert_eq!(nodes[0].detail["smtp"], "127.0.0.1:2525");
        assert_eq!(
            store.list_nodes(now + 60_001).await.unwrap()[0].leased_recipients,
            0
        );

        assert!(store.try_singleton("job", "n1", 100, 200).await.unwrap());
        assert!(!store.try_singleton("job", "n2", 150, 250).await.unwrap());
        assert!(store.try_singleton("job", "n2", 201, 300).await.unwrap());
        store.ping().await.unwrap();
    }
);

conformance!(
    a_mixed_batch_of_outcomes_is_recorded_as_one_at_a_time_would,
    |store: DynStore| async move {
        use mailroom_store::{Lease, Outcome};
        let tenant = store.create_tenant(new_tenant("batch")).await.unwrap().id;
        let m1 = new_message(&tenant, 2); // three recipients
        let m2 = new_message(&tenant, 4); // two
        let m3 = new_message(&tenant, 0); // one
        let m4 = new_message(&tenant, 3); // one
        for m in [&m1, &m2, &m3, &m4] {
            store.enqueue(m.clone()).await.unwrap();
        }
        let now = now_millis();
        let lease = Lease::new("node", now + 60_000);
        let due = store.claim_due(&lease, now, 100).await.unwrap();
        assert_eq!(due.len(), 7);
        let find = |id: &MessageId, idx: i64| {
            due.iter()
                .find(|d| &d.message_id == id && d.idx == idx)
                .expect("claimed")
                .clone()
        };
        let outcome = |id: &MessageId, idx: i64, state: RecipientState, event: EventType| {
            let d = find(id, idx);
            Outcome {
                message_id: d.message_id.clone(),
                idx: d.idx,
                recipient: d.address.clone(),
                tenant_id: tenant.clone(),
                state,
                attempted: true,
                next_attempt_at: (state == RecipientState::Deferred).then_some(now + 600_000),
                last_reply: Some(format!("reply for {idx}")),
                last_mx: Some("mx.example.net".into()),
                event,
                detail: mailroom_model::AttemptDetail {
                    attempt: idx,
                    ..Default::default()
                },
                at: now + 1,
                suppress: state == RecipientState::Bounced,
                lease_token: d.lease_token,
            }
        };
        // m2 is cancelled while its recipients are in flight.
        assert_eq!(store.cancel(&m2.id, now).await.unwrap(), 2);
        let mut stale = outcome(&m1.id, 2, RecipientState::Delivered, EventType::Delivered);
        stale.lease_token += 1_000; // a lease this node no longer holds
        let batch = vec![
            outcome(&m1.id, 0, RecipientState::Delivered, EventType::Delivered),
            outcome(&m1.id, 1, RecipientState::Bounced, EventType::Bounced),
            stale,
            // After the cancel a deferral changes nothing (and is not a lost lease)...
            outcome(&m2.id, 0, RecipientState::Deferred, EventType::Deferred),
            // ...but a delivery is a fact.
            outcome(&m2.id, 1, RecipientState::Delivered, EventType::Delivered),
            outcome(&m3.id, 0, RecipientState::Delivered, EventType::Delivered),
            outcome(&m4.id, 0, RecipientState::Deferred, EventType::Deferred),
        ];
        let lost = store.record_outcomes(batch).await.unwrap();
        assert_eq!(lost, vec![(m1.id.clone(), 2)]);

        let states = |v: mailroom_store::MessageView| {
            v.recipients.iter().map(|r| r.state).collect::<Vec<_>>()
        };
        let v1 = store.get_message(&m1.id).await.unwrap().unwrap();
        assert_eq!(v1.recipients[0].last_reply.as_deref(), Some("reply for 0"));
        assert_eq!(v1.recipients[1].attempts, 1);
        assert_eq!(
            states(v1),
            [
                RecipientState::Delivered,
                RecipientState::Bounced,
                RecipientState::Queued
            ]
        );
        let v2 = store.get_message(&m2.id).await.unwrap().unwrap();
        assert_eq!(
            states(v2),
            [RecipientState::Cancelled, RecipientState::Delivered]
        );
        let v3 = store.get_message(&m3.id).await.unwrap().unwrap();
        assert_eq!(states(v3), [RecipientState::Delivered]);
        let v4 = store.get_message(&m4.id).await.unwrap().unwrap();
        assert_eq!(v4.recipients[0].next_attempt_at, Some(now + 600_000));
        assert_eq!(states(v4), [RecipientState::Deferred]);

        // One event per outcome taken, none for the others.
        assert_eq!(
            kinds(&store, &m1.id, 0).await.last(),
            Some(&EventType::Delivered)
        );
        assert_eq!(
            kinds(&store, &m1.id, 1).await.last(),
            Some(&EventType::Bounced)
        );
        assert_eq!(kinds(&store, &m1.id, 2).await, [EventType::Accepted]);
        assert_eq!(
            kinds(&store, &m2.id, 0).await.last(),
            Some(&EventType::Cancelled)
        );
        assert_eq!(
            kinds(&store, &m2.id, 1).await.last(),
            Some(&EventType::Delivered)
        );
        // The hard bounce is suppressed; only the finished message lost its body (m2
        // is final too, but its second recipient asked for failure reports).
        let bounced = m1.recipients[1].address.to_lowercase();
        let hit = store
            .suppressed_among(&tenant, std::slice::from_ref(&bounced))
            .await
            .unwrap();
        assert!(hit.contains_key(&bounced));
        let body = |id: MessageId| {
            let store = store.clone();
            async move { store.load_body(&id).await.unwrap().unwrap_or_default() }
        };
        assert!(body(m3.id.clone()).await.is_empty(), "m3 is final");
        assert!(
            !body(m2.id.clone()).await.is_empty(),
            "m2 keeps it for a DSN"
        );
        assert!(
            !body(m1.id.clone()).await.is_empty(),
            "m1 still has a recipient"
        );
        assert!(!body(m4.id.clone()).await.is_empty(), "m4 is deferred");
    }
);

conformance!(
    requiretls_travels_with_the_message,
    |store: DynStore| async move {
        use mailroom_store::Lease;
        let tenant = store.create_tenant(new_tenant("acme")).await.unwrap().id;
        let mut asked = new_message(&tenant, 0);
        asked.require_tls = true;
        let plain = new_message(&tenant, 3);
        store.enqueue(asked.clone()).await.unwrap();
        store.enqueue(plain.clone()).await.unwrap();
        let now = now_millis() + 1;
        let lease = Lease::new("node-a", now + 60_000);
        let due = store.claim_due(&lease, now, 100).await.unwrap();
        assert_eq!(due.len(), 2);
        for d in &due {
            assert_eq!(d.require_tls, d.message_id == asked.id, "{}", d.message_id);
        }
    }
);
