//! Fixtures shared by the delivery integration tests.

pub use mailroom_testkit::smtp_sink as sink;
pub mod spy;

// Not every test file builds messages or tenants.
#[allow(unused_imports)]
pub use mailroom_testkit::{messages, stores};

/// A fresh SQLite store in a temporary directory (kept alive by the returned guard)
/// with one tenant, `acme`: what every delivery test starts from.
pub use mailroom_testkit::stores::sqlite_with_tenant as store_with_tenant;
