//! The last step of ingest before the durable enqueue: ARC sealing of passed-on mail
//! (when it already carries DKIM-Signature/ARC headers and the operator configured a
//! sealing key) and DKIM signing with the sending domain's keys, plus the return-path
//! domain the delivery side rewrites the envelope sender to (VERP, see
//! `mailroom_delivery::verp`).
//!
//! Keys are held in memory ([`Signer`]), loaded from the store at start and reloaded
//! after every change (a domain added, a key rotated, activated or retired), so the
//! hot path never queries the database; changes made through other nodes are picked
//! up by the policy refresher through [`SigningKeys`]. Owns no key lifecycle: that is
//! the API and the background domain checker.
//!
//! Which keys sign follows the tenant's or domain's choice of signatures (`choice.rs`):
//! keys of the other algorithm are skipped, `none` signs and seals nothing. The
//! signature itself is computed on the signer threads (`sign_pool.rs`), so an RSA-2048
//! operation (a quarter of a millisecond) never holds up the sessions sharing a
//! reactor thread.

use crate::choice::Choices;
use crate::sign_pool::SignPool;
use crate::store::KeySource;
use mailroom_auth::{ArcSealKey, Authenticator, DkimKey, KeyAlgorithm, SmtpContext};
use mailroom_model::{Signatures, TenantId};
use mailroom_secrets::{Keyring, dkim_context};
use mailroom_store::{DkimKeyRecord, DomainStore, StoreError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// The operator's ARC sealer: the signing domain and selector of `key` (RSA) and
/// the authenticator that checks what the message already carries.
pub struct ArcSealer {
    pub domain: String,
    pub selector: String,
    pub key: DkimKey,
    pub authenticator: Authenticator,
    /// The `authserv-id` in `ARC-Authentication-Results` (this host's name).
    pub authserv_id: String,
}

/// Domain → (selector, key) of its signing keys.
type KeyMap = HashMap<String, Vec<(String, Arc<DkimKey>)>>;

/// Signing keys by domain (active and retiring keys only), and the sealer.
pub struct Signer {
    keys: RwLock<Arc<KeyMap>>,
    /// Which signatures each tenant and domain wants (reloaded with the keys).
    choices: RwLock<Arc<Choices>>,
    /// Orders overlapping reloads (see `mailroom_policy::Generations`).
    generations: mailroom_policy::Generations,
    /// Label of the return-path subdomain (`bounces`); `None`: no VERP rewriting.
    return_path_label: Option<String>,
    arc: Option<ArcSealer>,
    /// Opens the stored (sealed) private keys; shared with the domain lifecycle,
    /// which seals new keys with it.
    keyring: Arc<Keyring>,
    /// Where signatures are computed.
    pool: SignPool,
}

impl Default for Signer {
    /// No keys yet, VERP on, no ARC, and a keyring of its own (tests).
    fn default() -> Self {
        Self::new(Some("bounces".into()), None, Arc::new(Keyring::ephemeral()))
    }
}

/// What signing did, for the `accepted` event and the log.
#[derive(Debug, Default, Clone)]
pub struct Signed {
    pub body: Vec<u8>,
    /// Selectors that signed.
    pub selectors: Vec<String>,
    /// The ARC set was added (and the result of our checks recorded in it).
    pub arc_sealed: bool,
    /// The checks' `Authentication-Results` text, when the message was sealed.
    pub auth_results: Option<String>,
}

impl Signer {
    pub fn new(
        return_path_label: Option<String>,
        arc: Option<ArcSealer>,
        keyring: Arc<Keyring>,
    ) -> Self {
        Self {
            keys: RwLock::new(Arc::new(HashMap::new())),
            choices: RwLock::new(Arc::new(Choices::default())),
            generations: Default::default(),
            return_path_label,
            arc,
            keyring,
            pool: SignPool::default(),
        }
    }

    /// The keyring that seals and opens DKIM private keys.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Opens a stored key record's private key and parses it.
    pub fn open_key(&self, k: &DkimKeyRecord) -> Result<DkimKey, String> {
        let pem = self
            .keyring
            .open_str(&dkim_context(&k.domain, &k.selector), &k.private_key)
            .map_err(|e| e.to_string())?;
        DkimKey::from_pem(&pem).map_err(|e| e.to_string())
    }

    /// Re-reads the keys from the store. Keys that do not parse are skipped (and
    /// logged): the domain then sends with what is left, or unsigned.
    /// Overlapping reloads install in the order they started.
    pub async fn reload(&self, store: &dyn DomainStore) -> Result<(), StoreError> {
        let ticket = self.generations.begin();
        let records = store.list_dkim_keys(None).await?;
        self.install(ticket, records, None);
        Ok(())
    }

    /// [`Self::reload`] from a [`KeySource`] (the refresher's cache), and the
    /// signature choices with the keys.
    pub async fn reload_from(&self, store: &dyn KeySource) -> Result<(), StoreError> {
        let ticket = self.generations.begin();
        let records = store.list_dkim_keys(None).await?;
        let choices = store.list_signing_choices(None).await?;
        self.install(ticket, records, Some(Choices::from_records(choices)));
        Ok(())
    }

    /// The signatures `tenant` wants on mail from `domain`.
    pub fn choice(&self, tenant: &TenantId, domain: &str) -> Signatures {
        self.choices
            .read()
            .expect("signer lock")
            .get(tenant, domain)
    }

    /// Installs the keys (and the choices, when given) unless a later reload did.
    fn install(&self, ticket: u64, records: Vec<DkimKeyRecord>, choices: Option<Choices>) {
        let mut map = KeyMap::new();
        for k in records {
            if !k.state.signs() {
                continue;
            }
            match self.open_key(&k) {
                Ok(key) => map
                    .entry(k.domain.clone())
                    .or_default()
                    .push((k.selector.clone(), Arc::new(key))),
                Err(e) => {
                    tracing::error!(domain = %k.domain, selector = %k.selector, error = %e, "stored DKIM key does not load; not signing with it");
                }
            }
        }
        self.generations.install(ticket, || {
            *self.keys.write().expect("signer lock") = Arc::new(map);
            if let Some(choices) = choices {
                *self.choices.write().expect("signer lock") = Arc::new(choices);
            }
        });
    }

    /// Selectors currently signing for `domain`.
    pub fn selectors(&self, domain: &str) -> Vec<String> {
        let keys = self.keys.read().expect("signer lock").clone();
        keys.get(domain)
            .map(|v| v.iter().map(|(s, _)| s.clone()).collect())
            .unwrap_or_default()
    }

    /// `<label>.<domain>`: where the envelope sender is rewritten to.
    pub fn return_path(&self, domain: &str) -> Option<String> {
        self.return_path_label
            .as_ref()
            .map(|label| format!("{label}.{domain}"))
    }

    /// Seals (when asked and the message carries authentication) and signs `body`
    /// for `domain`. Never fails the submission: a failure to sign or seal is logged
    /// and the message goes on as it is.
    pub async fn apply(
        &self,
        body: Vec<u8>,
        tenant: &TenantId,
        domain: &str,
        seal: Option<SealContext<'_>>,
    ) -> Signed {
        let mut out = Signed {
            body,
            ..Signed::default()
        };
        let choice = self.choice(tenant, domain);
        if choice == Signatures::None {
            // The application signs its own mail: nothing is added.
            return out;
        }
        if let (Some(arc), Some(ctx)) = (&self.arc, seal)
            && carries_authentication(&out.body)
        {
            let smtp = SmtpContext {
                client_ip: ctx.client_ip,
                helo: ctx.helo,
                mail_from: ctx.mail_from,
            };
            let key = ArcSealKey {
                domain: &arc.domain,
                selector: &arc.selector,
                key: &arc.key,
            };
            match mailroom_auth::verify_and_seal(
                &arc.authenticator,
                &out.body,
                &smtp,
                &arc.authserv_id,
                &key,
            )
            .await
            {
                Ok(sealed) => {
                    out.body = sealed.message;
                    out.arc_sealed = true;
                    out.auth_results = Some(sealed.summary.header);
                }
                Err(e) => tracing::warn!(error = %e, "ARC sealing skipped"),
            }
        }
        let keys = self.keys.read().expect("signer lock").clone();
        let Some(domain_keys) = keys.get(domain).filter(|k| !k.is_empty()) else {
            tracing::warn!(
                domain,
                "no active DKIM key for the sending domain; delivering unsigned"
            );
            return out;
        };
        let chosen: Vec<(String, Arc<DkimKey>)> = domain_keys
            .iter()
            .filter(|(_, k)| match k.algorithm() {
                KeyAlgorithm::Rsa2048 => choice.rsa(),
                KeyAlgorithm::Ed25519 => choice.ed25519(),
            })
            .cloned()
            .collect();
        if chosen.is_empty() {
            tracing::warn!(
                domain,
                signatures = %choice,
                "no active DKIM key of the chosen algorithm; delivering unsigned"
            );
            return out;
        }
        let body = Arc::new(std::mem::take(&mut out.body));
        let job = {
            let (body, keys, domain) = (body.clone(), chosen.clone(), domain.to_string());
            move || {
                let refs: Vec<(&str, &DkimKey)> =
                    keys.iter().map(|(s, k)| (s.as_str(), k.as_ref())).collect();
                mailroom_auth::signature_headers(&body, &domain, &refs)
            }
        };
        let headers = self.pool.run(job).await;
        // The job has ended and dropped its reference: the body comes back uncopied.
        let body = Arc::try_unwrap(body).unwrap_or_else(|shared| (*shared).clone());
        match headers {
            Ok(Ok(headers)) => {
                let mut signed = Vec::with_capacity(headers.len() + body.len());
                signed.extend_from_slice(headers.as_bytes());
                signed.extend_from_slice(&body);
                out.body = signed;
                out.selectors = chosen.into_iter().map(|(s, _)| s).collect();
            }
            Ok(Err(e)) => {
                out.body = body;
                tracing::error!(domain, error = %e, "DKIM signing failed; delivering unsigned")
            }
            Err(e) => {
                out.body = body;
                tracing::error!(domain, error = %e, "DKIM signing task failed; delivering unsigned")
            }
        }
        out
    }
}

/// The signing keys as a cache the policy refresher reloads when another node
/// changed a domain or key (`mailroom_policy::refresh`).
pub struct SigningKeys {
    pub signer: Arc<Signer>,
    pub store: Arc<dyn KeySource>,
}

#[mailroom_policy::async_trait]
impl mailroom_policy::Cached for SigningKeys {
    fn name(&self) -> &'static str {
        "DKIM signing keys"
    }

    async fn reload(&self) -> Result<(), StoreError> {
        self.signer.reload_from(self.store.as_ref()).await
    }
}

/// The session facts ARC's checks need, when the tenant has sealing on.
#[derive(Clone, Copy, Debug)]
pub struct SealContext<'a> {
    pub client_ip: IpAddr,
    pub helo: &'a str,
    pub mail_from: &'a str,
}

/// Whether the header section has a DKIM-Signature or ARC-* header.
pub fn carries_authentication(message: &[u8]) -> bool {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    let mut at_line_start = true;
    for (i, &b) in message[..end].iter().enumerate() {
        if at_line_start {
            let rest = &message[i..end];
            let starts =
                |p: &[u8]| rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p);
            if starts(b"dkim-signature:")
                || starts(b"arc-seal:")
                || starts(b"arc-message-signature:")
            {
                return true;
            }
        }
        at_line_start = b == b'\n';
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_authentication_headers_only_in_the_header_section() {
        assert!(carries_authentication(
            b"From: a@b\r\nDKIM-Signature: v=1\r\n\r\nx"
        ));
        assert!(carries_authentication(b"arc-seal: i=1\r\n\r\n"));
        assert!(!carries_authentication(
            b"From: a@b\r\nX-DKIM-Signature: v\r\n\r\nDKIM-Signature: no\r\n"
        ));
        assert!(!carries_authentication(b"From: a@b\r\n\r\n"));
    }
}
