-- Sending domains and sender authentication: the ownership token and verification
-- state of each domain, the result of its last DNS check, the local parts it may send
-- from, its DKIM keys (with their rotation state), the return-path domain of each
-- message (VERP) and the per-tenant ARC switch.
ALTER TABLE domains ADD COLUMN verification_token TEXT NOT NULL DEFAULT '';
-- pending | verified | failed | temporary_failure | degraded
ALTER TABLE domains ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE domains ADD COLUMN last_checked_at INTEGER;
-- JSON: the last check's outcome and reason, and per-record results.
ALTER TABLE domains ADD COLUMN last_check TEXT;
-- JSON array of lowercased local parts; empty: any address at the domain.
ALTER TABLE domains ADD COLUMN allowed_local_parts TEXT NOT NULL DEFAULT '[]';
UPDATE domains SET status = 'verified' WHERE verified = 1;

CREATE TABLE dkim_keys (
    domain           TEXT NOT NULL REFERENCES domains(name),
    selector         TEXT NOT NULL,
    -- ed25519 | rsa2048
    algorithm        TEXT NOT NULL,
    -- PKCS#8 PEM; never leaves the server through the API.
    private_key_pem  TEXT NOT NULL,
    -- pending | active | retiring | retired
    state            TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    activated_at     INTEGER,
    retire_after     INTEGER,
    PRIMARY KEY (domain, selector)
);

-- The domain whose bounce subdomain the envelope sender is rewritten to at delivery
-- (`bounces.<domain>`); NULL: the envelope sender is used as submitted.
ALTER TABLE messages ADD COLUMN return_path TEXT;

ALTER TABLE tenants ADD COLUMN arc_sealing INTEGER NOT NULL DEFAULT 1;

CREATE INDEX events_tenant ON events(tenant_id, type);
