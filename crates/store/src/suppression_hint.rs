//! Which tenants this process has written a suppression for. The store flags a tenant
//! in the database on its first suppression (`tenants.has_suppressions`, set by a
//! trigger) and the policy directory, reloaded when the directory version moves,
//! carries the flag to every node within one refresh; ingest reads a tenant's
//! suppression list only when the tenant is flagged. This hint closes the refresh
//! window on the node that wrote the suppression (a hard bounce recorded here, then at
//! once a new message to the same address): every insert into `suppressions` notes its
//! tenant here first.
//!
//! It is a hint, never a truth another node could contradict: a noted tenant only
//! costs ingest a lookup it would otherwise skip, and a tenant is never un-noted.

use mailroom_model::TenantId;
use std::collections::HashSet;
use std::sync::{LazyLock, PoisonError, RwLock};

static NOTED: LazyLock<RwLock<HashSet<String>>> = LazyLock::new(Default::default);

/// Records that a suppression is being written for `tenant` (called before the insert).
pub fn note(tenant: &str) {
    let known = NOTED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(tenant);
    if !known {
        NOTED
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.to_string());
    }
}

/// Whether this process has written a suppression for `tenant`.
pub fn noted(tenant: &TenantId) -> bool {
    NOTED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(tenant.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noted_tenant_stays_noted_and_others_are_not() {
        let (a, b) = (TenantId::generate(), TenantId::generate());
        assert!(!noted(&a));
        note(a.as_str());
        note(a.as_str());
        assert!(noted(&a));
        assert!(!noted(&b));
    }
}
