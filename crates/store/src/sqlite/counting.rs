//! `event_counters` on SQLite, kept per transaction rather than per event row (migration
//! 0030). Every INSERT into `events` on this backend is made by the writer task
//! (`writer.rs`, `ops.rs`), and SQLite runs one write transaction at a time, so when
//! the writer is about to commit, the events after the `counters` cursor are exactly
//! those not yet counted: committed earlier by no one else, and none still pending. The
//! statements below count them (per minute, hour and day, tenant, recipient domain and
//! kind, as the trigger did) in one grouped upsert, move the cursor, and commit with
//! the events. The dashboard reads them as before (`console.rs`).

/// The counting statements, each ended by `; `, as a literal so that `concat!` can put
/// them in front of a `COMMIT` (one round trip to SQLite's thread, not two).
macro_rules! count_new_events {
    () => {
        "INSERT INTO event_counters (granularity, bucket, tenant_id, domain, kind, shard, n) \
         SELECT g.name, e.at - (e.at % g.ms), e.tenant_id, \
                CASE WHEN e.recipient IS NULL OR instr(e.recipient, '@') = 0 THEN '' \
                     ELSE lower(substr(e.recipient, instr(e.recipient, '@') + 1)) END, \
                CASE WHEN e.type = 'bounced' THEN \
                         CASE WHEN e.bounce_class = 'soft' \
                              THEN 'bounced_soft' ELSE 'bounced_hard' END \
                     ELSE e.type END, \
                0, COUNT(*) \
         FROM events e \
         JOIN (SELECT 'minute' AS name, 60000 AS ms \
               UNION ALL SELECT 'hour', 3600000 \
               UNION ALL SELECT 'day', 86400000) AS g \
         WHERE e.seq > (SELECT seq FROM event_cursors WHERE name = 'counters') \
           AND e.tenant_id IS NOT NULL AND e.message_id IS NOT NULL \
         GROUP BY 1, 2, 3, 4, 5 \
         ON CONFLICT (granularity, bucket, tenant_id, domain, kind, shard) \
         DO UPDATE SET n = n + excluded.n; \
         UPDATE event_cursors SET seq = (SELECT MAX(seq) FROM events) \
         WHERE name = 'counters' AND seq < (SELECT MAX(seq) FROM events); "
    };
}

/// Counts the transaction's new events (to run just before its `COMMIT`).
pub(super) const COUNT_NEW_EVENTS: &str = count_new_events!();

/// Counts the transaction's new events, then commits.
pub(super) const COUNT_AND_COMMIT: &str = concat!(count_new_events!(), "COMMIT");
