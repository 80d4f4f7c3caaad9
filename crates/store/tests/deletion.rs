//! Deletions on both backends (SQLite and PostgreSQL, see `common`): a domain goes with
//! its DKIM keys and leaves a `domain.deleted` event (with the queued mail it had)
//! written in the same transaction; accepted messages from it stay queued; the
//! directory version moves so every node's caches drop it.

#[macro_use]
mod common;

use common::tenant;
use mailroom_model::{EventType, TenantId, now_millis};
use mailroom_secrets::Sealed;
use mailroom_store::{DynStore, KeyState, NewDkimKey, NewDomain, NewMessage, NewRecipient};

fn key(domain: &str, selector: &str) -> NewDkimKey {
    NewDkimKey {
        domain: domain.into(),
        selector: selector.into(),
        algorithm: "ed25519".into(),
        private_key: Sealed::from_stored("PEM".into()),
        state: KeyState::Active,
    }
}

fn message(tenant: &TenantId, from: &str, rcpts: usize) -> NewMessage {
    NewMessage {
        body: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
        ..common::new_message(tenant, from, common::recipients(rcpts))
    }
}

conformance!(
    deleting_a_domain_removes_it_and_its_keys_with_an_event,
    |store: DynStore| async move {
        let t = tenant(&store, "acme").await;
        for name in ["acme.test", "other.test"] {
            store
                .add_domain(NewDomain {
                    tenant_id: t.clone(),
                    name: name.into(),
                    verified: true,
                    verification_token: "tok".into(),
                    dkim_keys: vec![key(name, "s1")],
                })
                .await
                .unwrap();
        }
        store.add_dkim_key(key("acme.test", "s2")).await.unwrap();
        // Two recipients from the domain queued, one from the other domain, one
        // from a look-alike (`…@notacme.test` must not count).
        let queued = message(&t, "News@ACME.test", 2);
        store.enqueue(queued.clone()).await.unwrap();
        store.enqueue(message(&t, "a@other.test", 1)).await.unwrap();
        store
            .enqueue(message(&t, "a@notacme.test", 1))
            .await
            .unwrap();
        let before = store.directory_version().await.unwrap();

        let gone = store
            .delete_domain("ACME.test")
            .await
            .unwrap()
            .expect("the domain existed");
        assert_eq!(gone.name, "acme.test");
        assert_eq!(gone.tenant_id, t);
        assert_eq!(gone.dkim_keys, 2);
        assert_eq!(gone.queued_recipients, 2);
        assert_eq!(gone.event.kind, EventType::DomainDeleted);

        assert!(store.get_domain("acme.test").await.unwrap().is_none());
        assert!(
            store
                .list_dkim_keys(Some("acme.test"))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.get_domain("other.test").await.unwrap().is_some());
        assert_eq!(
            store
                .list_dkim_keys(Some("other.test"))
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(store.directory_version().await.unwrap() > before);

        let events = store.list_tenant_events(&t, 10).await.unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventType::DomainDeleted);
        assert_eq!(events[0].id, gone.event.id);
        assert_eq!(events[0].detail["domain"], "acme.test");
        assert_eq!(events[0].detail["dkim_keys"], 2);
        assert_eq!(events[0].detail["queued_recipients"], 2);

        // Accepted mail is not touched: it was signed when it was accepted.
        let view = store.get_message(&queued.id).await.unwrap().expect("kept");
        assert_eq!(view.recipients.len(), 2);

        // Again: nothing to delete, no second event.
        assert!(store.delete_domain("acme.test").await.unwrap().is_none());
        assert!(store.delete_domain("never.test").await.unwrap().is_none());
        assert_eq!(store.list_tenant_events(&t, 10).await.unwrap().len(), 1);
    }
);

async fn everything_for(store: &DynStore, t: &TenantId, domain: &str) {
    use mailroom_model::KeyScope;
    use mailroom_model::{ApiKeyId, CredentialId, WebhookId};
    use mailroom_store::{AllowedIp, NewApiKey, NewCredential, NewWebhook, Suppression};
    store
        .add_domain(NewDomain {
            tenant_id: t.clone(),
            name: domain.into(),
            verified: true,
            verification_token: "tok".into(),
            dkim_keys: vec![key(domain, "s1"), key(domain, "s2")],
        })
        .await
        .unwrap();
    store
        .create_api_key(NewApiKey {
            id: ApiKeyId::generate(),
            tenant_id: t.clone(),
            name: "ci".into(),
            scope: KeyScope::Send,
            secret_hash: format!("secret-of-{domain}"),
        })
        .await
        .unwrap();
    store
        .create_credential(NewCredential {
            id: CredentialId::generate(),
            tenant_id: t.clone(),
            username: format!("smtp-{domain}"),
            password_hash: "x".into(),
        })
        .await
        .unwrap();
    store
        .set_allowed_ips(
            t,
            &[AllowedIp {
                tenant_id: t.clone(),
                cidr: "10.0.0.0/8".into(),
                require_tls: false,
            }],
        )
        .await
        .unwrap();
    store
        .set_sandbox_recipients(t, &["sandbox@example.net".into()])
        .await
        .unwrap();
    store
        .add_suppression(Suppression {
            tenant_id: t.clone(),
            address: "gone@example.net".into(),
            reason: "manual".into(),
            detail: serde_json::json!({}),
            message_id: None,
            created_at: now_millis(),
        })
        .await
        .unwrap();
    store
        .create_webhook(NewWebhook {
            id: WebhookId::generate(),
            tenant_id: t.clone(),
            url: "http://127.0.0.1:9/".into(),
            event_types: None,
            secret: Sealed::from_stored("whsec_test".into()),
        })
        .await
        .unwrap();
    store
        .set_signing_choice(t, None, Some(mailroom_model::Signatures::Rsa))
        .await
        .unwrap();
}

conformance!(
    deleting_a_tenant_removes_what_it_owns_and_cancels_its_queue,
    |store: DynStore| async move {
        let t = tenant(&store, "doomed").await;
        let other = tenant(&store, "kept").await;
        everything_for(&store, &t, "doomed.test").await;
        everything_for(&store, &other, "kept.test").await;
        let queued = message(&t, "a@doomed.test", 2);
        store.enqueue(queued.clone()).await.unwrap();
        let theirs = message(&other, "a@kept.test", 1);
        store.enqueue(theirs.clone()).await.unwrap();
        // The webhook fan-out gives the doomed tenant's webhook deliveries to delete.
        store.fan_out_events(100, now_millis()).await.unwrap();
        let before = store.directory_version().await.unwrap();

        let gone = store
            .delete_tenant(&t, false, now_millis())
            .await
            .unwrap()
            .expect("the tenant existed");
        assert_eq!(gone.name, "doomed");
        assert!(!gone.purged);
        let r = &gone.removed;
        assert_eq!(
            (
                r.api_keys,
                r.smtp_credentials,
                r.allowed_ips,
                r.sandbox_recipients
            ),
            // Its first key (made with the tenant) and "ci".
            (2, 1, 1, 1)
        );
        assert_eq!(
            (r.domains, r.dkim_keys, r.suppressions, r.webhooks),
            (1, 2, 1, 1)
        );
        assert_eq!(r.signing_choices, 1);
        assert_eq!(r.webhook_deliveries, 2, "one per accepted event: {r:?}");
        assert_eq!(r.cancelled_recipients, 2);
        assert_eq!((r.messages, r.events, r.bodies), (0, 0, 0));
        assert!(store.directory_version().await.unwrap() > before);

        assert!(store.get_tenant(&t).await.unwrap().is_none());
        assert!(store.list_api_keys(Some(&t)).await.unwrap().is_empty());
        assert!(store.list_credentials(&t).await.unwrap().is_empty());
        assert!(store.list_domains(Some(&t)).await.unwrap().is_empty());
        assert!(
            store
                .list_dkim_keys(Some("doomed.test"))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.list_webhooks(Some(&t)).await.unwrap().is_empty());
        assert!(
            store
                .list_signing_choices(Some(&t))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .list_suppressions(&t, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let dir = store.load_directory().await.unwrap();
        assert!(format!("{dir:?}").contains("kept.test"));
        assert!(!format!("{dir:?}").contains("doomed.test"));

        // Its message stays, every recipient cancelled with an event saying why.
        let view = store.get_message(&queued.id).await.unwrap().expect("kept");
        assert!(
            view.recipients
                .iter()
                .all(|r| r.state == mailroom_model::RecipientState::Cancelled)
        );
        let events = all_events(&store, Some(&t)).await;
        let cancelled: Vec<_> = events
            .iter()
            .filter(|e| e.kind == EventType::Cancelled)
            .collect();
        assert_eq!(cancelled.len(), 2);
        assert_eq!(cancelled[0].detail["reason"], "tenant_deleted");
        let last = events.last().unwrap();
        assert_eq!(last.kind, EventType::TenantDeleted);
        assert_eq!(last.id, gone.event.id);
        assert_eq!(last.detail["removed"]["domains"], 1);
        assert_eq!(last.detail["tenant_name"], "doomed");

        // The other tenant is untouched.
        assert!(store.get_tenant(&other).await.unwrap().is_some());
        assert_eq!(store.list_api_keys(Some(&other)).await.unwrap().len(), 2);
        assert_eq!(store.list_webhooks(Some(&other)).await.unwrap().len(), 1);
        assert_eq!(
            store.list_dkim_keys(Some("kept.test")).await.unwrap().len(),
            2
        );
        let view = store.get_message(&theirs.id).await.unwrap().unwrap();
        assert_eq!(
            view.recipients[0].state,
            mailroom_model::RecipientState::Queued
        );

        // Again: nothing to delete.
        assert!(
            store
                .delete_tenant(&t, false, now_millis())
                .await
                .unwrap()
                .is_none()
        );
        // The name is free again.
        tenant(&store, "doomed").await;
    }
);

conformance!(
    purging_a_tenant_removes_its_messages_and_events_now,
    |store: DynStore| async move {
        let t = tenant(&store, "doomed").await;
        let other = tenant(&store, "kept").await;
        let mine = message(&t, "a@doomed.test", 3);
        store.enqueue(mine.clone()).await.unwrap();
        let theirs = message(&other, "a@kept.test", 1);
        store.enqueue(theirs.clone()).await.unwrap();

        let gone = store
            .delete_tenant(&t, true, now_millis())
            .await
            .unwrap()
            .unwrap();
        assert!(gone.purged);
        assert_eq!(gone.removed.cancelled_recipients, 3);
        assert_eq!((gone.removed.messages, gone.removed.bodies), (1, 1));
        assert_eq!(gone.removed.events, 3, "three accepted events");
        assert!(store.get_message(&mine.id).await.unwrap().is_none());
        assert!(store.load_body(&mine.id).await.unwrap().is_none());
        // Only the deletion's own event remains.
        let events = all_events(&store, Some(&t)).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventType::TenantDeleted);
        assert_eq!(events[0].detail["purged"], true);
        assert!(store.get_message(&theirs.id).await.unwrap().is_some());
        assert_eq!(all_events(&store, Some(&other)).await.len(), 1);

        // Deleted first, purged later: what it left goes then.
        store
            .delete_tenant(&other, false, now_millis())
            .await
            .unwrap()
            .unwrap();
        let later = store
            .delete_tenant(&other, true, now_millis())
            .await
            .unwrap()
            .expect("its message and events were left");
        assert_eq!(later.name, "kept");
        assert_eq!((later.removed.messages, later.removed.events), (1, 3));
        assert!(store.get_message(&theirs.id).await.unwrap().is_none());
        let events = all_events(&store, Some(&other)).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            store
                .delete_tenant(&other, true, now_millis())
                .await
                .unwrap()
                .is_none()
        );
    }
);

async fn all_events(store: &DynStore, tenant: Option<&TenantId>) -> Vec<mailroom_model::Event> {
    let page = store
        .list_events(&mailroom_store::EventQuery {
            after: 0,
            tenant: tenant.cloned(),
            kinds: vec![],
            recipient: None,
            message_id: None,
            limit: 1000,
        })
        .await
        .unwrap();
    page.events.into_iter().map(|e| e.event).collect()
}

/// A message from `from` to `to` whose body names every recipient in its headers and
/// text (long enough to be stored deflated).
fn addressed(tenant: &TenantId, from: &str, to: &[&str]) -> NewMessage {
    let mut m = message(tenant, from, 0);
    m.recipients = to
        .iter()
        .map(|a| NewRecipient {
            address: a.to_string(),
            domain: a.rsplit('@').next().unwrap().to_lowercase(),
            dsn_notify: Some("FAILURE".into()),
            dsn_orcpt: Some(format!("rfc822;{a}")),
            suppressed: None,
        })
        .collect();
    let text = "Dear customer, your order has shipped. ".repeat(30);
    m.body = format!(
        "From: <{from}>\r\nTo: {}\r\nSubject: hello {}\r\n\r\n{text}\r\nWrite to {} any time.\r\n",
        to.join(", "),
        to[0],
        to[0]
    )
    .into_bytes();
    m.accepted_detail = mailroom_model::AcceptedDetail {
        subject: Some(format!("hello {}", to[0])),
        ..Default::default()
    }
    .into();
    m
}

conformance!(
    erasing_an_address_redacts_it_everywhere_once,
    |store: DynStore| async move {
        use mailroom_store::Suppression;
        let a = tenant(&store, "a").await;
        let b = tenant(&store, "b").await;
        let alice = "Alice.Smith@Example.NET";
        let to_alice = addressed(&a, "news@a.test", &[alice, "bob@example.net"]);
        store.enqueue(to_alice.clone()).await.unwrap();
        let from_alice = addressed(&a, "alice.smith@example.net", &["carol@example.org"]);
        store.enqueue(from_alice.clone()).await.unwrap();
        let in_b = addressed(&b, "news@b.test", &[alice]);
        store.enqueue(in_b.clone()).await.unwrap();
        // A look-alike that must survive.
        let malice = addressed(&a, "news@a.test", &["malice.smith@example.net"]);
        store.enqueue(malice.clone()).await.unwrap();
        for t in [&a, &b] {
            store
                .add_suppression(Suppression {
                    tenant_id: t.clone(),
                    address: "alice.smith@example.net".into(),
                    reason: "manual".into(),
                    detail: serde_json::json!({ "note": "asked by alice.smith@example.net" }),
                    message_id: None,
                    created_at: now_millis(),
                })
                .await
                .unwrap();
        }
        store
            .record_event(mailroom_store::NewEvent {
                kind: EventType::Clicked,
                at: now_millis(),
                message_id: to_alice.id.clone(),
                tenant_id: a.clone(),
                recipient: Some(alice.into()),
                detail: mailroom_model::TrackingDetail {
                    ip: None,
                    machine: None,
                    url: Some("https://shop.test/?e=ALICE.SMITH@example.net".into()),
                    user_agent: None,
                }
                .into(),
            })
            .await
            .unwrap();

        // Within tenant a only.
        let e = store
            .erase_address(" ALICE.smith@example.net ", Some(&a), now_millis())
            .await
            .unwrap();
        let red = mailroom_store::redacted_address("alice.smith@example.net");
        assert_eq!(e.redacted, red);
        assert_eq!(e.address_sha256, mailroom_store::address_sha256(alice));
        let c = &e.counts;
        assert_eq!((c.recipients, c.cancelled), (1, 1), "{c:?}");
        assert_eq!(c.messages, 1, "the one it sent: {c:?}");
        assert_eq!(c.bodies, 2, "{c:?}");
        assert_eq!(c.subjects, 1, "{c:?}");
        // Both accepted events of the message to it (the subject names it), the click.
        assert_eq!(c.events, 3, "{c:?}");
        assert_eq!(c.suppressions, 1, "{c:?}");

        let view = store.get_message(&to_alice.id).await.unwrap().unwrap();
        assert_eq!(view.recipients[0].address, red);
        assert_eq!(
            view.recipients[0].state,
            mailroom_model::RecipientState::Cancelled
        );
        assert_eq!(view.recipients[1].address, "bob@example.net");
        assert_eq!(
            view.recipients[1].state,
            mailroom_model::RecipientState::Queued
        );
        let body =
            String::from_utf8(store.load_body(&to_alice.id).await.unwrap().unwrap()).unwrap();
        assert!(
            !body.to_lowercase().contains("alice.smith@example.net"),
            "{body}"
        );
        assert!(
            body.contains(&format!("To: {red}, bob@example.net")),
            "{body}"
        );
        assert_eq!(view.size, body.len() as i64);
        let sent = store.get_message(&from_alice.id).await.unwrap().unwrap();
        assert_eq!(sent.mail_from, red);
        let body =
            String::from_utf8(store.load_body(&from_alice.id).await.unwrap().unwrap()).unwrap();
        assert!(body.starts_with(&format!("From: <{red}>")), "{body}");
        let look_alike = store.get_message(&malice.id).await.unwrap().unwrap();
        assert_eq!(look_alike.recipients[0].address, "malice.smith@example.net");

        let events = all_events(&store, Some(&a)).await;
        for ev in &events {
            let text = format!("{:?} {}", ev.recipient, ev.detail).to_lowercase();
            assert!(
                !text
                    .replace("malice.smith", "")
                    .contains("alice.smith@example.net"),
                "{ev:?}"
            );
        }
        let erased = events.last().unwrap();
        assert_eq!(erased.kind, EventType::AddressErased);
        assert_eq!(erased.detail["address_sha256"], e.address_sha256);
        assert_eq!(erased.detail["counts"]["recipients"], 1);
        let cancelled = events
            .iter()
            .find(|ev| ev.kind == EventType::Cancelled)
            .expect("a cancelled event");
        assert_eq!(cancelled.recipient.as_deref(), Some(red.as_str()));
        assert_eq!(cancelled.detail["reason"], "address_erased");
        assert!(
            store
                .get_suppression(&a, "alice.smith@example.net")
                .await
                .unwrap()
                .is_none()
        );

        // Tenant b still has everything.
        assert!(
            store
                .get_suppression(&b, "alice.smith@example.net")
                .await
                .unwrap()
                .is_some()
        );
        let theirs = store.get_message(&in_b.id).await.unwrap().unwrap();
        assert_eq!(theirs.recipients[0].address, alice);

        // Everywhere: tenant b's part now; a second time finds nothing.
        let e = store
            .erase_address(alice, None, now_millis())
            .await
            .unwrap();
        assert_eq!(
            (e.counts.recipients, e.counts.suppressions, e.counts.bodies),
            (1, 1, 1)
        );
        assert!(e.event.tenant_id.is_none());
        let again = store
            .erase_address(alice, None, now_millis())
            .await
            .unwrap();
        assert_eq!(again.counts.total(), 0, "{:?}", again.counts);
        let everything = format!("{:?}", all_events(&store, None).await).to_lowercase();
        assert!(
            !everything
                .replace("malice.smith", "")
                .contains("alice.smith@example.net")
        );
        let theirs = store.get_message(&in_b.id).await.unwrap().unwrap();
        assert_eq!(theirs.recipients[0].address, red);
    }
);
