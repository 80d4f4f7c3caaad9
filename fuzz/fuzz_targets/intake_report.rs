//! Fuzz target: `mailroom_intake::parse` (RFC 3464 delivery reports, RFC 5965 ARF
//! complaints, qmail/Exim/sendmail text bounces) and `mailroom_intake::parse_aggregate`
//! (DMARC aggregate reports as zip/gzip/XML, TLS-RPT reports as gzip/JSON) on arbitrary
//! bytes, as the intake listener receives them from anyone. Must never panic, whatever
//! the MIME structure, encodings, archive headers, XML or JSON; and must never unpack
//! more than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mailroom_intake::parse(data);
    if let Ok(report) = mailroom_intake::parse_aggregate(data, "acme.test") {
        assert!(report.dmarc.iter().all(|r| r.domain == "acme.test"));
    }
    if let Ok(doc) = mailroom_intake::aggregate::unpack(data) {
        assert!(doc.len() <= mailroom_intake::aggregate::MAX_UNPACKED);
    }
});
