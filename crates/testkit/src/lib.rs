//! Test fixtures shared by Mailroom's crates — a dev-dependency only, never shipped in
//! the binary. Owns in-process stand-ins for the outside world that tests talk to over
//! real loopback sockets on port 0.
//!
//! - DNS: an authoritative server ([`spawn_dns`]) answering from a [`TestZone`] built in
//!   code or from zone text, including failures (SERVFAIL, silence). The server itself
//!   is production code (`mailroom_dns::authority`, which also serves the managed
//!   domain zone); this crate keeps the names the tests use, and [`serve_dns`] pairs
//!   a server with a resolver that asks only it.
//! - SMTP: a scripted exchanger ([`smtp_sink::spawn`]: RCPT replies by local part,
//!   switches for 421 greetings, drops in DATA, held replies, broken STARTTLS) and a
//!   tarpit that accepts and never greets ([`smtp_sink::spawn_tarpit`]).
//! - Store fixtures: a temporary SQLite store and tenants ([`stores`]), and the
//!   `NewMessage` / `Outcome` builders every crate's tests enqueue and record with
//!   ([`messages`]). They are what the store crate's own tests build with too; its
//!   conformance harness (one test on both backends) stays in `crates/store/tests`.
//!
//! The webhook receiver the end-to-end suite uses is `tests/e2e/fakes.py`; the one Rust
//! webhook receiver lives in `crates/events/tests/dispatcher.rs`, its only user.

pub mod messages;
pub mod smtp_sink;
pub mod stores;

pub use mailroom_dns::authority::{DnsServerHandle, Zone as TestZone, ZoneParseError, spawn_dns};

/// Serves `zone` on 127.0.0.1:0 and returns a resolver that asks only that server
/// (2 s per query), with the server's handle (keep it: dropping it stops the server;
/// it also lists the queries seen).
pub async fn serve_dns(zone: TestZone) -> (mailroom_dns::HickoryResolver, DnsServerHandle) {
    let (addr, handle) = spawn_dns(zone).await;
    let resolver =
        mailroom_dns::HickoryResolver::with_nameservers(&[addr], std::time::Duration::from_secs(2))
            .expect("resolver");
    (resolver, handle)
}
