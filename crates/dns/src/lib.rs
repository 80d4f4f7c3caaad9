//! Mailroom's DNS edge. Owns the [`Resolver`] trait that the delivery side and the
//! domain record checks are given (MX, A/AAAA, TXT and CNAME lookups with typed
//! outcomes), its production implementation on
//! hickory ([`HickoryResolver`]) and an in-memory [`StaticResolver`] for callers' unit
//! tests.
//!
//! [`authority`] is the other direction: a small authoritative server (the managed
//! domain zone, and the test suites' DNS).
//!
//! It does not own cache policy (hickory's TTL-respecting cache is kept as is), route
//! decisions (Null MX, implicit MX, which addresses may be dialled) or retry timing:
//! those belong to `delivery`.

mod answer;
pub mod authority;
mod hickory;
mod mx;
mod resolver;
mod secure;
mod static_resolver;

pub use answer::{DnsError, MxAnswer, MxHost, Security, TlsaAnswer, TlsaRecord};
pub use hickory::{HickoryResolver, NameserverOptions, ResolverInitError};
pub use resolver::Resolver;
pub use secure::{SecureLookup, SecureQuery};
pub use static_resolver::StaticResolver;
