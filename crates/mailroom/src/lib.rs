//! The library half of the `mailroom` crate: only configuration loading and
//! validation (`config`, `event_config`), so the fuzzers in `fuzz/` and other tools can
//! parse a `mailroom.toml` exactly as `mailroom serve` does. Everything else (wiring,
//! CLI, signals) stays in the binary (`main.rs`).

pub mod config;
pub mod event_config;
