-- Whether a tenant has ever had a suppression (issue 14: the ingest pipeline looks a
-- message's recipients up in the suppression list only for such tenants). Set by a
-- trigger on the first suppression, whichever path inserts it; the tenants statement
-- trigger then bumps the directory version, so every node's directory learns it within
-- one refresh. The UPDATE runs only when the flag is still false, so later suppressions
-- (every hard bounce) do not make every node reload its directory. Never cleared.
ALTER TABLE tenants ADD COLUMN has_suppressions BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE tenants SET has_suppressions = TRUE
WHERE EXISTS (SELECT 1 FROM suppressions s WHERE s.tenant_id = tenants.id);

CREATE FUNCTION flag_tenant_suppressions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tenants WHERE id = NEW.tenant_id AND NOT has_suppressions) THEN
        UPDATE tenants SET has_suppressions = TRUE
        WHERE id = NEW.tenant_id AND NOT has_suppressions;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER suppressions_flag_tenant AFTER INSERT ON suppressions
    FOR EACH ROW EXECUTE FUNCTION flag_tenant_suppressions();
