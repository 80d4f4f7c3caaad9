-- Message bodies move to their own table, stored raw (codec 0) or deflated (codec 1,
-- see src/body_codec.rs), so that a finished message's body can be deleted (its pages
-- freed, then returned by incremental vacuum) while its message row stays for the API.
-- Every existing body moves over unchanged (codec 0).
CREATE TABLE message_bodies (
    message_id  TEXT PRIMARY KEY,
    codec       INTEGER NOT NULL,
    body        BLOB NOT NULL
);
INSERT INTO message_bodies (message_id, codec, body)
    SELECT id, 0, body FROM messages WHERE length(body) > 0;
UPDATE messages SET body = X'' WHERE length(body) > 0;
