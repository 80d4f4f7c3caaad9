//! The report-intake role on both backends (conformance): a reporting domain maps to
//! its tenant; DMARC and TLS-RPT rows add up per domain, day, source and reporter; the
//! same report twice counts once; a range of days reads only its days; deleting the
//! domain deletes its reports.

#[macro_use]
mod common;

use mailroom_model::TenantId;
use mailroom_store::{DmarcRow, DynStore, ReceivedReport, ReportKind, ReportRecorded, TlsRptRow};

async fn tenant_with_domain(store: &DynStore, name: &str, domain: &str) -> TenantId {
    let t = common::tenant(store, name).await;
    common::verified_domain(store, &t, domain).await;
    t
}

fn dmarc_row(day: &str, ip: &str, org: &str, messages: i64, failed: i64) -> DmarcRow {
    DmarcRow {
        domain: "acme.test".into(),
        day: day.into(),
        source_ip: ip.into(),
        org: org.into(),
        messages,
        spf_pass: messages - failed,
        spf_fail: failed,
        dkim_pass: messages,
        dkim_fail: 0,
        dmarc_pass: messages - failed,
        dmarc_fail: failed,
    }
}

fn report(kind: ReportKind, org: &str, id: &str) -> ReceivedReport {
    ReceivedReport {
        kind,
        org: org.into(),
        report_id: id.into(),
        domain: "acme.test".into(),
        received_at: 1_000,
        dmarc: vec![],
        tls: vec![],
    }
}

conformance!(
    reports_add_up_once_per_report,
    |store: DynStore| async move {
        let t = tenant_with_domain(&store, "acme", "acme.test").await;
        assert_eq!(store.report_domain("acme.test").await.unwrap(), Some(t));
        assert_eq!(store.report_domain("other.test").await.unwrap(), None);

        let mut google = report(ReportKind::Dmarc, "google.com", "g-1");
        google.dmarc = vec![
            dmarc_row("2026-12-05", "192.0.2.10", "google.com", 10, 0),
            dmarc_row("2026-12-05", "198.51.100.7", "google.com", 3, 3),
        ];
        assert_eq!(
            store.record_report(&google).await.unwrap(),
            ReportRecorded::Recorded
        );
        // The same report again (a retry) changes nothing.
        assert_eq!(
            store.record_report(&google).await.unwrap(),
            ReportRecorded::Duplicate
        );
        // Another report of the same org, day and source adds to the row.
        let mut google2 = report(ReportKind::Dmarc, "google.com", "g-2");
        google2.dmarc = vec![dmarc_row("2026-12-05", "192.0.2.10", "google.com", 5, 1)];
        store.record_report(&google2).await.unwrap();
        // The same id from another reporter is another report.
        let mut ms = report(ReportKind::Dmarc, "Outlook.com", "g-1");
        ms.dmarc = vec![dmarc_row("2026-12-06", "192.0.2.10", "Outlook.com", 2, 0)];
        assert_eq!(
            store.record_report(&ms).await.unwrap(),
            ReportRecorded::Recorded
        );
        let mut tls = report(ReportKind::TlsRpt, "google.com", "g-1");
        tls.tls = vec![
            TlsRptRow {
                domain: "acme.test".into(),
                day: "2026-12-05".into(),
                org: "google.com".into(),
                policy_type: "sts".into(),
                result_type: "success".into(),
                count: 40,
            },
            TlsRptRow {
                domain: "acme.test".into(),
                day: "2026-12-05".into(),
                org: "google.com".into(),
                policy_type: "sts".into(),
                result_type: "certificate-expired".into(),
                count: 2,
            },
        ];
        // Same reporter and id as a DMARC report, but another kind: recorded.
        assert_eq!(
            store.record_report(&tls).await.unwrap(),
            ReportRecorded::Recorded
        );

        let rows = store
            .domain_reports("acme.test", "2026-12-01", "2026-12-31")
            .await
            .unwrap();
        assert_eq!(
            rows.dmarc,
            vec![
                dmarc_row("2026-12-05", "192.0.2.10", "google.com", 15, 1),
                dmarc_row("2026-12-05", "198.51.100.7", "google.com", 3, 3),
                dmarc_row("2026-12-06", "192.0.2.10", "Outlook.com", 2, 0),
            ]
        );
        assert_eq!(
            rows.tls
                .iter()
                .map(|r| (r.result_type.as_str(), r.count))
                .collect::<Vec<_>>(),
            vec![("certificate-expired", 2), ("success", 40)]
        );
        // Only the days asked for.
        let one_day = store
            .domain_reports("acme.test", "2026-12-06", "2026-12-06")
            .await
            .unwrap();
        assert_eq!(one_day.dmarc.len(), 1);
        assert!(one_day.tls.is_empty());
        assert_eq!(
            store
                .domain_reports("other.test", "2026-12-01", "2026-12-31")
                .await
                .unwrap(),
            Default::default()
        );

        // The domain goes, its reports with it: a later owner of the name starts clean.
        store.delete_domain("acme.test").await.unwrap().unwrap();
        tenant_with_domain(&store, "later", "acme.test").await;
        assert_eq!(
            store
                .domain_reports("acme.test", "2026-12-01", "2026-12-31")
                .await
                .unwrap(),
            Default::default()
        );
        assert_eq!(
            store.record_report(&google).await.unwrap(),
            ReportRecorded::Recorded
        );
    }
);
