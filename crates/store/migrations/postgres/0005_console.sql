-- The web console's server side (issue 15): sessions, counters aggregated as events
-- are written, and what message search needs indexed. Same shapes as SQLite 0016.

CREATE TABLE console_sessions (
    token_hash  TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('operator', 'tenant')),
    tenant_id   TEXT REFERENCES tenants(id) ON DELETE CASCADE,
    api_key_id  TEXT REFERENCES api_keys(id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions(expires_at);
CREATE INDEX console_sessions_key ON console_sessions(api_key_id);

CREATE FUNCTION console_sessions_operator_rotated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.token_hash <> NEW.token_hash THEN
        DELETE FROM console_sessions WHERE role = 'operator';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER console_sessions_operator_rotated AFTER UPDATE ON operator_token
    FOR EACH ROW EXECUTE FUNCTION console_sessions_operator_rotated();

-- Event counters, upserted by the trigger below in the same transaction as the event
-- insert. `shard` is the backend's pid: two transactions in flight are on two
-- connections, so they never update (and wait on, or deadlock over) one counter row;
-- readers sum the shards.
CREATE TABLE event_counters (
    granularity  TEXT NOT NULL CHECK (granularity IN ('minute', 'hour', 'day')),
    bucket       BIGINT NOT NULL,
    tenant_id    TEXT NOT NULL,
    domain       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    shard        INTEGER NOT NULL DEFAULT 0,
    n            BIGINT NOT NULL,
    PRIMARY KEY (granularity, bucket, tenant_id, domain, kind, shard)
);
CREATE INDEX event_counters_tenant ON event_counters(tenant_id, granularity, bucket);

CREATE FUNCTION event_counters_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k TEXT;
    d TEXT;
    s INTEGER := pg_backend_pid();
BEGIN
    IF NEW.tenant_id IS NULL OR NEW.message_id IS NULL THEN
        RETURN NULL;
    END IF;
    k := CASE WHEN NEW.type = 'bounced' THEN
              CASE WHEN NEW.detail::jsonb ->> 'bounce_class' = 'soft'
                   THEN 'bounced_soft' ELSE 'bounced_hard' END
         ELSE NEW.type END;
    d := CASE WHEN NEW.recipient IS NULL OR strpos(NEW.recipient, '@') = 0 THEN ''
              ELSE lower(substr(NEW.recipient, strpos(NEW.recipient, '@') + 1)) END;
    INSERT INTO event_counters (granularity, bucket, tenant_id, domain, kind, shard, n)
    VALUES ('minute', NEW.at - NEW.at % 60000, NEW.tenant_id, d, k, s, 1),
           ('hour', NEW.at - NEW.at % 3600000, NEW.tenant_id, d, k, s, 1),
           ('day', NEW.at - NEW.at % 86400000, NEW.tenant_id, d, k, s, 1)
    ON CONFLICT (granularity, bucket, tenant_id, domain, kind, shard)
    DO UPDATE SET n = event_counters.n + 1;
    IF NEW.type = 'accepted' THEN
        INSERT INTO message_subjects (message_id, subject)
        SELECT NEW.message_id, NEW.detail::jsonb ->> 'subject'
        WHERE NEW.detail::jsonb ->> 'subject' IS NOT NULL
        ON CONFLICT (message_id) DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

CREATE TABLE message_subjects (
    message_id  TEXT PRIMARY KEY,
    subject     TEXT NOT NULL
);

CREATE TRIGGER event_counters_count AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION event_counters_count();

CREATE TABLE message_tags (
    tag         TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    PRIMARY KEY (tag, message_id)
);

CREATE FUNCTION message_tags_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.meta IS NOT NULL AND jsonb_typeof(NEW.meta::jsonb -> 'tags') = 'array' THEN
        INSERT INTO message_tags (tag, message_id, tenant_id)
        SELECT t, NEW.id, NEW.tenant_id
        FROM jsonb_array_elements(NEW.meta::jsonb -> 'tags') AS e(v),
             LATERAL (SELECT e.v #>> '{}' AS t) AS x
        WHERE jsonb_typeof(e.v) = 'string'
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER message_tags_fill AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION message_tags_fill();

CREATE FUNCTION message_search_cleanup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_subjects WHERE message_id = OLD.id;
    DELETE FROM message_tags WHERE message_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER message_search_cleanup AFTER DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION message_search_cleanup();

CREATE INDEX recipients_address ON recipients(lower(address));
CREATE INDEX messages_sender ON messages(lower(mail_from));
CREATE INDEX messages_rfc_id ON messages(rfc_message_id);
