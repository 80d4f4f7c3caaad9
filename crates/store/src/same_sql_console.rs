//! The console role (`ConsoleStore`), whose SQL is the same on SQLite and PostgreSQL
//! but for a few dialect points: written once as a macro that `sqlite/console.rs` and
//! `postgres/console.rs` expand for their store type and `sqlx` database, with their
//! own `db` error mapping, imports and `LATEST_REPLY_SQL` in scope at the expansion
//! site (as `same_sql.rs` does for other roles). Each backend supplies the dialect
//! points on its store type: `STATS_NO_GROUP` and `STATS_SUM` (the stats columns),
//! `COMMON_STATE_MATCH` (the recipient-state filter for a common state),
//! `push_subject_match` (the subject filter) and `after_counter_prune`.

/// `ConsoleStore` (sessions, counters, message search and detail, the queue by
/// destination) for `$store` on the `sqlx` database `$db`.
macro_rules! console_impl {
    ($store:ident, $db:ty) => {
#[async_trait::async_trait]
impl ConsoleStore for $store {
    async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, role, tenant_id, api_key_id, csrf_token, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.token_hash)
        .bind(if s.tenant_id.is_some() {
            "tenant"
        } else {
            "operator"
        })
        .bind(s.tenant_id.as_ref().map(|t| t.as_str()))
        .bind(s.api_key_id.as_ref().map(|k| k.as_str()))
        .bind(&s.csrf_token)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(self.pool())
        .await
        .map_err(db("session"))?;
        Ok(())
    }

    async fn get_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT s.token_hash, s.tenant_id, s.api_key_id, s.csrf_token, s.created_at, \
             s.expires_at, k.scope, t.name FROM console_sessions s \
             LEFT JOIN api_keys k ON k.id = s.api_key_id LEFT JOIN tenants t ON t.id = s.tenant_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await
        .map_err(db("session"))?;
        Ok(row.map(|r| SessionRecord {
            token_hash: r.get("token_hash"),
            tenant_id: r
                .get::<Option<String>, _>("tenant_id")
                .map(TenantId::from_stored),
            api_key_id: r
                .get::<Option<String>, _>("api_key_id")
                .map(ApiKeyId::from_stored),
            csrf_token: r.get("csrf_token"),
            created_at: r.get("created_at"),
            expires_at: r.get("expires_at"),
            scope: r
                .get::<Option<&str>, _>("scope")
                .map(|s| KeyScope::parse(s).unwrap_or(KeyScope::Read)),
            tenant_name: r.get("name"),
        }))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await
            .map_err(db("session"))?;
        Ok(r.rows_affected() > 0)
    }

    async fn prune_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(db("session"))?;
        Ok(r.rows_affected())
    }

    async fn prune_counters(&self, now: i64) -> Result<u64, StoreError> {
        let (minute, hour) = crate::console::prune_cutoffs(now);
        let r = sqlx::query(crate::console::PRUNE_COUNTERS_SQL)
            .bind(minute)
            .bind(hour)
            .execute(self.pool())
            .await
            .map_err(db("counters"))?;
        self.after_counter_prune().await?;
        Ok(r.rows_affected())
    }

    async fn stats(&self, q: &StatsQuery) -> Result<Vec<StatsRow>, StoreError> {
        let group = match q.split {
            StatsSplit::None => Self::STATS_NO_GROUP,
            StatsSplit::Tenant => "tenant_id",
            StatsSplit::Domain => "domain",
        };
        let mut qb: QueryBuilder<$db> = QueryBuilder::new("SELECT bucket, ");
        qb.push(group)
            .push(" AS grp, kind, ")
            .push(Self::STATS_SUM)
            .push(" AS n FROM event_counters WHERE granularity = ")
            .push_bind(q.granularity.as_str())
            .push(" AND bucket >= ")
            .push_bind(q.from)
            .push(" AND bucket < ")
            .push_bind(q.to);
        if let Some(t) = &q.tenant {
            qb.push(" AND tenant_id = ").push_bind(t.as_str());
        }
        qb.push(" GROUP BY bucket, grp, kind ORDER BY bucket, grp, kind");
        let rows = qb
            .build()
            .fetch_all(self.pool())
            .await
            .map_err(db("stats"))?;
        Ok(rows
            .iter()
            .map(|r| StatsRow {
                bucket: r.get("bucket"),
                group: r.get("grp"),
                kind: r.get("kind"),
                n: r.get("n"),
            })
            .collect())
    }

    async fn search_messages(&self, s: &MessageSearch) -> Result<Vec<MessageSummary>, StoreError> {
        let mut qb: QueryBuilder<$db> = QueryBuilder::new(
            "SELECT m.id, m.tenant_id, m.mail_from, m.received_at, m.size, m.meta, ms.subject \
             FROM messages m LEFT JOIN message_subjects ms ON ms.message_id = m.id WHERE 1 = 1",
        );
        if let Some(t) = &s.tenant {
            qb.push(" AND m.tenant_id = ").push_bind(t.as_str());
        }
        if let Some(c) = &s.before {
            qb.push(" AND m.id < ").push_bind(c.as_str());
        }
        if let Some(from) = s.from {
            qb.push(" AND m.id >= ").push_bind(id_floor(from));
        }
        if let Some(to) = s.to {
            qb.push(" AND m.id < ").push_bind(id_floor(to));
        }
        if let Some(r) = &s.recipient {
            qb.push(" AND m.id IN (SELECT message_id FROM recipients WHERE lower(address) = ")
                .push_bind(r.to_lowercase())
                .push(")");
        }
        if let Some(x) = &s.sender {
            qb.push(" AND lower(m.mail_from) = ")
                .push_bind(x.to_lowercase());
        }
        if let Some(x) = &s.rfc_message_id {
            let bare = x.trim().trim_start_matches('<').trim_end_matches('>');
            // As a subquery, so that the `messages_rfc_id` index drives it.
            qb.push(" AND m.id IN (SELECT id FROM messages WHERE rfc_message_id IN (")
                .push_bind(bare.to_string())
                .push(", ")
                .push_bind(format!("<{bare}>"))
                .push("))");
        }
        if let Some(x) = &s.tag {
            qb.push(" AND m.id IN (SELECT message_id FROM message_tags WHERE tag = ")
                .push_bind(x.clone())
                .push(")");
        }
        if let Some(x) = &s.state {
            let n: i64 = sqlx::query_scalar(crate::console::STATE_COUNT_SQL)
                .bind(x)
                .fetch_one(self.pool())
                .await
                .map_err(db("message search"))?;
            if n <= crate::console::RARE_STATE {
                qb.push(" AND m.id IN (SELECT message_id FROM recipients WHERE state = ")
                    .push_bind(x.clone())
                    .push(")");
            } else {
                qb.push(Self::COMMON_STATE_MATCH)
                    .push_bind(x.clone())
                    .push(")");
            }
        }
        if let Some(x) = &s.subject {
            self.push_subject_match(&mut qb, x).await?;
        }
        qb.push(" ORDER BY m.id DESC LIMIT ").push_bind(s.limit);
        let rows = qb
            .build()
            .fetch_all(self.pool())
            .await
            .map_err(db("message search"))?;
        let mut out: Vec<MessageSummary> = rows
            .iter()
            .map(|r| MessageSummary {
                id: MessageId::from_stored(r.get("id")),
                tenant_id: TenantId::from_stored(r.get("tenant_id")),
                mail_from: r.get("mail_from"),
                subject: r.get("subject"),
                received_at: r.get("received_at"),
                size: r.get("size"),
                tags: meta_tags(r.get::<Option<&str>, _>("meta")),
                recipients: Vec::new(),
            })
            .collect();
        if out.is_empty() {
            return Ok(out);
        }
        let mut qb: QueryBuilder<$db> = QueryBuilder::new(
            "SELECT message_id, address, state FROM recipients WHERE message_id IN (",
        );
        let mut sep = qb.separated(", ");
        for m in &out {
            sep.push_bind(m.id.as_str());
        }
        qb.push(") ORDER BY message_id, idx");
        let rows = qb
            .build()
            .fetch_all(self.pool())
            .await
            .map_err(db("message search"))?;
        let mut by_id: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for r in &rows {
            by_id
                .entry(r.get("message_id"))
                .or_default()
                .push((r.get("address"), r.get("state")));
        }
        for m in &mut out {
            m.recipients = by_id.remove(m.id.as_str()).unwrap_or_default();
        }
        Ok(out)
    }

    async fn message_detail(&self, id: &MessageId) -> Result<Option<MessageDetail>, StoreError> {
        use crate::console::{DETAIL_SQL, MESSAGE_EVENTS_SQL, REPORTS_SQL};
        let mut tx = self.pool().begin().await.map_err(db("message"))?;
        let Some(row) = sqlx::query(DETAIL_SQL)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("message"))?
        else {
            return Ok(None);
        };
        let reports = sqlx::query(REPORTS_SQL)
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db("message"))?;
        let events = sqlx::query(MESSAGE_EVENTS_SQL)
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db("message"))?;
        tx.commit().await.map_err(db("message"))?;
        Ok(Some(MessageDetail {
            subject: row.get("subject"),
            meta: row.get("meta"),
            reports: reports
                .iter()
                .map(|r| ReportSent {
                    id: MessageId::from_stored(r.get("id")),
                    received_at: r.get("received_at"),
                    to: r.get("address"),
                    state: r.get("state"),
                })
                .collect(),
            message_events: events.iter().filter_map(super::event_from_row).collect(),
        }))
    }

    async fn queue_destinations(&self, limit: i64) -> Result<Vec<DestinationQueue>, StoreError> {
        let rows = sqlx::query(crate::console::QUEUE_DESTINATIONS_SQL)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(db("queue"))?;
        let latest = sqlx::query(LATEST_REPLY_SQL)
            .fetch_all(self.pool())
            .await
            .map_err(db("queue"))?;
        let mut last: HashMap<String, String> = latest
            .iter()
            .map(|r| (r.get("domain"), r.get("last_reply")))
            .collect();
        Ok(rows
            .iter()
            .map(|r| {
                let domain: String = r.get("domain");
                DestinationQueue {
                    last_error: last.remove(&domain),
                    domain,
                    count: r.get("n"),
                    oldest_at: r.get("oldest"),
                }
            })
            .collect())
    }
}
    };
}
