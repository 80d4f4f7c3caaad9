-- Which DKIM signatures a tenant wants (ed25519+rsa, rsa, ed25519, none), tenant-wide
-- (domain = '') or for one of its domains. No row: the default, ed25519+rsa.
CREATE TABLE signing_choices (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    domain      TEXT NOT NULL DEFAULT '',
    signatures  TEXT NOT NULL CHECK (signatures IN ('ed25519+rsa', 'rsa', 'ed25519', 'none')),
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, domain)
);

-- The signer caches these: every change moves the directory version (0001_schema.sql).
CREATE TRIGGER dv_signing AFTER INSERT OR UPDATE OR DELETE ON signing_choices
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
