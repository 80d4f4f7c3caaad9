-- Issue 14 (disk per queued message): the subject search index (0024) keeps which
-- subjects hold each trigram but no longer where in them (`detail = 'none'`), which
-- takes it from about 105 to about 44 bytes per subject. Its only use is
-- `subject LIKE '%x%'`: FTS5 then returns the subjects holding every trigram of `x`,
-- in any order, and SQLite checks the LIKE itself on each of them (FTS5 never answers
-- a LIKE alone), as the message search also does on `message_subjects.subject`
-- (src/sqlite/console.rs). So the answers are the same; a few more candidates are read.
-- The triggers of 0024 keep writing to the index under the same name.
DROP TABLE message_subjects_fts;
CREATE VIRTUAL TABLE message_subjects_fts USING fts5(
    subject, content = 'message_subjects', content_rowid = 'rowid', tokenize = 'trigram',
    detail = 'none'
);
INSERT INTO message_subjects_fts (message_subjects_fts) VALUES ('rebuild');
