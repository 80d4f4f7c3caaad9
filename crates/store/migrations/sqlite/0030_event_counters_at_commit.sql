-- Issue 14 (the store's share of a message's CPU): `event_counters` is no longer kept
-- by a trigger run for every event row. That trigger made three upserts per event, two
-- events a delivered message (about 15 % of the SQLite work in scripts/store-wal-model;
-- in the server's benchmark the difference is within its noise). The
-- writer task, the only connection that inserts events on this backend
-- (src/sqlite/events.rs), now counts the events its transaction added right before it
-- commits (src/sqlite/counting.rs): one grouped upsert a transaction, over the seqs
-- after the `counters` cursor, which it then moves. The counts are the same and commit
-- with the events they count. Every event already stored was counted by the trigger.
DROP TRIGGER event_counters_count;
INSERT INTO event_cursors (name, seq) VALUES ('counters', (SELECT COALESCE(MAX(seq), 0) FROM events));
