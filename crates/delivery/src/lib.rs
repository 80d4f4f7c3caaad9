//! Delivery: every queued recipient reaches a final, recorded fate. The scheduler
//! claims due recipients under a lease and hands them to bounded per-destination
//! queues; workers resolve routes, reuse connections, send, and classify each
//! recipient's reply; outcomes are written with their events in one transaction;
//! bounces and expiries produce RFC 3464 reports to the sender.

pub mod classify;
pub mod config;
pub mod dsn;
mod engine;
mod outcome;
pub mod route;
pub mod schedule;
pub mod verp;
mod worker;

pub use config::{DeliveryConfig, StaticRoute};
pub use engine::{Engine, EngineHandoff};
pub use mailroom_smtp_client::{Timeouts, TlsMode};
