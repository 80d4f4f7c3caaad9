//! The in-memory directory: indexes over one consistent snapshot of tenants,
//! credentials, API keys, allowlists and domains.

use ipnet::IpNet;
use mailroom_model::{ApiKeyId, TenantId};
use mailroom_store::{ApiKeyRecord, CredentialRecord, DirectorySnapshot, TenantRecord};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

#[derive(Debug, Default)]
pub struct Directory {
    tenants: HashMap<TenantId, TenantRecord>,
    /// API key secret digest → (key, when this secret stops working).
    key_secrets: HashMap<String, (ApiKeyId, Option<i64>)>,
    api_keys: HashMap<ApiKeyId, ApiKeyRecord>,
    credentials: HashMap<String, CredentialRecord>,
    /// (network, tenant, TLS required), most specific prefix first.
    allowlist: Vec<(IpNet, TenantId, bool)>,
    /// domain name → (tenant, verified, allowed local parts (empty: any))
    domains: HashMap<String, (TenantId, bool, Vec<String>)>,
    /// (tenant, lowercased address) a sandboxed tenant may send to.
    sandbox: HashSet<(TenantId, String)>,
}

impl Directory {
    pub fn build(s: DirectorySnapshot) -> Self {
        let mut allowlist: Vec<(IpNet, TenantId, bool)> = s
            .allowed_ips
            .into_iter()
            .filter_map(|a| {
                a.cidr
                    .parse::<IpNet>()
                    .ok()
                    .map(|net| (net.trunc(), a.tenant_id, a.require_tls))
            })
            .collect();
        allowlist.sort_by_key(|(net, _, _)| std::cmp::Reverse(net.prefix_len()));
        Self {
            key_secrets: s
                .api_key_secrets
                .into_iter()
                .map(|k| (k.hash, (k.key_id, k.expires_at)))
                .collect(),
            api_keys: s.api_keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
            tenants: s.tenants.into_iter().map(|t| (t.id.clone(), t)).collect(),
            credentials: s
                .credentials
                .into_iter()
                .map(|c| (c.username.clone(), c))
                .collect(),
            allowlist,
            domains: s
                .domains
                .into_iter()
                .map(|d| (d.name, (d.tenant_id, d.verified, d.allowed_local_parts)))
                .collect(),
            sandbox: s.sandbox_recipients.into_iter().collect(),
        }
    }

    pub fn tenant(&self, id: &TenantId) -> Option<&TenantRecord> {
        self.tenants.get(id)
    }

    /// Every tenant, in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = &TenantRecord> {
        self.tenants.values()
    }

    /// The API key with a secret of this digest that still works at `now`, and its
    /// tenant. A retiring secret stops working at its expiry without a reload.
    pub fn api_key_by_hash(&self, hash: &str, now: i64) -> Option<(&ApiKeyRecord, &TenantRecord)> {
        let (id, expires_at) = self.key_secrets.get(hash)?;
        if expires_at.is_some_and(|t| t <= now) {
            return None;
        }
        let key = self.api_keys.get(id)?;
        Some((key, self.tenants.get(&key.tenant_id)?))
    }

    /// Whether the key exists in this snapshot.
    pub fn has_api_key(&self, id: &ApiKeyId) -> bool {
        self.api_keys.contains_key(id)
    }

    pub fn credential(&self, username: &str) -> Option<&CredentialRecord> {
        self.credentials.get(username)
    }

    /// The most specific allowlist entry containing `ip`: (tenant, TLS required).
    pub fn allowlist_match(&self, ip: IpAddr) -> Option<(&TenantId, bool)> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allowlist
            .iter()
            .find(|(net, _, _)| net.contains(&ip))
            .map(|(_, t, tls)| (t, *tls))
    }

    /// Whether a sandboxed `tenant` may send to `address`: it is on the tenant's
    /// sandbox recipient list, or at one of its verified domains.
    pub fn sandbox_allows(&self, tenant: &TenantId, address: &str, domain: &str) -> bool {
        self.sandbox
            .contains(&(tenant.clone(), address.to_lowercase()))
            || self.sender_domain_allowed(tenant, domain)
    }

    /// A verified domain of `tenant` equal to `domain` or a parent of it.
    pub fn sender_domain_allowed(&self, tenant: &TenantId, domain: &str) -> bool {
        self.sending_domain(tenant, domain).is_some()
    }

    /// Whether `local` may send at `domain`: the domain is allowed (see
    /// [`Self::sender_domain_allowed`]) and the owning domain record either lists no
    /// local parts or lists this one (compared lowercased).
    pub fn sender_address_allowed(&self, tenant: &TenantId, local: &str, domain: &str) -> bool {
        match self.sending_domain(tenant, domain) {
            Some((_, parts)) => {
                parts.is_empty() || parts.iter().any(|p| p.eq_ignore_ascii_case(local))
            }
            None => false,
        }
    }

    /// The verified domain record of `tenant` that covers `domain` (itself or the
    /// nearest parent with a record): its name and allowed local parts.
    pub fn sending_domain(&self, tenant: &TenantId, domain: &str) -> Option<(&str, &[String])> {
        let mut candidate = domain;
        loop {
            if let Some((name, (owner, verified, parts))) = self.domains.get_key_value(candidate) {
                return (owner == tenant && *verified).then_some((name.as_str(), parts.as_slice()));
            }
            match candidate.split_once('.') {
                Some((_, parent)) if parent.contains('.') => candidate = parent,
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_model::KeyScope;
    use mailroom_store::{AllowedIp, ApiKeySecret, DomainRecord};

    /// The same tenant and name always give the same key id (for the fixture).
    fn key(tenant: &TenantId, name: &str, scope: KeyScope) -> ApiKeyRecord {
        ApiKeyRecord {
            id: ApiKeyId::from_stored(format!("{}-{name}", tenant.as_str())),
            tenant_id: tenant.clone(),
            name: name.into(),
            scope,
            created_at: 0,
            last_used_at: None,
            rotated_at: None,
            previous_secret_expires_at: None,
        }
    }

    fn tenant(id: &TenantId, name: &str) -> TenantRecord {
        TenantRecord {
            id: id.clone(),
            name: name.into(),
            api_key_hash: format!("hash-{name}"),
            created_at: 0,
            bounce_reports: true,
            status: Default::default(),
            sandbox: false,
            reject_suppressed: false,
            limits: Default::default(),
            arc_sealing: true,
            track_opens: false,
            track_clicks: false,
            list_unsubscribe: false,
            content_score_threshold: None,
            has_suppressions: false,
        }
    }

    #[test]
    fn domains_allowlists_and_keys() {
        let a = TenantId::generate();
        let b = TenantId::generate();
        let dir = Directory::build(DirectorySnapshot {
            tenants: vec![tenant(&a, "a"), tenant(&b, "b")],
            credentials: vec![],
            allowed_ips: vec![
                AllowedIp {
                    tenant_id: a.clone(),
                    cidr: "127.0.0.0/8".into(),
                    require_tls: false,
                },
                AllowedIp {
                    tenant_id: b.clone(),
                    cidr: "127.0.0.2/32".into(),
                    require_tls: true,
                },
            ],
            domains: vec![
                DomainRecord {
                    name: "a.test".into(),
                    tenant_id: a.clone(),
                    verified: true,
                    created_at: 0,
                    status: mailroom_store::DomainStatus::Verified,
                    verification_token: String::new(),
                    last_checked_at: None,
                    last_check: None,
                    allowed_local_parts: vec![],
                },
                DomainRecord {
                    name: "pending.test".into(),
                    tenant_id: a.clone(),
                    verified: false,
                    created_at: 0,
                    status: mailroom_store::DomainStatus::Pending,
                    verification_token: String::new(),
                    last_checked_at: None,
                    last_check: None,
                    allowed_local_parts: vec![],
                },
                DomainRecord {
                    name: "only.test".into(),
                    tenant_id: a.clone(),
                    verified: true,
                    created_at: 0,
                    status: mailroom_store::DomainStatus::Verified,
                    verification_token: String::new(),
                    last_checked_at: None,
                    last_check: None,
                    allowed_local_parts: vec!["news".into()],
                },
                DomainRecord {
                    name: "b.test".into(),
                    tenant_id: b.clone(),
                    verified: true,
                    created_at: 0,
                    status: mailroom_store::DomainStatus::Verified,
                    verification_token: String::new(),
                    last_checked_at: None,
                    last_check: None,
                    allowed_local_parts: vec![],
                },
            ],
            sandbox_recipients: vec![(b.clone(), "friend@example.net".into())],
            api_keys: vec![key(&b, "ci", KeyScope::Send)],
            api_key_secrets: vec![
                ApiKeySecret {
                    hash: "hash-b".into(),
                    key_id: key(&b, "ci", KeyScope::Send).id,
                    expires_at: None,
                },
                ApiKeySecret {
                    hash: "old-hash-b".into(),
                    key_id: key(&b, "ci", KeyScope::Send).id,
                    expires_at: Some(1_000),
                },
                ApiKeySecret {
                    hash: "orphan".into(),
                    key_id: ApiKeyId::generate(),
                    expires_at: None,
                },
            ],
        });
        assert!(dir.sandbox_allows(&b, "Friend@Example.net", "example.net"));
        assert!(dir.sandbox_allows(&b, "x@b.test", "b.test"));
        assert!(!dir.sandbox_allows(&a, "friend@example.net", "example.net"));
        assert!(dir.sender_domain_allowed(&a, "a.test"));
        assert!(dir.sender_domain_allowed(&a, "mail.a.test"));
        assert!(!dir.sender_domain_allowed(&a, "b.test"));
        assert!(!dir.sender_domain_allowed(&a, "pending.test"));
        assert!(!dir.sender_domain_allowed(&a, "other.test"));
        assert!(!dir.sender_domain_allowed(&a, "test"));
        assert!(dir.sender_address_allowed(&a, "anyone", "a.test"));
        assert!(dir.sender_address_allowed(&a, "News", "only.test"));
        assert!(!dir.sender_address_allowed(&a, "billing", "only.test"));
        assert!(!dir.sender_address_allowed(&a, "news", "b.test"));
        assert_eq!(
            dir.allowlist_match("127.0.0.2".parse().unwrap()),
            Some((&b, true))
        );
        assert_eq!(
            dir.allowlist_match("127.0.0.3".parse().unwrap()),
            Some((&a, false))
        );
        assert_eq!(
            dir.allowlist_match("::ffff:127.0.0.3".parse().unwrap()),
            Some((&a, false))
        );
        assert_eq!(dir.allowlist_match("10.0.0.1".parse().unwrap()), None);
        let found = dir
            .api_key_by_hash("hash-b", 5_000)
            .map(|(k, t)| (k.scope, &t.id));
        assert_eq!(found, Some((KeyScope::Send, &b)));
        // The retiring secret works until its expiry, not at or after it.
        assert!(dir.api_key_by_hash("old-hash-b", 999).is_some());
        assert!(dir.api_key_by_hash("old-hash-b", 1_000).is_none());
        assert!(dir.api_key_by_hash("orphan", 0).is_none());
        assert!(dir.api_key_by_hash("hash-a", 0).is_none());
    }
}
