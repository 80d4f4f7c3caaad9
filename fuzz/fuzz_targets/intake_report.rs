//! Fuzz target: `mailroom_intake::parse` (RFC 3464 delivery reports, RFC 5965 ARF
//! complaints, qmail/Exim/sendmail text bounces) on arbitrary bytes, as the bounce
//! intake listener receives them from anyone. Must never panic, whatever the MIME
//! structure, encodings or field syntax.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mailroom_intake::parse(data);
});
