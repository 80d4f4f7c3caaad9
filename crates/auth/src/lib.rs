//! placeholder
mod arc;
mod checks;
mod error;
mod keys;
mod records;
mod sign;
pub use arc::*;
pub use checks::*;
pub use error::AuthError;
pub use keys::*;
pub use records::*;
pub use sign::*;
