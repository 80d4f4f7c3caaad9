//! What the deletion role returns (domain, tenant, erasure) and the redaction an erased
//! address is replaced by. The redaction is a pure function of the address, so both
//! backends and every node write the same text, and a second erasure finds nothing.

use mailroom_model::{Event, TenantId};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What deleting a sending domain removed (see [`crate::DeletionStore::delete_domain`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DomainDeletion {
    pub name: String,
    pub tenant_id: TenantId,
    /// DKIM keys deleted with it (their private keys are gone).
    pub dkim_keys: u64,
    /// Recipients of the tenant's messages from this domain still waiting for delivery
    /// (queued or deferred) at the time: they are delivered as they are (already signed).
    pub queued_recipients: u64,
    /// The `domain.deleted` event written with the deletion.
    pub event: Event,
}

/// Rows removed (or, for `cancelled_recipients`, changed) by a tenant deletion.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TenantRemoved {
    pub api_keys: u64,
    pub smtp_credentials: u64,
    pub allowed_ips: u64,
    pub sandbox_recipients: u64,
    pub domains: u64,
    pub dkim_keys: u64,
    pub suppressions: u64,
    pub webhooks: u64,
    pub webhook_deliveries: u64,
    pub signing_choices: u64,
    pub console_sessions: u64,
    pub idempotency_keys: u64,
    /// Recipients that were queued, deferred or quarantined: now `cancelled`, each with
    /// a `cancelled` event (`detail.reason`: `tenant_deleted`). One in flight at that
    /// moment is still recorded as delivered if its attempt succeeds.
    pub cancelled_recipients: u64,
    /// With `purge`: the tenant's messages (with recipients and bodies) and events.
    pub messages: u64,
    pub bodies: u64,
    pub events: u64,
}

/// What deleting a tenant did (see [`crate::DeletionStore::delete_tenant`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TenantDeletion {
    pub tenant_id: TenantId,
    pub name: String,
    pub purged: bool,
    pub removed: TenantRemoved,
    /// The `tenant.deleted` event (kept even with `purge`).
    pub event: Event,
}

/// Rows an erasure changed, per kind (see [`crate::DeletionStore::erase_address`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErasureCounts {
    /// Recipient rows whose address (and ORCPT, last reply) now hold the redaction.
    pub recipients: u64,
    /// Of those, recipients still waiting (queued, deferred, quarantined): cancelled.
    pub cancelled: u64,
    /// Messages whose envelope sender, Return-Path or metadata named the address.
    pub messages: u64,
    /// Stored bodies (headers included) where it appeared.
    pub bodies: u64,
    /// Subjects kept for search where it appeared.
    pub subjects: u64,
    /// Events (recipient, detail: replies, tracking, unsubscribes) where it appeared.
    pub events: u64,
    /// Webhook deliveries still pending for those events: they send the redacted event.
    pub webhook_deliveries: u64,
    pub suppressions: u64,
    pub sandbox_recipients: u64,
    /// Stored idempotent replies that named it (deleted: the key may be reused).
    pub idempotency_keys: u64,
}

impl ErasureCounts {
    pub fn total(&self) -> u64 {
        self.recipients
            + self.messages
            + self.bodies
            + self.subjects
            + self.events
            + self.suppressions
            + self.sandbox_recipients
            + self.idempotency_keys
    }
}

/// What an erasure did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Erasure {
    /// Lowercase hex SHA-256 of the lowercased address: how the event names it.
    pub address_sha256: String,
    /// The text that replaced it everywhere.
    pub redacted: String,
    /// The tenant it was limited to (`None`: every tenant).
    pub tenant_id: Option<TenantId>,
    pub counts: ErasureCounts,
    /// The `address.erased` event.
    pub event: Event,
}

/// Lowercase hex SHA-256 of the lowercased (trimmed) address.
pub fn address_sha256(address: &str) -> String {
    let digest = Sha256::digest(address.trim().to_lowercase().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an erased address becomes: `erased-<first 16 hex digits of its SHA-256>@erased.invalid`
/// (a valid address in a reserved domain, so code that splits addresses keeps working,
/// and one that tells erased recipients of one message apart).
pub fn redacted_address(address: &str) -> String {
    format!("erased-{}@erased.invalid", &address_sha256(address)[..16])
}

/// Whether `b` continues a local part to the left (so `malice@x` and `x+alice@x` do
/// not contain `alice@x`). Only the characters common in addresses count: `=`, `/`,
/// `?`, `&` and the like end one, as in `?email=alice@x` (erasing errs on the side of
/// redacting more).
fn local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b) || b >= 0x80
}

/// Whether the text at `rest` continues a domain (so `a@x.net` is not found in
/// `a@x.net.uk` or `a@x.network`).
fn continues_domain(rest: &[u8]) -> bool {
    match rest {
        [b, ..] if b.is_ascii_alphanumeric() || *b == b'-' || *b >= 0x80 => true,
        [b'.', b, ..] => b.is_ascii_alphanumeric(),
        _ => false,
    }
}

/// Replaces every ASCII-case-insensitive occurrence of the address `needle`
/// (lowercase) in `hay` that stands alone (not inside a longer address); `None` when
/// there is none.
pub(crate) fn redact_bytes(hay: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    let mut found = false;
    while i < hay.len() {
        let end = i + needle.len();
        if end <= hay.len()
            && hay[i..end].eq_ignore_ascii_case(needle)
            && (i == 0 || !local_char(hay[i - 1]))
            && !continues_domain(&hay[end..])
        {
            out.extend_from_slice(with);
            i += needle.len();
            found = true;
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    found.then_some(out)
}

/// [`redact_bytes`] on text.
pub(crate) fn redact_text(hay: &str, needle: &str, with: &str) -> Option<String> {
    redact_bytes(hay.as_bytes(), needle.as_bytes(), with.as_bytes())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// A `LIKE` pattern matching text that contains `needle` (`\` escapes).
pub(crate) fn like_contains(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_is_case_insensitive_and_stable() {
        let r = redacted_address("Alice@Example.NET");
        assert_eq!(r, redacted_address(" alice@example.net "));
        assert!(r.starts_with("erased-") && r.ends_with("@erased.invalid"));
        let out = redact_text(
            "To: <ALICE@example.net>, alice@example.net.uk, malice@example.net, alice@example.net., ?e=alice@example.net&x",
            "alice@example.net",
            "X",
        )
        .unwrap();
        assert_eq!(
            out,
            "To: <X>, alice@example.net.uk, malice@example.net, X., ?e=X&x"
        );
        assert!(redact_text("nothing here", "alice@example.net", "X").is_none());
        assert_eq!(like_contains("a_b%c@d"), "%a\\_b\\%c@d%");
    }
}
