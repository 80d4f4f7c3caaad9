//! A small authoritative DNS server on hickory-server: a [`Zone`] says what each name
//! answers (records; and, for fault-injection in tests, NXDOMAIN, SERVFAIL or
//! silence), [`serve_dns`] serves it on a given address (UDP and TCP), and
//! [`spawn_dns`] on an ephemeral loopback port for tests. The zone can be replaced
//! while the server runs ([`DnsServerHandle::set_zone`]).
//!
//! Mailroom serves its managed domain zone with it (`managed_domain.dns_listen`: the
//! DKIM, SPF and return-path records of every managed domain), and the test suites use
//! it as the outside world's DNS.

mod server;
mod zone;
mod zone_text;

pub use server::{DnsServerHandle, serve_dns, spawn_dns};
pub use zone::Zone;
pub use zone_text::ZoneParseError;
