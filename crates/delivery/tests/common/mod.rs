//! Fixtures shared by the delivery integration tests.

pub mod sink;
pub mod spy;
