-- The suppression list pages by address (keyset: `address > $after ORDER BY address`).
-- SQLite compares text by code point (BINARY); a PostgreSQL database created with a
-- natural-language collation (en_US, ICU) would order "a.b", "a-b", "a_b", "a+1"
-- differently. Byte order on both backends, and the primary key index still serves
-- the page query.
ALTER TABLE suppressions ALTER COLUMN address TYPE TEXT COLLATE "C";
