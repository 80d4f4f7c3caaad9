-- Issue 19: what the store counts on a `bounced` event is written beside its detail,
-- by the same insert, instead of being read back out of the detail's JSON:
--   bounce_class  `hard` or `soft` (NULL on every other event type, and on a bounce
--                 recorded without a class);
--   bounce_async  true when the bounce came back after delivery (a bounce report),
--                 which is not a delivery outcome in the sender-health rates.
-- The writers take both from the typed detail (`EventDetail::bounce_class`,
-- `is_async_bounce`). Rows written before are filled from their JSON here, once
-- (`async` was JSON true; 1 is accepted as SQLite's `json_extract` would).
ALTER TABLE events ADD COLUMN bounce_class TEXT;
ALTER TABLE events ADD COLUMN bounce_async BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE events
   SET bounce_class = detail::jsonb ->> 'bounce_class',
       bounce_async = COALESCE((detail::jsonb -> 'async') IN ('true'::jsonb, '1'::jsonb), FALSE)
 WHERE type = 'bounced';

-- The counters' trigger function (0005) splits bounces by the column now. Kept
-- reading the detail, on purpose: the subject of the `accepted` event being inserted
-- (NEW.detail, never a scan of stored rows) is copied into message_subjects, whose
-- column is then what search reads; likewise `original_message_id` into
-- message_reports (0013). Both fields are typed in `model::event_detail`.
CREATE OR REPLACE FUNCTION event_counters_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k TEXT;
    d TEXT;
    s INTEGER := pg_backend_pid();
BEGIN
    IF NEW.tenant_id IS NULL OR NEW.message_id IS NULL THEN
        RETURN NULL;
    END IF;
    k := CASE WHEN NEW.type = 'bounced' THEN
              CASE WHEN NEW.bounce_class = 'soft'
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
