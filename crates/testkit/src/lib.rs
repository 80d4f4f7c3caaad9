//! Test fixtures shared by Mailroom's crates — a dev-dependency only, never shipped in
//! the binary. Owns in-process stand-ins for the outside world that tests talk to over
//! real loopback sockets on port 0.
//!
//! - DNS: an authoritative server ([`spawn_dns`]) answering from a [`TestZone`] built in
//!   code or from zone text, including failures (SERVFAIL, silence). The server itself
//!   is production code (`mailroom_dns::authority`, which also serves the managed
//!   domain zone); this crate keeps the names the tests use.

pub use mailroom_dns::authority::{DnsServerHandle, Zone as TestZone, ZoneParseError, spawn_dns};
