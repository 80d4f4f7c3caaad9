-- Issue 19: what the store counts on a `bounced` event is written beside its detail,
-- by the same insert, instead of being read back out of the detail's JSON:
--   bounce_class  `hard` or `soft` (NULL on every other event type, and on a bounce
--                 recorded without a class);
--   bounce_async  1 when the bounce came back after delivery (a bounce report), which
--                 is not a delivery outcome in the sender-health rates.
-- The writers take both from the typed detail (`EventDetail::bounce_class`,
-- `is_async_bounce`). Rows written before are filled from their JSON here, once.
ALTER TABLE events ADD COLUMN bounce_class TEXT;
ALTER TABLE events ADD COLUMN bounce_async INTEGER NOT NULL DEFAULT 0;

UPDATE events
   SET bounce_class = json_extract(detail, '$.bounce_class'),
       bounce_async = (json_extract(detail, '$.async') IS 1)
 WHERE type = 'bounced' AND json_valid(detail);

-- The counters' trigger (0016) splits bounces by the column now.
DROP TRIGGER event_counters_count;
CREATE TRIGGER event_counters_count AFTER INSERT ON events
WHEN NEW.tenant_id IS NOT NULL AND NEW.message_id IS NOT NULL
BEGIN
    INSERT INTO event_counters (granularity, bucket, tenant_id, domain, kind, shard, n)
    SELECT g.name, NEW.at - (NEW.at % g.ms), NEW.tenant_id,
           CASE WHEN NEW.recipient IS NULL OR instr(NEW.recipient, '@') = 0 THEN ''
                ELSE lower(substr(NEW.recipient, instr(NEW.recipient, '@') + 1)) END,
           CASE WHEN NEW.type = 'bounced' THEN
                    CASE WHEN NEW.bounce_class = 'soft'
                         THEN 'bounced_soft' ELSE 'bounced_hard' END
                ELSE NEW.type END,
           0, 1
    FROM (SELECT 'minute' AS name, 60000 AS ms
          UNION ALL SELECT 'hour', 3600000
          UNION ALL SELECT 'day', 86400000) AS g
    WHERE true
    ON CONFLICT (granularity, bucket, tenant_id, domain, kind, shard) DO UPDATE SET n = n + 1;
END;

-- Kept reading the detail, on purpose: `message_subjects_fill` (0016) and
-- `message_reports_fill` (0024) copy `subject` and `original_message_id` out of the
-- `accepted` event being inserted (NEW.detail, never a scan of stored rows) into the
-- search and report tables, whose own columns are then what queries read. Both
-- fields are typed in `model::event_detail` (`AcceptedDetail::subject`,
-- `ReportAcceptedDetail::original_message_id`).
