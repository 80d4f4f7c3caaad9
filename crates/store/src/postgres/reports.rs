//! The report-intake role on PostgreSQL: received DMARC aggregate and TLS-RPT reports,
//! counted once each, summed per domain and day (same SQL as SQLite).

use super::{PgStore, db};
use crate::{
    DmarcRow, DomainReportRows, ReceivedReport, ReportRecorded, ReportStore, StoreError, TlsRptRow,
};
use mailroom_model::TenantId;
use sqlx::Row;

reports_impl!(PgStore);
