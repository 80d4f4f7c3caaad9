//! Which tenants this store instance has written a suppression for. The store flags a
//! tenant in the database on its first suppression (`tenants.has_suppressions`, set by
//! a trigger) and the policy directory, reloaded when the directory version moves,
//! carries the flag to every node within one refresh; ingest reads a tenant's
//! suppression list only when the tenant is flagged. This hint closes the refresh
//! window on the node that wrote the suppression (a hard bounce recorded here, then at
//! once a new message to the same address): every insert into `suppressions` notes its
//! tenant here first, and ingest asks `SendPolicyStore::suppression_noted`.
//!
//! One hint per store instance (each `SqliteStore` / `PgStore` owns one, shared by its
//! clones and its writer task), not per process: two nodes in one process — the
//! in-process cluster test — each see only their own writes, as two processes would.
//! It is a hint, never a truth another node could contradict: a noted tenant only
//! costs ingest a lookup it would otherwise skip, and a tenant is never un-noted.

use mailroom_model::TenantId;
use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};

/// The tenants one store instance has written a suppression for.
#[derive(Debug, Default)]
pub struct SuppressionHint {
    noted: RwLock<HashSet<String>>,
}

impl SuppressionHint {
    /// Records that a suppression is being written for `tenant` (called before the
    /// insert, so the hint is never behind the database for this instance).
    pub fn note(&self, tenant: &str) {
        let known = self
            .noted
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(tenant);
        if !known {
            self.noted
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(tenant.to_string());
        }
    }

    /// Whether this instance has written a suppression for `tenant`.
    pub fn noted(&self, tenant: &TenantId) -> bool {
        self.noted
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(tenant.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noted_tenant_stays_noted_and_others_are_not() {
        let hint = SuppressionHint::default();
        let (a, b) = (TenantId::generate(), TenantId::generate());
        assert!(!hint.noted(&a));
        hint.note(a.as_str());
        hint.note(a.as_str());
        assert!(hint.noted(&a));
        assert!(!hint.noted(&b));
    }

    #[test]
    fn two_hints_do_not_share_what_they_noted() {
        let (one, two) = (SuppressionHint::default(), SuppressionHint::default());
        let a = TenantId::generate();
        one.note(a.as_str());
        assert!(one.noted(&a));
        assert!(!two.noted(&a));
    }
}
