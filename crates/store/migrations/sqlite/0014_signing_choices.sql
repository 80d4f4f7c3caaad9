-- Which DKIM signatures a tenant wants (ed25519+rsa, rsa, ed25519, none), tenant-wide
-- (domain = '') or for one of its domains. No row: the default, ed25519+rsa.
CREATE TABLE signing_choices (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    domain      TEXT NOT NULL DEFAULT '',
    signatures  TEXT NOT NULL CHECK (signatures IN ('ed25519+rsa', 'rsa', 'ed25519', 'none')),
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, domain)
);

-- The signer caches these: every change moves the directory version (0013_cluster.sql).
CREATE TRIGGER dv_signing_i AFTER INSERT ON signing_choices BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_signing_u AFTER UPDATE ON signing_choices BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER dv_signing_d AFTER DELETE ON signing_choices BEGIN UPDATE directory_version SET version = version + 1; END;
