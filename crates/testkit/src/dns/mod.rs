//! In-process DNS for tests: a [`TestZone`] says what each name answers (records,
//! NXDOMAIN, SERVFAIL, or silence) and [`spawn_dns`] serves it on 127.0.0.1, UDP and TCP
//! on one port, with hickory-server doing the wire work.

mod server;
mod zone;
mod zone_text;

pub use server::{DnsServerHandle, spawn_dns};
pub use zone::TestZone;
pub use zone_text::ZoneParseError;
