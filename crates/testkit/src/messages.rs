//! One builder for the `NewMessage`s and `Outcome`s tests hand to a store:
//! [`new_message`] fills every field with a plain default (received now over SMTP, no
//! lease, a small body from `mail_from`), and a test changes what it is about with
//! struct update syntax (`NewMessage { received_at: at, ..new_message(..) }`).
//! [`delivered_message`] is the common start of bounce and complaint tests: a message
//! stored under a lease and delivered to each recipient.

use mailroom_model::{EventType, MessageId, RecipientState, TenantId, now_millis};
use mailroom_store::{DynStore, Lease, NewMessage, NewRecipient, Outcome};

/// A message of `tenant` from `mail_from` to `recipients`: a fresh id, received now
/// over SMTP, body `From: <mail_from>` and `hi`, nothing else set.
pub fn new_message(
    tenant: &TenantId,
    mail_from: &str,
    recipients: Vec<NewRecipient>,
) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        tenant_id: tenant.clone(),
        mail_from: mail_from.into(),
        rfc_message_id: None,
        received_at: now_millis(),
        source: "smtp",
        client_ip: None,
        dsn_ret: None,
        dsn_envid: None,
        smtputf8: false,
        require_tls: false,
        body: format!("From: {mail_from}\r\n\r\nhi\r\n").into_bytes(),
        recipients,
        accepted_detail: mailroom_model::AcceptedDetail::default().into(),
        lease: None,
        idempotency: None,
        meta: None,
        return_path: None,
        quarantine: None,
    }
}

/// A recipient at `address` (its domain lowercased), no DSN request, not suppressed.
pub fn recipient(address: &str) -> NewRecipient {
    NewRecipient {
        address: address.into(),
        domain: address
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default(),
        dsn_notify: None,
        dsn_orcpt: None,
        suppressed: None,
    }
}

/// `n` recipients `r0@example.net`, `r1@example.net`, ….
pub fn recipients(n: usize) -> Vec<NewRecipient> {
    (0..n)
        .map(|i| recipient(&format!("r{i}@example.net")))
        .collect()
}

/// A lease held by owner `test` with fencing token `token`, for a minute from now:
/// a message enqueued with it is stored already claimed (as the hand-off does).
pub fn lease(token: i64) -> Lease {
    Lease {
        owner: "test".into(),
        token,
        until: now_millis() + 60_000,
    }
}

/// The outcome of an attempt on recipient `idx` of `m` under lease `token`: its event
/// follows `state` (delivered, deferred a minute, anything else bounced), no reply
/// text beyond `250 ok` for a delivery, nothing suppressed.
pub fn outcome(m: &NewMessage, idx: i64, state: RecipientState, token: i64) -> Outcome {
    Outcome {
        message_id: m.id.clone(),
        idx,
        recipient: m.recipients[idx as usize].address.clone(),
        tenant_id: m.tenant_id.clone(),
        state,
        attempted: true,
        next_attempt_at: (state == RecipientState::Deferred).then(|| now_millis() + 60_000),
        last_reply: Some(
            match state {
                RecipientState::Delivered => "250 ok",
                RecipientState::Deferred => "451 4.3.0 try later",
                _ => "550 5.1.1 no such user",
            }
            .into(),
        ),
        last_mx: None,
        event: match state {
            RecipientState::Delivered => EventType::Delivered,
            RecipientState::Deferred => EventType::Deferred,
            _ => EventType::Bounced,
        },
        detail: Default::default(),
        at: now_millis(),
        suppress: false,
        lease_token: token,
    }
}

/// Stores a message of `tenant` from `app@acme.test` to each of `to` with
/// `return_path` (the VERP domain), under a lease, and records every recipient
/// delivered: what a DSN, an ARF report or a bounce through intake then refers to.
pub async fn delivered_message(
    store: &DynStore,
    tenant: &TenantId,
    to: &[&str],
    return_path: Option<&str>,
) -> MessageId {
    const TOKEN: i64 = 7;
    let m = NewMessage {
        lease: Some(lease(TOKEN)),
        return_path: return_path.map(Into::into),
        ..new_message(
            tenant,
            "app@acme.test",
            to.iter().map(|a| recipient(a)).collect(),
        )
    };
    let outcomes = (0..to.len() as i64)
        .map(|idx| outcome(&m, idx, RecipientState::Delivered, TOKEN))
        .collect();
    let id = m.id.clone();
    store.enqueue(m).await.expect("enqueue");
    let lost = store.record_outcomes(outcomes).await.expect("outcomes");
    assert!(lost.is_empty(), "the lease was ours: {lost:?}");
    id
}
