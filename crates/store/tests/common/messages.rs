//! One builder for the `NewMessage`s the store tests enqueue: `new_message` fills
//! every field with a plain default (received now over SMTP, no lease, a small
//! body from `mail_from`), and a test changes what it is about with struct update
//! syntax (`NewMessage { received_at: at, ..new_message(..) }`).

use mailroom_model::{MessageId, TenantId, now_millis};
use mailroom_store::{NewMessage, NewRecipient};

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
        accepted_detail: serde_json::json!({}),
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
