//! The report-intake role (`ReportStore`), whose SQL is the same on SQLite and
//! PostgreSQL: written once as a macro that `sqlite/reports.rs` and
//! `postgres/reports.rs` expand for their store type, with their own `db` error mapping
//! and imports in scope at the expansion site (as `same_sql.rs` does for other roles).

/// `ReportStore` (received DMARC / TLS-RPT reports and their counters) for `$store`.
macro_rules! reports_impl {
    ($store:ident) => {
#[async_trait::async_trait]
impl ReportStore for $store {
    async fn report_domain(&self, domain: &str) -> Result<Option<TenantId>, StoreError> {
        let row = sqlx::query("SELECT tenant_id FROM domains WHERE name = $1")
            .bind(domain)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("report domain"))?;
        Ok(row.map(|r| TenantId::from_stored(r.get("tenant_id"))))
    }

    async fn record_report(&self, report: &ReceivedReport) -> Result<ReportRecorded, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("report"))?;
        let fresh = sqlx::query(
            "INSERT INTO received_reports (kind, org, report_id, domain, received_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, org, report_id) DO NOTHING",
        )
        .bind(report.kind.as_str())
        .bind(&report.org)
        .bind(&report.report_id)
        .bind(&report.domain)
        .bind(report.received_at)
        .execute(&mut *tx)
        .await
        .map_err(db("report"))?
        .rows_affected();
        if fresh == 0 {
            return Ok(ReportRecorded::Duplicate);
        }
        for r in &report.dmarc {
            sqlx::query(
                "INSERT INTO dmarc_report_rows (domain, day, source_ip, org, messages, \
                   spf_pass, spf_fail, dkim_pass, dkim_fail, dmarc_pass, dmarc_fail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (domain, day, source_ip, org) DO UPDATE SET \
                   messages = dmarc_report_rows.messages + excluded.messages, \
                   spf_pass = dmarc_report_rows.spf_pass + excluded.spf_pass, \
                   spf_fail = dmarc_report_rows.spf_fail + excluded.spf_fail, \
                   dkim_pass = dmarc_report_rows.dkim_pass + excluded.dkim_pass, \
                   dkim_fail = dmarc_report_rows.dkim_fail + excluded.dkim_fail, \
                   dmarc_pass = dmarc_report_rows.dmarc_pass + excluded.dmarc_pass, \
                   dmarc_fail = dmarc_report_rows.dmarc_fail + excluded.dmarc_fail",
            )
            .bind(&r.domain)
            .bind(&r.day)
            .bind(&r.source_ip)
            .bind(&r.org)
            .bind(r.messages)
            .bind(r.spf_pass)
            .bind(r.spf_fail)
            .bind(r.dkim_pass)
            .bind(r.dkim_fail)
            .bind(r.dmarc_pass)
            .bind(r.dmarc_fail)
            .execute(&mut *tx)
            .await
            .map_err(db("DMARC report row"))?;
        }
        for r in &report.tls {
            sqlx::query(
                "INSERT INTO tlsrpt_report_rows (domain, day, org, policy_type, result_type, count) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (domain, day, org, policy_type, result_type) DO UPDATE SET \
                   count = tlsrpt_report_rows.count + excluded.count",
            )
            .bind(&r.domain)
            .bind(&r.day)
            .bind(&r.org)
            .bind(&r.policy_type)
            .bind(&r.result_type)
            .bind(r.count)
            .execute(&mut *tx)
            .await
            .map_err(db("TLS-RPT report row"))?;
        }
        tx.commit().await.map_err(db("report"))?;
        Ok(ReportRecorded::Recorded)
    }

    async fn domain_reports(
        &self,
        domain: &str,
        from: &str,
        to: &str,
    ) -> Result<DomainReportRows, StoreError> {
        let rows = sqlx::query(
            "SELECT domain, day, source_ip, org, messages, spf_pass, spf_fail, dkim_pass, \
               dkim_fail, dmarc_pass, dmarc_fail FROM dmarc_report_rows \
             WHERE domain = $1 AND day >= $2 AND day <= $3 ORDER BY day, source_ip, org",
        )
        .bind(domain)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db("DMARC report rows"))?;
        let dmarc = rows
            .iter()
            .map(|r| DmarcRow {
                domain: r.get("domain"),
                day: r.get("day"),
                source_ip: r.get("source_ip"),
                org: r.get("org"),
                messages: r.get("messages"),
                spf_pass: r.get("spf_pass"),
                spf_fail: r.get("spf_fail"),
                dkim_pass: r.get("dkim_pass"),
                dkim_fail: r.get("dkim_fail"),
                dmarc_pass: r.get("dmarc_pass"),
                dmarc_fail: r.get("dmarc_fail"),
            })
            .collect();
        let rows = sqlx::query(
            "SELECT domain, day, org, policy_type, result_type, count FROM tlsrpt_report_rows \
             WHERE domain = $1 AND day >= $2 AND day <= $3 \
             ORDER BY day, org, policy_type, result_type",
        )
        .bind(domain)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db("TLS-RPT report rows"))?;
        let tls = rows
            .iter()
            .map(|r| TlsRptRow {
                domain: r.get("domain"),
                day: r.get("day"),
                org: r.get("org"),
                policy_type: r.get("policy_type"),
                result_type: r.get("result_type"),
                count: r.get("count"),
            })
            .collect();
        Ok(DomainReportRows { dmarc, tls })
    }
}
    };
}
