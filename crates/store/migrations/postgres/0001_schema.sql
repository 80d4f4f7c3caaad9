-- Mailroom schema, PostgreSQL flavour: the final state of the SQLite migrations
-- 0001-0013 in one file. Times are Unix milliseconds (BIGINT); flags are BOOLEAN.

CREATE TABLE tenants (
    id                       TEXT PRIMARY KEY,
    name                     TEXT NOT NULL UNIQUE,
    -- The digest of the key issued at creation; authentication reads api_key_secrets.
    api_key_hash             TEXT NOT NULL UNIQUE,
    created_at               BIGINT NOT NULL,
    bounce_reports           BOOLEAN NOT NULL DEFAULT TRUE,
    status                   TEXT NOT NULL DEFAULT 'active',
    sandbox                  BOOLEAN NOT NULL DEFAULT FALSE,
    reject_suppressed        BOOLEAN NOT NULL DEFAULT FALSE,
    messages_per_second      DOUBLE PRECISION,
    messages_per_day         BIGINT,
    max_recipients           BIGINT,
    max_message_size         BIGINT,
    arc_sealing              BOOLEAN NOT NULL DEFAULT TRUE,
    track_opens              BOOLEAN NOT NULL DEFAULT FALSE,
    track_clicks             BOOLEAN NOT NULL DEFAULT FALSE,
    list_unsubscribe         BOOLEAN NOT NULL DEFAULT FALSE,
    content_score_threshold  BIGINT
);

CREATE TABLE smtp_credentials (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX smtp_credentials_tenant ON smtp_credentials(tenant_id);

CREATE TABLE allowed_ips (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    cidr         TEXT NOT NULL,
    require_tls  BOOLEAN NOT NULL,
    PRIMARY KEY (tenant_id, cidr)
);

CREATE TABLE domains (
    name                 TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants(id),
    verified             BOOLEAN NOT NULL,
    created_at           BIGINT NOT NULL,
    verification_token   TEXT NOT NULL DEFAULT '',
    -- pending | verified | failed | temporary_failure | degraded
    status               TEXT NOT NULL DEFAULT 'pending',
    last_checked_at      BIGINT,
    -- JSON: the last check's outcome and reason, and per-record results.
    last_check           TEXT,
    -- JSON array of lowercased local parts; empty: any address at the domain.
    allowed_local_parts  TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX domains_tenant ON domains(tenant_id);

CREATE TABLE dkim_keys (
    domain           TEXT NOT NULL REFERENCES domains(name),
    selector         TEXT NOT NULL,
    -- ed25519 | rsa2048
    algorithm        TEXT NOT NULL,
    -- PKCS#8 PEM (sealed); never leaves the server through the API.
    private_key_pem  TEXT NOT NULL,
    -- pending | active | retiring | retired
    state            TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    activated_at     BIGINT,
    retire_after     BIGINT,
    PRIMARY KEY (domain, selector)
);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    mail_from       TEXT NOT NULL,
    rfc_message_id  TEXT,
    size            BIGINT NOT NULL,
    received_at     BIGINT NOT NULL,
    source          TEXT NOT NULL,
    client_ip       TEXT,
    dsn_ret         TEXT,
    dsn_envid       TEXT,
    smtputf8        BOOLEAN NOT NULL,
    body            BYTEA NOT NULL,
    -- JSON: tags and metadata of an HTTP submission.
    meta            TEXT,
    -- The domain whose bounce subdomain the envelope sender is rewritten to.
    return_path     TEXT
);
CREATE INDEX messages_tenant ON messages(tenant_id, id);
CREATE INDEX messages_received ON messages(received_at);

CREATE TABLE recipients (
    message_id       TEXT NOT NULL,
    idx              BIGINT NOT NULL,
    address          TEXT NOT NULL,
    domain           TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    last_reply       TEXT,
    dsn_notify       TEXT,
    dsn_orcpt        TEXT,
    updated_at       BIGINT NOT NULL,
    lease_until      BIGINT,
    last_mx          TEXT,
    lease_owner      TEXT,
    lease_token      BIGINT,
    PRIMARY KEY (message_id, idx)
);
CREATE INDEX recipients_due ON recipients(state, next_attempt_at);
CREATE INDEX recipients_quarantined ON recipients(message_id) WHERE state = 'quarantined';
CREATE INDEX recipients_lease_token ON recipients(lease_token) WHERE lease_token IS NOT NULL;
CREATE INDEX recipients_lease_owner ON recipients(lease_owner) WHERE lease_owner IS NOT NULL;

-- seq is allocated under the event-order advisory lock (see src/postgres/events.rs),
-- so seq order is commit order.
CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    at          BIGINT NOT NULL,
    message_id  TEXT,
    tenant_id   TEXT,
    recipient   TEXT,
    detail      TEXT NOT NULL
);
CREATE INDEX events_message ON events(message_id);
CREATE INDEX events_tenant_seq ON events(tenant_id, seq);
CREATE INDEX events_at ON events(at);
CREATE INDEX events_tenant ON events(tenant_id, type, at);

CREATE TABLE suppressions (
    tenant_id   TEXT NOT NULL,
    address     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    message_id  TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, address)
);

CREATE TABLE sandbox_recipients (
    tenant_id   TEXT NOT NULL,
    address     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, address)
);

CREATE TABLE idempotency_keys (
    tenant_id     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE webhooks (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    url          TEXT NOT NULL,
    -- JSON array of event type names; NULL: every type.
    event_types  TEXT,
    -- Sealed; the HMAC key the signature is computed with.
    secret       TEXT NOT NULL,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    -- Events with seq <= after_seq happened before the webhook existed: not sent.
    after_seq    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks(tenant_id);

CREATE TABLE webhook_deliveries (
    webhook_id       TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    -- pending | delivered | failed
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_status      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(webhook_id, state, next_attempt_at);
CREATE INDEX webhook_deliveries_seq ON webhook_deliveries(seq, state);

CREATE TABLE event_cursors (
    name  TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL
);
INSERT INTO event_cursors (name, seq) VALUES ('webhooks', 0);

CREATE TABLE sender_health (
    tenant_id     TEXT PRIMARY KEY,
    level         TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    name          TEXT NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('send', 'read', 'full')),
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    rotated_at    BIGINT,
    UNIQUE (tenant_id, name)
);

CREATE TABLE api_key_secrets (
    hash        TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT
);
CREATE INDEX api_key_secrets_key ON api_key_secrets(key_id);

CREATE TABLE operator_token (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    token_hash  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    started_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    version     TEXT NOT NULL,
    detail      TEXT NOT NULL
);

CREATE TABLE singletons (
    name   TEXT PRIMARY KEY,
    owner  TEXT NOT NULL,
    until  BIGINT NOT NULL
);

-- Moves with every change to what nodes cache (policy directory, DKIM keys), in the
-- same transaction as the change.
CREATE TABLE directory_version (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO directory_version (id, version) VALUES (1, 0);

CREATE FUNCTION bump_directory_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE directory_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER dv_tenants AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER dv_cred AFTER INSERT OR UPDATE OR DELETE ON smtp_credentials
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER dv_ips AFTER INSERT OR UPDATE OR DELETE ON allowed_ips
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER dv_domains AFTER INSERT OR DELETE
    OR UPDATE OF tenant_id, verified, status, allowed_local_parts ON domains
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER dv_dkim AFTER INSERT OR UPDATE OR DELETE ON dkim_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER dv_sandbox AFTER INSERT OR DELETE ON sandbox_recipients
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER dv_keys AFTER INSERT OR DELETE OR UPDATE OF tenant_id, name, scope ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER dv_secrets AFTER INSERT OR UPDATE OR DELETE ON api_key_secrets
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
CREATE TRIGGER dv_op AFTER INSERT OR UPDATE ON operator_token
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_version();
