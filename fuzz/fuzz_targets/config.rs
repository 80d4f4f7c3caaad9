//! Fuzz target: the configuration parser (`mailroom::config::parse`, what
//! `mailroom serve --config` and `check-config` use). The input is TOML text,
//! optionally followed by a NUL and `NAME=value` lines taken as environment
//! overrides. Must never panic, and bad input is an error that says where: the file
//! and its line (a TOML error), the environment variable (an override), or the key
//! whose value was refused - a key that the input itself set (checked below).
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Does `msg` point the user at what to fix in this input?
fn names_the_key(msg: &str, toml: &str, env: &[(String, String)]) -> bool {
    // A TOML syntax or type error: the file and a line that exists in it.
    if let Some(rest) = msg.strip_prefix("fuzz.toml: ")
        && let Some(at) = rest.find("line ")
    {
        let digits: String = rest[at + 5..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        return digits
            .parse::<usize>()
            .is_ok_and(|line| line >= 1 && line <= toml.lines().count() + 1);
    }
    // An environment override that does not fit: the variable(s) by name.
    let names: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("MAILROOM_"))
        .collect();
    if msg.contains("environment") && names.iter().any(|n| msg.contains(n)) {
        return true;
    }
    // A value the validation refused: "invalid value for key a.b[ / c.d]: why", where
    // one of the keys is one the input set (in the text or through a variable).
    let Some(rest) = msg.split("invalid value for key ").nth(1) else {
        return false;
    };
    let keys = rest.split(':').next().unwrap_or_default();
    let set_by_env = names.join(" ").to_ascii_lowercase();
    keys.split(" / ").any(|key| {
        let last = key.trim().rsplit('.').next().unwrap_or_default();
        let last = last.split('[').next().unwrap_or_default();
        !last.is_empty() && (toml.contains(last) || set_by_env.contains(last))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, env) = text.split_once('\0').unwrap_or((text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
    if let Err(e) = mailroom::config::parse(toml, "fuzz.toml", env.clone().into_iter()) {
        let msg = format!("{e:#}");
        assert!(
            names_the_key(&msg, toml, &env),
            "the error does not name the key, variable or line: {msg:?}"
        );
    }
});
