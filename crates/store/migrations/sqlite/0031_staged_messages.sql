-- Issue 14 (a message's commit at low load): a small round of messages handed straight
-- to delivery is first committed here, one row each (the message as JSON and its body
-- as `message_bodies` would keep it), and moved into the full schema later, many at a
-- time, in the transaction that deletes these rows (src/sqlite/staging.rs). Rows left
-- by a crash are moved when the store opens.
CREATE TABLE staged_messages (
    seq      INTEGER PRIMARY KEY,
    message  TEXT NOT NULL,
    body     BLOB NOT NULL,
    codec    INTEGER NOT NULL
);
