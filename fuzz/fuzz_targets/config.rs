//! Fuzz target: the configuration parser (`mailroom::config::parse`, what
//! `mailroom serve --config` and `check-config` use). The input is TOML text,
//! optionally followed by a NUL and `NAME=value` lines taken as environment
//! overrides. Must never panic: bad input is an error naming the key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, env) = text.split_once('\0').unwrap_or((text, ""));
    let env = env.lines().filter_map(|l| {
        let (k, v) = l.split_once('=')?;
        Some((k.to_string(), v.to_string()))
    });
    if let Err(e) = mailroom::config::parse(toml, "fuzz.toml", env) {
        assert!(!format!("{e:#}").is_empty());
    }
});
