-- Tenant policy: account status (suspension), SES-style sandbox, per-tenant limits
-- (NULL: the server default), the suppression list, sandbox recipients and HTTP
-- idempotency keys.
ALTER TABLE tenants ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE tenants ADD COLUMN sandbox INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN reject_suppressed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN messages_per_second REAL;
ALTER TABLE tenants ADD COLUMN messages_per_day INTEGER;
ALTER TABLE tenants ADD COLUMN max_recipients INTEGER;
ALTER TABLE tenants ADD COLUMN max_message_size INTEGER;

-- One row per suppressed address of a tenant; `address` is lowercased whole.
CREATE TABLE suppressions (
    tenant_id   TEXT NOT NULL,
    address     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    message_id  TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, address)
);

-- Recipients a sandboxed tenant may send to (besides its own verified domains).
CREATE TABLE sandbox_recipients (
    tenant_id   TEXT NOT NULL,
    address     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, address)
);

-- The first response to an HTTP request with an Idempotency-Key, written in the same
-- transaction as the message it created.
CREATE TABLE idempotency_keys (
    tenant_id     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

CREATE INDEX messages_received ON messages(received_at);

-- Tags and metadata given with an HTTP submission ({"tags": [...], "metadata": {...}}),
-- echoed on every event of the message.
ALTER TABLE messages ADD COLUMN meta TEXT;
