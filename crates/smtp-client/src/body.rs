//! The message body as it goes on the wire after DATA (RFC 5321 §4.5.2): line
//! endings normalised to CRLF and leading dots doubled. Pure. This is what
//! stops a stored body that contains `\r\n.\r\n` (or a bare-LF variant a
//! lenient server might honour) from ending the DATA early and smuggling a
//! second message into the session.

/// What ends the DATA section once the body (which always ends in CRLF or is
/// empty) has been sent.
pub const DATA_END: &[u8] = b".\r\n";

/// Returns `body` with every bare LF, bare CR and CRLF written as CRLF, a `.`
/// added in front of every line that starts with `.`, and a final CRLF if the
/// body does not end with a line break. An empty body stays empty.
pub fn prepare_body(body: &[u8]) -> Vec<u8> {
    // (Room for the doubled dots of a typical body, the final CRLF and DATA_END.)
    let mut out = Vec::with_capacity(body.len() + body.len() / 32 + 5);
    // Each round starts at the beginning of a line and copies that line whole.
    let mut rest = body;
    while let Some(&first) = rest.first() {
        if first == b'.' {
            out.push(b'.');
        }
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(i) => {
                out.extend_from_slice(&rest[..i]);
                out.extend_from_slice(b"\r\n");
                let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
                rest = &rest[i + if crlf { 2 } else { 1 }..];
            }
            None => {
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\r\n");
                rest = &[];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-by-byte definition the run-copying version must match.
    fn reference(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut line_start = true;
        let mut bytes = body.iter().copied().peekable();
        while let Some(b) = bytes.next() {
            match b {
                b'\r' => {
                    bytes.next_if_eq(&b'\n');
                    out.extend_from_slice(b"\r\n");
                    line_start = true;
                }
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    line_start = true;
                }
                b'.' if line_start => {
                    out.extend_from_slice(b"..");
                    line_start = false;
                }
                _ => {
                    out.push(b);
                    line_start = false;
                }
            }
        }
        if !line_start {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn matches_the_byte_wise_definition_on_every_short_body_over_a_small_alphabet() {
        // Every body of up to 7 bytes over the bytes that matter, plus a long mixed one.
        let alphabet = [b'\r', b'\n', b'.', b'a'];
        for len in 0..=7u32 {
            for n in 0..alphabet.len().pow(len) {
                let mut k = n;
                let body: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[k % alphabet.len()];
                        k /= alphabet.len();
                        b
                    })
                    .collect();
                assert_eq!(prepare_body(&body), reference(&body), "{body:?}");
            }
        }
        let long = b"Subject: x\r\n\r\n.a\nb\r.\r\n..\n\r\rend".repeat(50);
        assert_eq!(prepare_body(&long), reference(&long));
    }

    #[test]
    fn vectors() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a", b"a\r\n"),
            (b"a\r\n", b"a\r\n"),
            (b"a\n", b"a\r\n"),
            (b"a\r", b"a\r\n"),
            (b"a\nb", b"a\r\nb\r\n"),
            (b"a\rb", b"a\r\nb\r\n"),
            (b"a\n\rb", b"a\r\n\r\nb\r\n"),
            (b"a\r\r\nb", b"a\r\n\r\nb\r\n"),
            (b"\n", b"\r\n"),
            (b"\r\n\r\n", b"\r\n\r\n"),
            (b".", b"..\r\n"),
            (b".\r\n", b"..\r\n"),
            (b"..x\r\n", b"...x\r\n"),
            (b"a.b\r\n.c\r\n", b"a.b\r\n..c\r\n"),
            (b" .not\r\n", b" .not\r\n"),
            // smuggling sequences inside the body
            (
                b"x\r\n.\r\nMAIL FROM:<e@vil>\r\n",
                b"x\r\n..\r\nMAIL FROM:<e@vil>\r\n",
            ),
            (
                b"x\n.\nRCPT TO:<e@vil>\n",
                b"x\r\n..\r\nRCPT TO:<e@vil>\r\n",
            ),
            (b"x\r.\rDATA\r", b"x\r\n..\r\nDATA\r\n"),
            (b"x\n.\r\nQUIT", b"x\r\n..\r\nQUIT\r\n"),
            (b"x\r\n.\nQUIT", b"x\r\n..\r\nQUIT\r\n"),
            (b"x\r\n.", b"x\r\n..\r\n"),
            (b"\r\n.\r\n", b"\r\n..\r\n"),
            // 8-bit and NUL bytes pass untouched
            (b"caf\xc3\xa9\x00\n", b"caf\xc3\xa9\x00\r\n"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                prepare_body(input),
                *expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// Whatever the input, the output never contains a line that is a lone dot,
    /// never a CR or LF outside a CRLF pair, and ends in CRLF unless empty.
    #[test]
    fn invariants_over_generated_inputs() {
        let alphabet = [b'\r', b'\n', b'.', b'a'];
        // every string of length <= 7 over the alphabet
        for len in 0..=7u32 {
            for n in 0..4usize.pow(len) {
                let mut input = Vec::new();
                let mut k = n;
                for _ in 0..len {
                    input.push(alphabet[k % 4]);
                    k /= 4;
                }
                let out = prepare_body(&input);
                check(&input, &out);
            }
        }
    }

    fn check(input: &[u8], out: &[u8]) {
        assert!(out.is_empty() || out.ends_with(b"\r\n"), "{input:?}");
        let mut i = 0;
        while i < out.len() {
            match out[i] {
                b'\r' => {
                    assert_eq!(out.get(i + 1), Some(&b'\n'), "{input:?}");
                    i += 2;
                }
                b'\n' => panic!("bare LF for {input:?}"),
                _ => i += 1,
            }
        }
        for line in out.split(|&b| b == b'\n') {
            assert_ne!(line, b".\r", "{input:?}");
        }
        let mut wire = out.to_vec();
        wire.extend_from_slice(DATA_END);
        // the only end-of-data marker is the one we add
        let marker = b"\r\n.\r\n";
        let first = wire
            .windows(marker.len())
            .position(|w| w == marker)
            .map(|p| p + marker.len());
        if out.is_empty() {
            assert_eq!(wire, DATA_END);
        } else {
            assert_eq!(first, Some(wire.len()), "{input:?}");
        }
    }
}
