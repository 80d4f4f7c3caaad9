-- Event stream and webhooks: indexes for pulling and pruning events, the webhooks a
-- tenant registered, one delivery row per (webhook, event) and the dispatcher's
-- durable cursor into the events table.

CREATE INDEX events_tenant_seq ON events(tenant_id, seq);
CREATE INDEX events_at ON events(at);

CREATE TABLE webhooks (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    url          TEXT NOT NULL,
    -- JSON array of event type names; NULL: every type.
    event_types  TEXT,
    -- Kept in clear: it is the HMAC key the signature is computed with.
    secret       TEXT NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    -- Events with seq <= after_seq happened before the webhook existed: not sent.
    after_seq    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks(tenant_id);

CREATE TABLE webhook_deliveries (
    webhook_id       TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    -- pending | delivered | failed
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- For pending rows: when the next attempt is due (also the end of a worker's lease).
    next_attempt_at  INTEGER NOT NULL,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (webhook_id, seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(webhook_id, state, next_attempt_at);
CREATE INDEX webhook_deliveries_seq ON webhook_deliveries(seq, state);

-- The dispatcher's position in the events table: every event with seq <= seq has been
-- fanned out into webhook_deliveries.
CREATE TABLE event_cursors (
    name  TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL
);
INSERT INTO event_cursors (name, seq) VALUES ('webhooks', 0);
