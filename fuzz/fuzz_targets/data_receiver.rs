//! Fuzz target: the DATA receiver (`mailroom_proto::DataReceiver::data`), fed the
//! input in pieces whose size comes from the first byte. Checked against a simple
//! reference model:
//!
//! - the end is exactly the first `CRLF . CRLF` (the CRLF before the dot may be the
//!   DATA command's own, i.e. the start of the input): never earlier (smuggling, two
//!   messages from one DATA) and never later (bytes after it are the command stream);
//! - a bare CR, a NUL, or a line holding only `.` (which, before the end, can only be a
//!   fake end such as `LF . LF` or `LF . CRLF`) always refuses the message;
//! - an accepted body is the dot-unstuffed input with every line ending (CRLF or bare
//!   LF) stored as CRLF, within the size and line limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_proto::{BodyLimits, DataReceiver, DataStatus};

const LIMITS: BodyLimits = BodyLimits {
    max_size: 2048,
    max_line: 100,
};

/// Index just past the first end-of-data marker, if any.
fn reference_end(input: &[u8]) -> Option<usize> {
    if input.starts_with(b".\r\n") {
        return Some(3);
    }
    input
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .map(|p| p + 5)
}

/// What a correct receiver makes of the body bytes before the `.CRLF` terminator
/// (`body` is empty or ends with CRLF): `Some(unstuffed)` if it must be accepted.
fn reference_body(body: &[u8]) -> Option<Vec<u8>> {
    let faulty = body
        .iter()
        .enumerate()
        .any(|(i, &b)| b == 0 || (b == b'\r' && body.get(i + 1) != Some(&b'\n')));
    if faulty {
        return None;
    }
    let mut out = Vec::new();
    // Every piece but the last ended in LF (bare or CRLF) and is a line, empty ones
    // included; the last piece is what follows the final LF: nothing, as the body is
    // empty or ends with CRLF.
    let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    lines.pop();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"." {
            return None;
        }
        let line = line.strip_prefix(b".").unwrap_or(line);
        if line.len() > LIMITS.max_line {
            return None;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    (out.len() <= LIMITS.max_size).then_some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 32) + 1;
    let mut rx = DataReceiver::data(LIMITS);
    let mut end = None;
    for (n, piece) in input.chunks(step).enumerate() {
        if let DataStatus::Done { consumed } = rx.feed(piece) {
            assert!(consumed >= 1 && consumed <= piece.len());
            end = Some(n * step + consumed);
            break;
        }
    }
    assert_eq!(end, reference_end(input), "end of data in {input:?}");
    let Some(end) = end else {
        return;
    };
    let result = rx.finish();
    let expected = reference_body(&input[..end - 3]);
    match (&result, &expected) {
        (Ok(got), Some(want)) => assert_eq!(got, want),
        (Err(_), None) => {}
        _ => panic!("receiver {result:?}, reference {expected:?} for {input:?}"),
    }
});
