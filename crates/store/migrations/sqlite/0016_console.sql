-- The web console's server side (issue 15): sessions, counters aggregated as events
-- are written, and what message search needs indexed.

-- Console sessions. The cookie value is random and only its SHA-256 digest is stored.
-- A tenant session names the API key it was opened with: revoking the key deletes
-- its sessions (cascade); rotating the operator token ends every operator session.
CREATE TABLE console_sessions (
    token_hash  TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('operator', 'tenant')),
    tenant_id   TEXT REFERENCES tenants(id) ON DELETE CASCADE,
    api_key_id  TEXT REFERENCES api_keys(id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions(expires_at);
CREATE INDEX console_sessions_key ON console_sessions(api_key_id);

CREATE TRIGGER console_sessions_operator_rotated AFTER UPDATE ON operator_token
WHEN OLD.token_hash <> NEW.token_hash
BEGIN
    DELETE FROM console_sessions WHERE role = 'operator';
END;

-- Event counters: one row per (granularity, bucket start, tenant, recipient domain,
-- kind), upserted by the trigger below in the same transaction as the event insert,
-- whichever code path writes the event. `bounced` is split by its bounce_class into
-- bounced_hard / bounced_soft. `shard` is always 0 here (one writer); PostgreSQL uses
-- the backend's pid so that concurrent transactions never wait on one counter row.
CREATE TABLE event_counters (
    granularity  TEXT NOT NULL CHECK (granularity IN ('minute', 'hour', 'day')),
    bucket       INTEGER NOT NULL,
    tenant_id    TEXT NOT NULL,
    domain       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    shard        INTEGER NOT NULL DEFAULT 0,
    n            INTEGER NOT NULL,
    PRIMARY KEY (granularity, bucket, tenant_id, domain, kind, shard)
);
CREATE INDEX event_counters_tenant ON event_counters(tenant_id, granularity, bucket);

CREATE TRIGGER event_counters_count AFTER INSERT ON events
WHEN NEW.tenant_id IS NOT NULL AND NEW.message_id IS NOT NULL
BEGIN
    INSERT INTO event_counters (granularity, bucket, tenant_id, domain, kind, shard, n)
    SELECT g.name, NEW.at - (NEW.at % g.ms), NEW.tenant_id,
           CASE WHEN NEW.recipient IS NULL OR instr(NEW.recipient, '@') = 0 THEN ''
                ELSE lower(substr(NEW.recipient, instr(NEW.recipient, '@') + 1)) END,
           CASE WHEN NEW.type = 'bounced' THEN
                    CASE WHEN json_extract(NEW.detail, '$.bounce_class') = 'soft'
                         THEN 'bounced_soft' ELSE 'bounced_hard' END
                ELSE NEW.type END,
           0, 1
    FROM (SELECT 'minute' AS name, 60000 AS ms
          UNION ALL SELECT 'hour', 3600000
          UNION ALL SELECT 'day', 86400000) AS g
    WHERE true
    ON CONFLICT (granularity, bucket, tenant_id, domain, kind, shard) DO UPDATE SET n = n + 1;
END;

-- Message search. The subject is taken from the first `accepted` event's detail
-- (ingest records it there); tags from the message's meta.
CREATE TABLE message_subjects (
    message_id  TEXT PRIMARY KEY,
    subject     TEXT NOT NULL
);
CREATE TRIGGER message_subjects_fill AFTER INSERT ON events
WHEN NEW.type = 'accepted' AND NEW.message_id IS NOT NULL
     AND json_extract(NEW.detail, '$.subject') IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO message_subjects (message_id, subject)
    VALUES (NEW.message_id, json_extract(NEW.detail, '$.subject'));
END;

CREATE TABLE message_tags (
    tag         TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    PRIMARY KEY (tag, message_id)
);
CREATE TRIGGER message_tags_fill AFTER INSERT ON messages
WHEN NEW.meta IS NOT NULL AND json_valid(NEW.meta)
     AND json_type(NEW.meta, '$.tags') = 'array'
BEGIN
    INSERT OR IGNORE INTO message_tags (tag, message_id, tenant_id)
    SELECT value, NEW.id, NEW.tenant_id FROM json_each(NEW.meta, '$.tags')
    WHERE type = 'text';
END;

CREATE INDEX recipients_address ON recipients(lower(address));
CREATE INDEX messages_sender ON messages(lower(mail_from));
CREATE INDEX messages_rfc_id ON messages(rfc_message_id);

-- A deleted message takes its search rows with it.
CREATE TRIGGER message_search_cleanup AFTER DELETE ON messages
BEGIN
    DELETE FROM message_subjects WHERE message_id = OLD.id;
    DELETE FROM message_tags WHERE message_id = OLD.id;
END;
