//! Fuzz target: the BDAT receiver (`DataReceiver::chunked`). The input is cut into
//! chunks (sizes from the first byte); the receiver must never look for a dot,
//! must refuse any bare CR (also a CR ending the last chunk) or NUL, must enforce the
//! limits, and must otherwise return the bytes as sent with each bare LF stored as
//! CRLF (plus a final CRLF if the body did not end with a line break).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_proto::{BodyLimits, DataReceiver};

const LIMITS: BodyLimits = BodyLimits {
    max_size: 2048,
    max_line: 100,
};

fn reference(body: &[u8]) -> Option<Vec<u8>> {
    let faulty = body
        .iter()
        .enumerate()
        .any(|(i, &b)| b == 0 || (b == b'\r' && body.get(i + 1) != Some(&b'\n')));
    if faulty {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 2);
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    let long_line = out
        .split(|&b| b == b'\n')
        .any(|l| l.strip_suffix(b"\r").unwrap_or(l).len() > LIMITS.max_line);
    (!long_line && out.len() <= LIMITS.max_size).then_some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let mut rx = DataReceiver::chunked(LIMITS);
    for chunk in input.chunks(usize::from(step % 64) + 1) {
        rx.feed_chunk(chunk);
    }
    let result = rx.finish();
    let expected = reference(input);
    match (&result, &expected) {
        (Ok(got), Some(want)) => assert_eq!(got, want),
        (Err(_), None) => {}
        _ => panic!("receiver {result:?}, reference {expected:?} for {input:?}"),
    }
});
