-- The console's message page (issue 15): the delivery status reports (DSNs) sent about
-- a message, found from the original. A report is enqueued as a message of its own
-- whose `accepted` event names the original (`detail.original_message_id`); the
-- trigger below keeps the pair in the same transaction as that event.
CREATE TABLE message_reports (
    original_id  TEXT NOT NULL,
    report_id    TEXT NOT NULL,
    PRIMARY KEY (original_id, report_id)
);
CREATE INDEX message_reports_report ON message_reports(report_id);

CREATE TRIGGER message_reports_fill AFTER INSERT ON events
WHEN NEW.type = 'accepted' AND NEW.message_id IS NOT NULL
     AND instr(NEW.detail, 'original_message_id') > 0
     AND json_extract(NEW.detail, '$.original_message_id') IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO message_reports (original_id, report_id)
    VALUES (json_extract(NEW.detail, '$.original_message_id'), NEW.message_id);
END;

INSERT OR IGNORE INTO message_reports (original_id, report_id)
    SELECT json_extract(detail, '$.original_message_id'), message_id FROM events
    WHERE type = 'accepted' AND message_id IS NOT NULL
      AND instr(detail, 'original_message_id') > 0
      AND json_extract(detail, '$.original_message_id') IS NOT NULL;

-- A deleted message (original or report) takes its pairs with it.
CREATE TRIGGER message_reports_cleanup AFTER DELETE ON messages
BEGIN
    DELETE FROM message_reports WHERE original_id = OLD.id;
    DELETE FROM message_reports WHERE report_id = OLD.id;
END;

-- Recipients by state (the queue depth the console's overview and /metrics show),
-- kept by triggers in the same transaction as every recipient insert, state change
-- and delete, so that no read counts the recipients table. `shard` is always 0 here;
-- PostgreSQL uses the backend's pid (see its 0013) and folds the shards back.
CREATE TABLE recipient_state_counts (
    state  TEXT NOT NULL,
    shard  INTEGER NOT NULL DEFAULT 0,
    n      INTEGER NOT NULL,
    PRIMARY KEY (state, shard)
);
INSERT INTO recipient_state_counts (state, shard, n)
    SELECT state, 0, COUNT(*) FROM recipients GROUP BY state;

CREATE TRIGGER recipient_state_counts_insert AFTER INSERT ON recipients
BEGIN
    INSERT INTO recipient_state_counts (state, shard, n) VALUES (NEW.state, 0, 1)
    ON CONFLICT (state, shard) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER recipient_state_counts_update AFTER UPDATE OF state ON recipients
WHEN OLD.state <> NEW.state
BEGIN
    UPDATE recipient_state_counts SET n = n - 1 WHERE state = OLD.state AND shard = 0;
    INSERT INTO recipient_state_counts (state, shard, n) VALUES (NEW.state, 0, 1)
    ON CONFLICT (state, shard) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER recipient_state_counts_delete AFTER DELETE ON recipients
BEGIN
    UPDATE recipient_state_counts SET n = n - 1 WHERE state = OLD.state AND shard = 0;
END;

-- Subject search: a trigram index (FTS5, case-insensitive) over message_subjects, so a
-- substring that few subjects contain is found without reading every subject. Kept
-- by triggers on message_subjects (itself filled by triggers), built once here.
CREATE VIRTUAL TABLE message_subjects_fts USING fts5(
    subject, content = 'message_subjects', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO message_subjects_fts (message_subjects_fts) VALUES ('rebuild');
CREATE TRIGGER message_subjects_fts_insert AFTER INSERT ON message_subjects
BEGIN
    INSERT INTO message_subjects_fts (rowid, subject) VALUES (NEW.rowid, NEW.subject);
END;
CREATE TRIGGER message_subjects_fts_delete AFTER DELETE ON message_subjects
BEGIN
    INSERT INTO message_subjects_fts (message_subjects_fts, rowid, subject)
    VALUES ('delete', OLD.rowid, OLD.subject);
END;

-- Search by sender, newest first: the sender's messages in id order straight from the
-- index (a frequent sender has tens of thousands), instead of all of them sorted.
DROP INDEX messages_sender;
CREATE INDEX messages_sender ON messages(lower(mail_from), id);
