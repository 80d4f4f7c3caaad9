-- Named API keys (issue 12, item 8). A tenant has any number of keys, each with a
-- scope; a key has one or more secrets (SHA-256 digests, never the secret itself):
-- one current secret (expires_at NULL) and, after a rotation, the previous one until
-- its expires_at. Revoking a key deletes it and its secrets.
-- Numbered 0012 (not 0009) so it cannot collide with a migration added in parallel.

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    name          TEXT NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('send', 'read', 'full')),
    created_at    INTEGER NOT NULL,
    -- Written at most once a minute per key (see policy's usage recorder).
    last_used_at  INTEGER,
    rotated_at    INTEGER,
    UNIQUE (tenant_id, name)
);

CREATE TABLE api_key_secrets (
    hash        TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER
);
CREATE INDEX api_key_secrets_key ON api_key_secrets(key_id);

-- Every existing tenant key becomes a named key "default" with scope full. Its id is
-- the tenant's id (a ULID, unique: one such key per tenant).
INSERT INTO api_keys (id, tenant_id, name, scope, created_at)
    SELECT id, id, 'default', 'full', created_at FROM tenants;
INSERT INTO api_key_secrets (hash, key_id, created_at)
    SELECT api_key_hash, id, created_at FROM tenants;
-- tenants.api_key_hash stays (NOT NULL UNIQUE cannot be dropped in SQLite) as the
-- digest of the key issued at creation; authentication reads api_key_secrets only.

-- The operator token's digest (one row). Before this migration the server hashed the
-- data directory's operator-token file at start; it now stores the digest here.
CREATE TABLE operator_token (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    token_hash  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
