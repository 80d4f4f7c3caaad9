-- Mailroom schema, SQLite flavour. Times are Unix milliseconds (INTEGER).

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    api_key_hash  TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL
);

CREATE TABLE smtp_credentials (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX smtp_credentials_tenant ON smtp_credentials(tenant_id);

CREATE TABLE allowed_ips (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    cidr         TEXT NOT NULL,
    require_tls  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, cidr)
);

CREATE TABLE domains (
    name        TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    verified    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX domains_tenant ON domains(tenant_id);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    mail_from       TEXT NOT NULL,
    rfc_message_id  TEXT,
    size            INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    source          TEXT NOT NULL,
    client_ip       TEXT,
    dsn_ret         TEXT,
    dsn_envid       TEXT,
    smtputf8        INTEGER NOT NULL,
    body            BLOB NOT NULL
);
CREATE INDEX messages_tenant ON messages(tenant_id, id);

CREATE TABLE recipients (
    message_id       TEXT NOT NULL,
    idx              INTEGER NOT NULL,
    address          TEXT NOT NULL,
    domain           TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    last_reply       TEXT,
    dsn_notify       TEXT,
    dsn_orcpt        TEXT,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (message_id, idx)
);
CREATE INDEX recipients_due ON recipients(state, next_attempt_at);

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    message_id  TEXT,
    tenant_id   TEXT,
    recipient   TEXT,
    detail      TEXT NOT NULL
);
CREATE INDEX events_message ON events(message_id);
