//! Every sealed secret the store holds, as rows to re-seal: the start-up migration
//! (plaintext from older databases) and key rotation read them all and write back
//! each one that changed. The store only moves envelope text; sealing and opening is
//! `mailroom_secrets`' business, above the store.

use mailroom_model::WebhookId;
use mailroom_secrets::Sealed;

/// Which row a secret belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretOwner {
    DkimKey { domain: String, selector: String },
    Webhook(WebhookId),
}

impl SecretOwner {
    /// The associated data the secret is sealed with.
    pub fn context(&self) -> String {
        match self {
            Self::DkimKey { domain, selector } => mailroom_secrets::dkim_context(domain, selector),
            Self::Webhook(id) => mailroom_secrets::webhook_context(id.as_str()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct StoredSecret {
    pub owner: SecretOwner,
    pub value: Sealed,
}

/// Replace `old` by `new`, only if the row still holds `old`.
#[derive(Clone, Debug)]
pub struct SecretUpdate {
    pub owner: SecretOwner,
    pub old: Sealed,
    pub new: Sealed,
}
