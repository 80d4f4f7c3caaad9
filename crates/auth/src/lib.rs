//! placeholder
mod arc;
mod error;
mod keys;
mod sign;
pub use arc::*;
pub use error::AuthError;
pub use keys::*;
pub use sign::*;
