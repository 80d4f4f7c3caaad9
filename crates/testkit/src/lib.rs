//! Test fixtures shared by Mailroom's crates — a dev-dependency only, never shipped in
//! the binary. Owns in-process stand-ins for the outside world that tests talk to over
//! real loopback sockets on port 0.
//!
//! - [`dns`]: an authoritative DNS server ([`spawn_dns`]) answering from a [`TestZone`]
//!   built in code or from zone text, including failures (SERVFAIL, silence).

pub mod dns;

pub use dns::{DnsServerHandle, TestZone, ZoneParseError, spawn_dns};
