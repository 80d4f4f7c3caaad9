//! Rows of the signature choices: which DKIM signatures a tenant wants on its mail,
//! tenant-wide or for one of its domains (see `mailroom_model::Signatures`).

use mailroom_model::{Signatures, TenantId};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SigningChoiceRecord {
    pub tenant_id: TenantId,
    /// `None`: the tenant's choice for all its domains; `Some`: one domain's, which
    /// wins over the tenant's.
    pub domain: Option<String>,
    pub signatures: Signatures,
    pub updated_at: i64,
}
