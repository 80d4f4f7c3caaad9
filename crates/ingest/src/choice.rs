//! The signature choices in memory (tenant-wide and per domain, see
//! `mailroom_model::Signatures`), loaded with the keys by the signer, and the check
//! for `none`: whether a message already carries a DKIM signature for its domain (it
//! then passes through without any change to its body).

use mailroom_model::{Signatures, TenantId};
use mailroom_store::SigningChoiceRecord;
use std::collections::HashMap;

/// Tenant → its tenant-wide choice and its domains' own choices.
#[derive(Debug, Default)]
pub struct Choices {
    tenants: HashMap<TenantId, (Option<Signatures>, HashMap<String, Signatures>)>,
}

impl Choices {
    pub fn from_records(records: Vec<SigningChoiceRecord>) -> Self {
        let mut tenants: HashMap<TenantId, (Option<Signatures>, HashMap<String, Signatures>)> =
            HashMap::new();
        for r in records {
            let entry = tenants.entry(r.tenant_id).or_default();
            match r.domain {
                None => entry.0 = Some(r.signatures),
                Some(d) => {
                    entry.1.insert(d.to_ascii_lowercase(), r.signatures);
                }
            }
        }
        Self { tenants }
    }

    /// The domain's choice, else the tenant's, else the default (`ed25519+rsa`).
    pub fn get(&self, tenant: &TenantId, domain: &str) -> Signatures {
        let Some((all, domains)) = self.tenants.get(tenant) else {
            return Signatures::default();
        };
        domains
            .get(&domain.to_ascii_lowercase())
            .copied()
            .or(*all)
            .unwrap_or_default()
    }
}

/// Whether the header section has a `DKIM-Signature:` whose `d=` tag is `domain`
/// (case-insensitive). Folded lines are joined; other tags are not checked (the
/// receiver verifies the signature, Mailroom only leaves it intact).
pub fn signed_for(message: &[u8], domain: &str) -> bool {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2);
    let header = &message[..end];
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in header.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.first() {
            Some(b' ' | b'\t') => {
                if let Some(last) = fields.last_mut() {
                    last.extend_from_slice(line);
                }
            }
            Some(_) => fields.push(line.to_vec()),
            None => {}
        }
    }
    const NAME: &[u8] = b"dkim-signature:";
    fields.iter().any(|f| {
        f.len() > NAME.len()
            && f[..NAME.len()].eq_ignore_ascii_case(NAME)
            && f[NAME.len()..].split(|&b| b == b';').any(|tag| {
                let tag: Vec<u8> = tag
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                tag.len() > 2
                    && tag[..2].eq_ignore_ascii_case(b"d=")
                    && tag[2..].eq_ignore_ascii_case(domain.as_bytes())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(t: &TenantId, d: Option<&str>, s: Signatures) -> SigningChoiceRecord {
        SigningChoiceRecord {
            tenant_id: t.clone(),
            domain: d.map(str::to_string),
            signatures: s,
            updated_at: 1,
        }
    }

    #[test]
    fn domain_wins_over_tenant_over_default() {
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let c = Choices::from_records(vec![
            record(&a, None, Signatures::Rsa),
            record(&a, Some("Own.Example"), Signatures::None),
        ]);
        assert_eq!(c.get(&a, "own.example"), Signatures::None);
        assert_eq!(c.get(&a, "other.example"), Signatures::Rsa);
        assert_eq!(c.get(&b, "own.example"), Signatures::Ed25519Rsa);
    }

    #[test]
    fn finds_a_signature_for_the_domain_only() {
        let m = b"DKIM-Signature: v=1; a=rsa-sha256;\r\n\td=Example.COM; s=sel; b=abc\r\nFrom: a@example.com\r\n\r\nd=example.com\r\n";
        assert!(signed_for(m, "example.com"));
        assert!(!signed_for(m, "other.example"));
        let other = b"DKIM-Signature: v=1; d=sub.example.com; s=x\r\n\r\n";
        assert!(!signed_for(other, "example.com"));
        let in_body = b"From: a@example.com\r\n\r\nDKIM-Signature: d=example.com;\r\n";
        assert!(!signed_for(in_body, "example.com"));
        let x = b"X-DKIM-Signature: d=example.com\r\n\r\n";
        assert!(!signed_for(x, "example.com"));
    }
}
