//! The library half of the `mailroom` crate: configuration loading and validation
//! (`config`, `event_config`, and `domains`, whose sections the configuration holds),
//! and the small file helpers they use, so the fuzzers in `fuzz/` and other tools can
//! parse a `mailroom.toml` exactly as `mailroom serve` does. Wiring, CLI and signals stay
//! in the binary (`main.rs`).

pub mod acme_config;
pub mod config;
pub mod console_config;
pub mod content_config;
pub mod delivery_config;
pub mod domains;
pub mod event_config;
pub mod files;
pub mod intake_config;
pub mod secrets_key;
pub mod shaping_config;
pub mod storage_config;
pub mod tls_policy_config;
