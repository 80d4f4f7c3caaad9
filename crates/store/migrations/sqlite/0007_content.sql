-- Content issue: per-tenant engagement tracking, one-click unsubscribe and the content
-- score threshold (NULL: the server default). Quarantined recipients use the existing
-- recipients table with state 'quarantined' (never claimed: claims select queued and
-- deferred only), so no new table is needed; this index makes the quarantine list cheap.
ALTER TABLE tenants ADD COLUMN track_opens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN track_clicks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN list_unsubscribe INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN content_score_threshold INTEGER;
CREATE INDEX recipients_quarantined ON recipients(message_id) WHERE state = 'quarantined';
