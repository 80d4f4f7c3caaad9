//! Fuzz target: one SMTP command line through `mailroom_proto::parse_command`.
//! Must never panic; a line that does not end in CRLF, or holds a CR, LF or NUL
//! before it, is always `BadLineEnding`; every error maps to a 5xx reply whose
//! framing the quoted input cannot break.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_proto::{CommandError, parse_command};

fuzz_target!(|line: &[u8]| {
    let result = parse_command(line);
    let well_ended = line.ends_with(b"\r\n")
        && !line[..line.len() - 2]
            .iter()
            .any(|&b| b == b'\r' || b == b'\n' || b == 0);
    if !well_ended {
        assert_eq!(result, Err(CommandError::BadLineEnding), "{line:?}");
    }
    if let Err(e) = &result {
        // Error replies may quote the client's parameter: it must never break the
        // reply framing (one CRLF per line, no other CR or LF).
        let reply = e.reply();
        assert!(
            reply.is_permanent(),
            "command errors are permanent: {reply:?}"
        );
        let mut wire = Vec::new();
        reply.write_to(&mut wire);
        let crlfs = wire.windows(2).filter(|w| w == b"\r\n").count();
        let crs = wire.iter().filter(|&&b| b == b'\r').count();
        let lfs = wire.iter().filter(|&&b| b == b'\n').count();
        assert!(
            crlfs == reply.lines.len() && crs == crlfs && lfs == crlfs,
            "{wire:?}"
        );
    }
});
