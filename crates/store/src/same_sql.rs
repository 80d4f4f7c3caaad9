//! Store roles whose SQL is the same on SQLite and PostgreSQL (sqlx binds `$n` on
//! both): each is written once here, as a macro that `sqlite/` and `postgres/` expand
//! for their own store type (and row type), with their own `db` error mapping and
//! imports in scope at the expansion site.

/// `TlsPolicyStore` (the MTA-STS policy cache, the TLS-RPT day counters) for `$store`.
macro_rules! tls_policy_impl {
    ($store:ident) => {
#[async_trait::async_trait]
impl TlsPolicyStore for $store {
    async fn get_sts_policy(&self, domain: &str) -> Result<Option<StsPolicyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT domain, policy_id, policy, fetched_at, expires_at FROM sts_policies WHERE domain = $1",
        )
        .bind(domain)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("MTA-STS policy"))?;
        Ok(row.map(|r| StsPolicyRecord {
            domain: r.get("domain"),
            policy_id: r.get("policy_id"),
            policy: r.get("policy"),
            fetched_at: r.get("fetched_at"),
            expires_at: r.get("expires_at"),
        }))
    }

    async fn put_sts_policy(&self, record: &StsPolicyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sts_policies (domain, policy_id, policy, fetched_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id, \
               policy = excluded.policy, fetched_at = excluded.fetched_at, \
               expires_at = excluded.expires_at",
        )
        .bind(&record.domain)
        .bind(&record.policy_id)
        .bind(&record.policy)
        .bind(record.fetched_at)
        .bind(record.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db("MTA-STS policy"))?;
        Ok(())
    }

    async fn count_tls_result(&self, r: &TlsResult) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tls_results (day, domain, policy_type, policy_string, mx_host, result_type, count) \
             VALUES ($1, $2, $3, $4, $5, $6, 1) \
             ON CONFLICT (day, domain, policy_type, policy_string, mx_host, result_type) \
             DO UPDATE SET count = tls_results.count + 1",
        )
        .bind(&r.day)
        .bind(&r.domain)
        .bind(&r.policy_type)
        .bind(&r.policy_string)
        .bind(&r.mx_host)
        .bind(&r.result_type)
        .execute(&self.pool)
        .await
        .map_err(db("TLS result"))?;
        Ok(())
    }

    async fn tls_results_for_day(&self, day: &str) -> Result<Vec<TlsResultCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, domain, policy_type, policy_string, mx_host, result_type, count \
             FROM tls_results WHERE day = $1 \
             ORDER BY domain, policy_type, policy_string, mx_host, result_type",
        )
        .bind(day)
        .fetch_all(&self.pool)
        .await
        .map_err(db("TLS result"))?;
        Ok(rows
            .iter()
            .map(|r| TlsResultCount {
                result: TlsResult {
                    day: r.get("day"),
                    domain: r.get("domain"),
                    policy_type: r.get("policy_type"),
                    policy_string: r.get("policy_string"),
                    mx_host: r.get("mx_host"),
                    result_type: r.get("result_type"),
                },
                count: r.get("count"),
            })
            .collect())
    }
}
    };
}

/// `ShapingStore` (throttles, egress counts, warm-up starts, tenant pools) for
/// `$store`, whose rows are `$row`.
macro_rules! shaping_impl {
    ($store:ident, $row:ty) => {
fn throttle(r: &$row) -> ThrottleRecord {
    let tenant: String = r.get("tenant");
    ThrottleRecord {
        id: r.get("id"),
        site: r.get("site"),
        provider: r.get("provider"),
        tenant: (!tenant.is_empty()).then_some(tenant),
        action: r.get("action"),
        value: r.get("value"),
        rule: r.get("rule"),
        cause: r.get("cause"),
        created_at: r.get("created_at"),
        expires_at: r.get("expires_at"),
    }
}

#[async_trait::async_trait]
impl ShapingStore for $store {
    async fn add_throttle(&self, t: &ThrottleRecord) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO shaping_throttles \
               (site, provider, tenant, action, value, rule, cause, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (site, tenant, action) DO UPDATE SET provider = excluded.provider, \
               value = excluded.value, rule = excluded.rule, cause = excluded.cause, \
               created_at = excluded.created_at, expires_at = excluded.expires_at \
             RETURNING id",
        )
        .bind(&t.site)
        .bind(&t.provider)
        .bind(t.tenant.as_deref().unwrap_or(""))
        .bind(&t.action)
        .bind(t.value)
        .bind(&t.rule)
        .bind(&t.cause)
        .bind(t.created_at)
        .bind(t.expires_at)
        .fetch_one(&self.pool)
        .await
        .map_err(db("throttle"))?;
        Ok(row.get("id"))
    }

    async fn active_throttles(&self, now: i64) -> Result<Vec<ThrottleRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM shaping_throttles WHERE expires_at > $1 ORDER BY site, id")
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(db("throttle"))?;
        Ok(rows.iter().map(throttle).collect())
    }

    async fn clear_throttles(&self, site: Option<&str>, now: i64) -> Result<u64, StoreError> {
        let active = sqlx::query(
            "DELETE FROM shaping_throttles WHERE ($1 IS NULL OR site = $1) AND expires_at > $2",
        )
        .bind(site)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("throttle"))?
        .rows_affected();
        sqlx::query("DELETE FROM shaping_throttles WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db("throttle"))?;
        Ok(active)
    }

    async fn add_egress_counts(&self, counts: &[EgressCount]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("egress count"))?;
        for c in counts {
            sqlx::query(
                "INSERT INTO egress_counts (day, address, provider, sent) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (day, address, provider) DO UPDATE SET sent = egress_counts.sent + excluded.sent",
            )
            .bind(c.day)
            .bind(&c.address)
            .bind(&c.provider)
            .bind(c.sent)
            .execute(&mut *tx)
            .await
            .map_err(db("egress count"))?;
        }
        tx.commit().await.map_err(db("egress count"))?;
        Ok(())
    }

    async fn egress_counts(&self, day: i64) -> Result<Vec<EgressCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, address, provider, sent FROM egress_counts WHERE day = $1 \
             ORDER BY address, provider",
        )
        .bind(day)
        .fetch_all(&self.pool)
        .await
        .map_err(db("egress count"))?;
        Ok(rows
            .iter()
            .map(|r| EgressCount {
                day: r.get("day"),
                address: r.get("address"),
                provider: r.get("provider"),
                sent: r.get("sent"),
            })
            .collect())
    }

    async fn warmup_start(&self, address: &str, day: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO egress_warmup (address, start_day) VALUES ($1, $2) \
             ON CONFLICT (address) DO UPDATE SET start_day = egress_warmup.start_day \
             RETURNING start_day",
        )
        .bind(address)
        .bind(day)
        .fetch_one(&self.pool)
        .await
        .map_err(db("warm-up"))?;
        Ok(row.get("start_day"))
    }

    async fn set_tenant_pool(
        &self,
        tenant: &TenantId,
        pool: Option<&str>,
    ) -> Result<bool, StoreError> {
        let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("tenant"))?
            .is_some();
        if !exists {
            return Ok(false);
        }
        match pool {
            Some(p) => sqlx::query(
                "INSERT INTO tenant_egress_pools (tenant_id, pool) VALUES ($1, $2) \
                 ON CONFLICT (tenant_id) DO UPDATE SET pool = excluded.pool",
            )
            .bind(tenant.as_str())
            .bind(p),
            None => sqlx::query("DELETE FROM tenant_egress_pools WHERE tenant_id = $1")
                .bind(tenant.as_str()),
        }
        .execute(&self.pool)
        .await
        .map_err(db("egress pool"))?;
        Ok(true)
    }

    async fn tenant_pools(&self) -> Result<Vec<(TenantId, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT tenant_id, pool FROM tenant_egress_pools ORDER BY tenant_id")
                .fetch_all(&self.pool)
                .await
                .map_err(db("egress pool"))?;
        Ok(rows
            .iter()
            .map(|r| (TenantId::from_stored(r.get("tenant_id")), r.get("pool")))
            .collect())
    }

    async fn record_shaping_event(
        &self,
        tenant: Option<&TenantId>,
        detail: mailroom_model::ShapingDetail,
    ) -> Result<(), StoreError> {
        // The insert itself is the backend's (the stream's seq order is commit order).
        self.insert_shaping_event(mailroom_model::Event {
            id: mailroom_model::EventId::generate(),
            kind: mailroom_model::EventType::ShapingAction,
            at: mailroom_model::now_millis(),
            message_id: None,
            tenant_id: tenant.cloned(),
            recipient: None,
            detail: mailroom_model::EventDetail::from(detail).to_value(),
        })
        .await
    }
}
    };
}
