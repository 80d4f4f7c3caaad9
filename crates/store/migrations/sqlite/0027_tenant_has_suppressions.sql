-- Whether a tenant has ever had a suppression (issue 14: the ingest pipeline looks a
-- message's recipients up in the suppression list only for such tenants, which saves
-- one database round trip per message for every other tenant). Set here by a trigger
-- on the first suppression, whichever path inserts it (API, hard bounce, complaint,
-- import); the tenants trigger then bumps the directory version, so every node's
-- directory learns it within one refresh. Never cleared: a tenant whose list was
-- emptied keeps the lookups, the safe side.
ALTER TABLE tenants ADD COLUMN has_suppressions INTEGER NOT NULL DEFAULT 0;
UPDATE tenants SET has_suppressions = 1
WHERE EXISTS (SELECT 1 FROM suppressions s WHERE s.tenant_id = tenants.id);

CREATE TRIGGER suppressions_flag_tenant AFTER INSERT ON suppressions
WHEN (SELECT has_suppressions FROM tenants WHERE id = NEW.tenant_id) = 0
BEGIN
    UPDATE tenants SET has_suppressions = 1 WHERE id = NEW.tenant_id;
END;
