//! Fuzz target: `mailroom_model::Address::parse` on arbitrary UTF-8. Must never
//! panic; an accepted address respects the length limits, holds none of the
//! characters relay tricks and header injection need (`%`, `!`, `"`, `@` in the
//! local part, `[` literals, CR, LF, NUL, spaces), its domain is lower-case ASCII,
//! and its printed form parses back to the same address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_model::Address;
use mailroom_model::address::{MAX_ADDRESS_LEN, MAX_DOMAIN_LEN, MAX_LOCAL_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(addr) = Address::parse(text) else {
        return;
    };
    let local = addr.local();
    let domain = addr.domain().as_str();
    assert!(
        !local.is_empty() && local.len() <= MAX_LOCAL_LEN,
        "{addr:?}"
    );
    assert!(
        !domain.is_empty() && domain.len() <= MAX_DOMAIN_LEN,
        "{addr:?}"
    );
    assert!(text.len() <= MAX_ADDRESS_LEN);
    assert!(
        !local.chars().any(|c| matches!(
            c,
            '%' | '!' | '"' | '@' | '[' | ']' | '\\' | ':' | '<' | '>'
        ) || c.is_control()
            || c.is_whitespace()),
        "{addr:?}"
    );
    assert!(
        domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
        "{addr:?}"
    );
    let again = Address::parse(&addr.to_string()).expect("printed address parses");
    assert_eq!(again, addr);
});
