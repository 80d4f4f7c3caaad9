//! Bounce and complaint intake: what arrives at the return-path addresses. Pure
//! parsers turn a received message into a typed report (`parse`: RFC 3464 DSNs in
//! `dsn`, RFC 5965 feedback reports in `arf`, qmail/Exim/sendmail text bounces in
//! `plain`); the pipeline (`pipeline`) matches reports to the original message and
//! recipient through the VERP address (`mailroom_model::verp`), classifies them with the
//! reply classifier shared with delivery (`mailroom_proto::classify`) and
//! records them through the store; `health` keeps each tenant's rolling bounce and
//! complaint rates and pauses a tenant that crosses the thresholds. DMARC aggregate
//! and TLS-RPT reports about tenants' domains (`aggregate`) arrive at the same listener,
//! at the reporting addresses of the return-path subdomains, and become counters.
//!
//! This crate owns no socket: the SMTP listener that receives the reports is in
//! `smtpd`, which asks `Intake` about each recipient and hands it the message. Store
//! roles: the pipeline takes `Arc<dyn IntakeStore>`; the health monitor `HealthStore`
//! (intake role plus two directory reads).

pub mod aggregate;
mod arf;
mod diagnostic;
mod dsn;
pub mod fields;
pub mod health;
mod original;
mod parse;
mod pipeline;
mod plain;
pub mod report;
mod reports;

pub use aggregate::{AggregateError, parse_aggregate};
pub use health::{HealthMonitor, HealthStore};
pub use parse::{MAX_INPUT, ParseError, parse};
pub use pipeline::{BounceAddress, Intake, IntakeError, LateFailure, LateReporter, Processed};
pub use reports::{DMARC_LOCAL, ReportAddress, TLSRPT_LOCAL};
