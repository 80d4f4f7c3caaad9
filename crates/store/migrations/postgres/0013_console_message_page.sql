-- The console's message page (issue 15): the delivery status reports (DSNs) sent about
-- a message, found from the original. Same shapes as SQLite 0024.
CREATE TABLE message_reports (
    original_id  TEXT NOT NULL,
    report_id    TEXT NOT NULL,
    PRIMARY KEY (original_id, report_id)
);
CREATE INDEX message_reports_report ON message_reports(report_id);

CREATE FUNCTION message_reports_fill() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    original TEXT := NEW.detail::jsonb ->> 'original_message_id';
BEGIN
    IF original IS NOT NULL THEN
        INSERT INTO message_reports (original_id, report_id)
        VALUES (original, NEW.message_id) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
-- The WHEN clause is evaluated without calling the function: other events cost nothing.
CREATE TRIGGER message_reports_fill AFTER INSERT ON events FOR EACH ROW
    WHEN (NEW.type = 'accepted' AND NEW.message_id IS NOT NULL
          AND strpos(NEW.detail, 'original_message_id') > 0)
    EXECUTE FUNCTION message_reports_fill();

INSERT INTO message_reports (original_id, report_id)
    SELECT detail::jsonb ->> 'original_message_id', message_id FROM events
    WHERE type = 'accepted' AND message_id IS NOT NULL
      AND strpos(detail, 'original_message_id') > 0
      AND detail::jsonb ->> 'original_message_id' IS NOT NULL
    ON CONFLICT DO NOTHING;

CREATE FUNCTION message_reports_cleanup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_reports WHERE original_id = OLD.id;
    DELETE FROM message_reports WHERE report_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER message_reports_cleanup AFTER DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION message_reports_cleanup();

-- Recipients by state (the queue depth the console's overview and /metrics show),
-- kept by a trigger in the same transaction as every recipient insert, state change
-- and delete, so that no read counts the recipients table. `shard` is the backend's
-- pid, as for the event counters: concurrent transactions never wait on one row;
-- readers sum the shards and the counter-prune job folds them back into shard 0.
CREATE TABLE recipient_state_counts (
    state  TEXT NOT NULL,
    shard  INTEGER NOT NULL DEFAULT 0,
    n      BIGINT NOT NULL,
    PRIMARY KEY (state, shard)
);
INSERT INTO recipient_state_counts (state, shard, n)
    SELECT state, 0, COUNT(*) FROM recipients GROUP BY state;

CREATE FUNCTION recipient_state_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s INTEGER := pg_backend_pid();
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO recipient_state_counts (state, shard, n) VALUES (OLD.state, s, -1)
        ON CONFLICT (state, shard) DO UPDATE SET n = recipient_state_counts.n - 1;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO recipient_state_counts (state, shard, n) VALUES (NEW.state, s, 1)
        ON CONFLICT (state, shard) DO UPDATE SET n = recipient_state_counts.n + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER recipient_state_counts_insert AFTER INSERT ON recipients
    FOR EACH ROW EXECUTE FUNCTION recipient_state_counts_track();
CREATE TRIGGER recipient_state_counts_update AFTER UPDATE OF state ON recipients
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION recipient_state_counts_track();
CREATE TRIGGER recipient_state_counts_delete AFTER DELETE ON recipients
    FOR EACH ROW EXECUTE FUNCTION recipient_state_counts_track();

-- Subject search: a trigram index (pg_trgm, a trusted extension) on the lowercased
-- subject, which the search's `lower(subject) LIKE lower($1)` uses for a substring
-- that few subjects contain.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX message_subjects_trgm ON message_subjects USING gin (lower(subject) gin_trgm_ops);

-- Search by sender, newest first: the sender's messages in id order straight from the
-- index (a frequent sender has tens of thousands), instead of all of them sorted.
DROP INDEX messages_sender;
CREATE INDEX messages_sender ON messages(lower(mail_from), id);
