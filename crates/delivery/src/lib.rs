//! Delivery: every queued recipient reaches a final, recorded fate. The scheduler
//! claims due recipients under a lease (renewed while the work is in progress, fenced
//! when recorded) and hands them to bounded per-destination queues; workers resolve
//! routes, reuse connections, send, and classify each recipient's reply; outcomes are
//! written with their events in one transaction; bounces and expiries produce RFC 3464
//! reports to the sender. The engine sees the store only through `DeliveryStore`.

pub mod classify;
pub mod config;
pub mod dsn;
mod engine;
mod lease;
mod outcome;
pub mod route;
pub mod schedule;
mod store;
pub mod verp;
mod worker;

pub use config::{DeliveryConfig, StaticRoute};
pub use engine::{Engine, EngineHandoff};
pub use mailroom_smtp_client::{Timeouts, TlsMode};
pub use store::DeliveryStore;
