//! Delivery: every queued recipient reaches a final, recorded fate. The scheduler
//! claims due recipients under a lease (renewed while the work is in progress, fenced
//! when recorded) and hands them to bounded per-destination queues; workers resolve
//! routes, reuse connections, send, and classify each recipient's reply; outcomes are
//! written with their events in one transaction; bounces, expiries, delays past a
//! threshold and relays to peers without DSN produce RFC 3464 reports to the sender
//! when NOTIFY asks for them. The engine sees the store only through `DeliveryStore`.

pub use mailroom_proto::classify;
pub mod config;
pub mod dsn;
mod engine;
mod late;
mod lease;
mod outcome;
mod recorder;
mod report;
pub mod route;
pub mod schedule;
mod send;
pub mod shaper;
mod shaper_cache;
pub mod shaper_conn;
pub mod shaper_egress;
mod shaper_events;
mod shaper_feedback;
pub mod shaper_view;
pub mod shaping;
mod store;
pub mod tls_policy;
pub use mailroom_model::verp;
mod worker;
mod worker_shaping;

pub use config::{DeliveryConfig, StaticRoute};
pub use engine::{Engine, EngineHandoff};
pub use late::{LateFailure, LateReports};
pub use mailroom_smtp_client::{Timeouts, TlsMode};
pub use store::DeliveryStore;
pub use tls_policy::{TlsDecision, TransportSecurity};
