//! Fuzz target: the HTTP send API's validation and composition
//! (`mailroom_api::compose::compose`) on arbitrary JSON. Must never panic; a
//! composed message has 1..=max recipients, no duplicates, CRLF line endings only,
//! and no NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_api::compose::{SendRequest, compose};

const MAX_RECIPIENTS: usize = 10;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<SendRequest>(data) else {
        return;
    };
    let Ok(msg) = compose(&req, MAX_RECIPIENTS, "fuzz.1@mailroom.test") else {
        return;
    };
    let n = msg.recipients.len();
    assert!((1..=MAX_RECIPIENTS).contains(&n), "{n} recipients");
    for (i, (a, _)) in msg.recipients.iter().enumerate() {
        assert!(
            !msg.recipients[..i].iter().any(|(b, _)| b == a),
            "duplicate {a}"
        );
    }
    let body = &msg.body;
    assert!(!body.contains(&0), "NUL in composed message");
    for (i, &b) in body.iter().enumerate() {
        let bare_lf = b == b'\n' && (i == 0 || body[i - 1] != b'\r');
        let bare_cr = b == b'\r' && body.get(i + 1) != Some(&b'\n');
        assert!(!bare_lf && !bare_cr, "bare line ending at {i}");
    }
});
