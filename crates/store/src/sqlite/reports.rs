//! The report-intake role on SQLite: received DMARC aggregate and TLS-RPT reports,
//! counted once each, summed per domain and day (same SQL as PostgreSQL).

use super::{SqliteStore, db};
use crate::{
    DmarcRow, DomainReportRows, ReceivedReport, ReportRecorded, ReportStore, StoreError, TlsRptRow,
};
use mailroom_model::TenantId;
use sqlx::Row;

reports_impl!(SqliteStore);
