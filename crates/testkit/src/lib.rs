//! Test fixtures shared by Mailroom's crates — a dev-dependency only, never shipped in
//! the binary. Owns in-process stand-ins for the outside world that tests talk to over
//! real loopback sockets on port 0.
//!
//! - DNS: an authoritative server ([`spawn_dns`]) answering from a [`TestZone`] built in
//!   code or from zone text, including failures (SERVFAIL, silence). The server itself
//!   is production code (`mailroom_dns::authority`, which also serves the managed
//!   domain zone); this crate keeps the names the tests use.
//! - SMTP: a scripted exchanger ([`smtp_sink::spawn`]: RCPT replies by local part,
//!   switches for 421 greetings, drops in DATA, held replies, broken STARTTLS) and a
//!   tarpit that accepts and never greets ([`smtp_sink::spawn_tarpit`]).
//!
//! The webhook receiver the end-to-end suite uses is `tests/e2e/fakes.py`; the one Rust
//! webhook receiver lives in `crates/events/tests/dispatcher.rs`, its only user.

pub mod smtp_sink;

pub use mailroom_dns::authority::{DnsServerHandle, Zone as TestZone, ZoneParseError, spawn_dns};
