//! Message body receivers for DATA (dot-terminated, dot-stuffed) and BDAT (length-
//! delimited chunks).
//!
//! Only `CRLF . CRLF` ends DATA, and only when the CRLF before the dot is a real CRLF
//! (or the DATA command's own). Lines that end in a bare LF are accepted and stored as
//! CRLF lines (what Postfix calls `smtpd_forbid_bare_newline = normalize`), so files with
//! Unix line endings sent by `curl --upload-file` or `sendmail`-like tools go through.
//! Everything shaped like a smuggled end of data stays refused: a line holding only a
//! `.` that did not end the data (`LF . LF`, `LF . CRLF`, `CRLF . LF`, …), a bare CR
//! (one not followed by LF), and a NUL. Such a fault never ends the data either: the
//! receiver keeps consuming until the real end, so bytes after a fake end-of-data (the
//! SMTP smuggling technique, CVE-2023-51764 and friends) are never read as commands. A
//! faulty or oversized message is read to its end and then refused as a whole; its bytes
//! stop being kept as soon as the fault is seen, so an attacker cannot make the server
//! hold more than the size limit.
//!
//! BDAT chunks are counted bytes (no dots): bare LFs are normalised the same way, bare
//! CR and NUL refused.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest body (after dot-unstuffing) that is kept and accepted, in bytes.
    pub max_size: usize,
    /// Longest text line, excluding CRLF (RFC 5322 says 998).
    pub max_line: usize,
}

/// Why a body was refused. The first fault found is the one reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFault {
    /// A line holding only `.` that did not end the data: the shape of a smuggled
    /// end of data (`LF . LF`, `LF . CRLF`, `CRLF . LF`).
    LoneDot,
    BareCr,
    Nul,
    LineTooLong,
    TooBig,
}

impl BodyFault {
    pub fn reply(self, limits: &BodyLimits) -> crate::Reply {
        use crate::reply;
        match self {
            BodyFault::LoneDot => reply::lone_dot_line(),
            BodyFault::BareCr => reply::bare_cr(),
            BodyFault::Nul => reply::nul_in_data(),
            BodyFault::LineTooLong => reply::text_line_too_long(limits.max_line),
            BodyFault::TooBig => reply::message_too_big(limits.max_size),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataStatus {
    /// All input was consumed; the end of data has not been seen yet.
    NeedMore,
    /// The end of data was seen after `consumed` bytes of the input; the rest of the
    /// input belongs to the command stream.
    Done { consumed: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Inside a line (or at the start of one, see `line_start`).
    Text,
    /// The previous byte was CR.
    Cr,
    /// A `.` at the start of a line.
    Dot,
    /// `.` `CR` at the start of a line: one LF away from the end.
    DotCr,
}

#[derive(Debug)]
pub struct DataReceiver {
    limits: BodyLimits,
    body: Vec<u8>,
    state: State,
    line_start: bool,
    /// The current line began after a bare LF (stored as CRLF): a `.` line here is
    /// never the end of data.
    after_bare_lf: bool,
    line_len: usize,
    /// Bytes of body seen (kept or not), to report the size of refused messages.
    seen: usize,
    fault: Option<BodyFault>,
    /// BDAT mode: no dot handling, the client counts the bytes.
    chunked: bool,
}

impl DataReceiver {
    /// A receiver for `DATA` (dot-terminated).
    pub fn data(limits: BodyLimits) -> Self {
        Self::new(limits, false)
    }

    /// A receiver for a sequence of `BDAT` chunks.
    pub fn chunked(limits: BodyLimits) -> Self {
        Self::new(limits, true)
    }

    fn new(limits: BodyLimits, chunked: bool) -> Self {
        Self {
            limits,
            body: Vec::with_capacity(limits.max_size.min(16 * 1024)),
            state: State::Text,
            line_start: true,
            after_bare_lf: false,
            line_len: 0,
            seen: 0,
            fault: None,
            chunked,
        }
    }

    pub fn fault(&self) -> Option<BodyFault> {
        self.fault
    }

    /// Body bytes seen so far, including any that were not kept.
    pub fn size(&self) -> usize {
        self.seen
    }

    fn set_fault(&mut self, fault: BodyFault) {
        if self.fault.is_none() {
            self.fault = Some(fault);
            self.body = Vec::new();
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.seen += bytes.len();
        if self.fault.is_some() {
            return;
        }
        if self.seen > self.limits.max_size {
            self.set_fault(BodyFault::TooBig);
            return;
        }
        self.body.extend_from_slice(bytes);
    }

    /// Bytes inside a line, none of them CR, LF or NUL: what `text_byte` does for
    /// each, at once. Of the two faults a run can raise, the one its bytes would
    /// have raised first is kept (a line too long is checked before a byte is added).
    fn text_run(&mut self, run: &[u8]) {
        let n = run.len();
        if self.fault.is_none() {
            // 1-based positions in the run where each limit would be crossed.
            let line_at = (self.limits.max_line + 1).saturating_sub(self.line_len);
            let big_at = (self.limits.max_size + 1).saturating_sub(self.seen);
            if line_at <= n && line_at <= big_at {
                self.set_fault(BodyFault::LineTooLong);
            }
        }
        self.line_len += n;
        self.line_start = false;
        self.push(run);
    }

    /// A byte inside a line (not CR, not LF).
    fn text_byte(&mut self, b: u8) {
        if b == 0 {
            self.set_fault(BodyFault::Nul);
        }
        self.line_len += 1;
        if self.line_len > self.limits.max_line {
            self.set_fault(BodyFault::LineTooLong);
        }
        self.line_start = false;
        self.push(&[b]);
    }

    /// Feeds bytes of a DATA body. Returns where the end of data is, if it is in `input`.
    pub fn feed(&mut self, input: &[u8]) -> DataStatus {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            i += 1;
            match self.state {
                State::Cr => {
                    self.state = State::Text;
                    if b == b'\n' {
                        self.end_line(false);
                        continue;
                    }
                    self.set_fault(BodyFault::BareCr);
                    self.push(b"\r");
                    self.plain_byte(b);
                }
                State::Dot => {
                    self.state = State::Text;
                    match b {
                        b'\r' if !self.chunked => self.state = State::DotCr,
                        // "." LF: a fake end of data.
                        b'\n' => {
                            self.set_fault(BodyFault::LoneDot);
                            self.end_line(true);
                        }
                        // "..": the first dot was stuffing.
                        b'.' => self.text_byte(b'.'),
                        // A lone leading dot is removed too (RFC 5321 4.5.2).
                        _ => self.plain_byte(b),
                    }
                }
                State::DotCr => {
                    if b == b'\n' {
                        self.state = State::Text;
                        if self.after_bare_lf {
                            // LF "." CRLF: a fake end of data.
                            self.set_fault(BodyFault::LoneDot);
                            self.end_line(false);
                            continue;
                        }
                        self.line_start = true;
                        return DataStatus::Done { consumed: i };
                    }
                    // ".\r" followed by something else: a bare CR after the dot.
                    self.state = State::Text;
                    self.set_fault(BodyFault::BareCr);
                    self.push(b"\r");
                    self.plain_byte(b);
                }
                State::Text => {
                    if self.line_start && b == b'.' && !self.chunked {
                        self.state = State::Dot;
                        self.line_start = false;
                        continue;
                    }
                    if !matches!(b, b'\r' | b'\n' | 0) {
                        // Plain text up to the next CR, LF or NUL, taken as one run.
                        let start = i - 1;
                        let end = memchr::memchr3(b'\r', b'\n', 0, &input[i..])
                            .map_or(input.len(), |k| i + k);
                        self.text_run(&input[start..end]);
                        i = end;
                        continue;
                    }
                    self.plain_byte(b);
                }
            }
        }
        DataStatus::NeedMore
    }

    fn plain_byte(&mut self, b: u8) {
        match b {
            b'\r' => self.state = State::Cr,
            // A bare LF ends the line; it is stored as CRLF.
            b'\n' => self.end_line(true),
            _ => self.text_byte(b),
        }
    }

    /// Ends the current line with a stored CRLF (`bare_lf`: the client sent only LF).
    fn end_line(&mut self, bare_lf: bool) {
        self.push(b"\r\n");
        self.line_start = true;
        self.after_bare_lf = bare_lf;
        self.line_len = 0;
    }

    /// Feeds one whole BDAT chunk (chunked mode).
    pub fn feed_chunk(&mut self, chunk: &[u8]) {
        debug_assert!(self.chunked);
        let status = self.feed(chunk);
        debug_assert_eq!(status, DataStatus::NeedMore);
    }

    /// Ends the body. For BDAT, a body that stops on a lone CR is faulty; a body
    /// without a final CRLF gets one.
    pub fn finish(mut self) -> Result<Vec<u8>, BodyFault> {
        if self.chunked {
            if self.state == State::Cr {
                self.set_fault(BodyFault::BareCr);
            } else if !self.line_start && self.fault.is_none() {
                self.push(b"\r\n");
            }
        }
        match self.fault {
            Some(f) => Err(f),
            None => Ok(self.body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BodyLimits = BodyLimits {
        max_size: 1000,
        max_line: 100,
    };

    /// Feeds `input` in pieces of `step` bytes; returns (body or fault, rest after end).
    fn run(input: &[u8], step: usize) -> (Result<Vec<u8>, BodyFault>, Vec<u8>, bool) {
        let mut rx = DataReceiver::data(LIMITS);
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + step).min(input.len());
            if let DataStatus::Done { consumed } = rx.feed(&input[pos..end]) {
                let rest = input[pos + consumed..].to_vec();
                return (rx.finish(), rest, true);
            }
            pos = end;
        }
        (rx.finish(), Vec::new(), false)
    }

    /// Byte by byte (every run one byte long) and in one piece (long runs), with limits
    /// small enough to be crossed, the receiver gives the same body, fault and rest.
    #[test]
    fn runs_of_text_match_byte_by_byte_feeding() {
        let limits = BodyLimits {
            max_size: 40,
            max_line: 9,
        };
        let feed_with = |limits: BodyLimits, input: &[u8], step: usize| {
            let mut rx = DataReceiver::data(limits);
            let mut pos = 0;
            while pos < input.len() {
                let end = (pos + step).min(input.len());
                if let DataStatus::Done { consumed } = rx.feed(&input[pos..end]) {
                    return (rx.finish(), pos + consumed);
                }
                pos = end;
            }
            (rx.finish(), input.len())
        };
        let feed = |input: &[u8], step: usize| feed_with(limits, input, step);
        let alphabet = b"ab.\r\n\0";
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 60) as usize;
            let mut y = x;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    y = y.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    // Mostly letters, so that runs are long.
                    let r = (y >> 33) as usize % 16;
                    alphabet[if r < 11 { r % 2 } else { r - 9 }.min(alphabet.len() - 1)]
                })
                .collect();
            assert_eq!(
                feed(&input, 1),
                feed(&input, 1000),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
        // Lines of every length around the limits: a run that crosses the size limit
        // before, at or after the line limit.
        let tight = BodyLimits {
            max_size: 20,
            max_line: 9,
        };
        for a in 0..=14 {
            for b in 0..=14 {
                for c in 0..=14 {
                    let mut input = Vec::new();
                    for (n, ch) in [(a, b'x'), (b, b'y'), (c, b'z')] {
                        input.extend(std::iter::repeat_n(ch, n));
                        input.extend_from_slice(b"\r\n");
                    }
                    input.extend_from_slice(b".\r\n");
                    assert_eq!(
                        feed_with(tight, &input, 1),
                        feed_with(tight, &input, 1000),
                        "{a} {b} {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn ends_only_on_crlf_dot_crlf_and_unstuffs() {
        for step in [1, 2, 3, 7, 1000] {
            let (body, rest, done) = run(b"Subject: x\r\n\r\n..leading\r\n.\r\nQUIT\r\n", step);
            assert!(done);
            assert_eq!(body.unwrap(), b"Subject: x\r\n\r\n.leading\r\n");
            assert_eq!(rest, b"QUIT\r\n");
        }
        let (body, _, done) = run(b".\r\n", 1);
        assert!(done);
        assert_eq!(body.unwrap(), b"");
    }

    /// The smuggling vectors: a fake end followed by commands, then the real end. Each
    /// is one refused message, and the fault says why.
    #[test]
    fn smuggling_variants_are_one_refused_message() {
        let fakes: [(&[u8], BodyFault); 12] = [
            (b"\n.\n", BodyFault::LoneDot),
            (b"\n.\r\n", BodyFault::LoneDot),
            (b"\r.\n", BodyFault::BareCr),
            (b"\r.\r\n", BodyFault::BareCr),
            (b"\r\n.\n", BodyFault::LoneDot),
            (b"\r\n.\r", BodyFault::BareCr),
            (b"\n.\r", BodyFault::BareCr),
            (b"\r\n\x00.\r\n", BodyFault::Nul),
            (b"\r.\r", BodyFault::BareCr),
            (b"\r\n.\r\r\n", BodyFault::BareCr),
            (b"\n\n.\n", BodyFault::LoneDot),
            (b"\r\n\n.\r\n", BodyFault::LoneDot),
        ];
        for (fake, fault) in fakes {
            for step in [1, 2, 5, 4096] {
                let mut input = b"Subject: hi\r\n\r\nbody".to_vec();
                input.extend_from_slice(fake);
                input.extend_from_slice(
                    b"MAIL FROM:<x@acme.test>\r\nRCPT TO:<y@example.net>\r\nDATA\r\nsmuggled\r\n",
                );
                input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
                let (body, rest, done) = run(&input, step);
                assert!(done, "{fake:?}");
                assert_eq!(body, Err(fault), "{fake:?} must be refused");
                assert_eq!(rest, b"NOOP\r\n", "{fake:?}: only the real end counts");
            }
        }
        // A lone dot after a bare LF at the very start, too.
        assert_eq!(run(b".\n.\r\n", 1).0, Err(BodyFault::LoneDot));
    }

    /// Lines ending in a bare LF are stored as CRLF lines (Postfix's `normalize`).
    #[test]
    fn lf_only_lines_are_normalised() {
        let cases: [(&[u8], &[u8]); 7] = [
            (
                b"Subject: x\n\nline\n\r\n.\r\n",
                b"Subject: x\r\n\r\nline\r\n\r\n",
            ),
            (b"a\nb\r\n.\r\n", b"a\r\nb\r\n"),
            (b"a\n\n\nb\r\n.\r\n", b"a\r\n\r\n\r\nb\r\n"),
            // Dot-stuffed and lone leading dots after a bare LF are unstuffed as usual.
            (b"a\n..\n.b\r\n.\r\n", b"a\r\n.\r\nb\r\n"),
            (b"x.\n\r\n.\r\n", b"x.\r\n\r\n"),
            (b"a\n. \r\n.\r\n", b"a\r\n \r\n"),
            (b"\n\r\n.\r\n", b"\r\n\r\n"),
        ];
        for (input, want) in cases {
            for step in [1, 2, 3, 4096] {
                let (body, rest, done) = run(input, step);
                assert!(done, "{input:?}");
                assert_eq!(body.as_deref(), Ok(want), "{input:?} step {step}");
                assert!(rest.is_empty());
            }
        }
        // The line limit counts the line without its ending, however it ended.
        let mut line = vec![b'c'; 100];
        line.extend_from_slice(b"\n");
        let mut input = line.repeat(3);
        input.extend_from_slice(b"\r\n.\r\n");
        assert!(run(&input, 7).0.is_ok());
        let mut long = vec![b'c'; 101];
        long.extend_from_slice(b"\n\r\n.\r\n");
        assert_eq!(run(&long, 7).0, Err(BodyFault::LineTooLong));
    }

    /// A reference model of the rules, checked on every input over a small alphabet
    /// (the fuzz target `data_receiver` checks the same model on arbitrary bytes).
    fn reference(input: &[u8]) -> (Option<usize>, Option<Result<Vec<u8>, ()>>) {
        let end = if input.starts_with(b".\r\n") {
            Some(3)
        } else {
            input
                .windows(5)
                .position(|w| w == b"\r\n.\r\n")
                .map(|p| p + 5)
        };
        let Some(end) = end else {
            return (None, None);
        };
        let body = &input[..end - 3];
        let bad = body
            .iter()
            .enumerate()
            .any(|(i, &b)| b == 0 || (b == b'\r' && body.get(i + 1) != Some(&b'\n')));
        let mut out = Vec::new();
        let mut lone_dot = false;
        let mut too_long = false;
        for line in body.split_inclusive(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            lone_dot |= line == b".";
            let line = line.strip_prefix(b".").unwrap_or(line);
            too_long |= line.len() > LIMITS.max_line;
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        let ok = !bad && !lone_dot && !too_long && out.len() <= LIMITS.max_size;
        (Some(end), Some(if ok { Ok(out) } else { Err(()) }))
    }

    #[test]
    fn receiver_matches_the_reference_on_every_short_input() {
        const ALPHABET: [u8; 5] = [b'a', b'.', b'\r', b'\n', 0];
        let mut checked = 0;
        for len in 0..=7u32 {
            for mut n in 0..5usize.pow(len) {
                let mut input = Vec::with_capacity(len as usize + 5);
                for _ in 0..len {
                    input.push(ALPHABET[n % 5]);
                    n /= 5;
                }
                input.extend_from_slice(b"\r\n.\r\n");
                let (want_end, want_body) = reference(&input);
                for step in [1, 3] {
                    let mut rx = DataReceiver::data(LIMITS);
                    let mut end = None;
                    for (k, piece) in input.chunks(step).enumerate() {
                        if let DataStatus::Done { consumed } = rx.feed(piece) {
                            end = Some(k * step + consumed);
                            break;
                        }
                    }
                    assert_eq!(end, want_end, "end of {input:?}");
                    let got = rx.finish().map_err(|_| ());
                    assert_eq!(Some(got), want_body, "body of {input:?}");
                }
                checked += 1;
            }
        }
        assert!(checked > 90_000);
    }

    #[test]
    fn limits_are_enforced_after_reading_to_the_end() {
        let mut big = vec![b'a'; 50];
        big.extend_from_slice(b"\r\n");
        let mut input = big.repeat(30);
        input.extend_from_slice(b".\r\nNOOP\r\n");
        let (body, rest, _) = run(&input, 64);
        assert_eq!(body, Err(BodyFault::TooBig));
        assert_eq!(rest, b"NOOP\r\n");

        let mut long = vec![b'b'; 101];
        long.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(run(&long, 10).0, Err(BodyFault::LineTooLong));
    }

    #[test]
    fn bdat_chunks_are_checked_across_boundaries() {
        let mut rx = DataReceiver::chunked(LIMITS);
        rx.feed_chunk(b"Subject: a\r");
        rx.feed_chunk(b"\n\r\n.body");
        assert_eq!(rx.finish().unwrap(), b"Subject: a\r\n\r\n.body\r\n");

        // Bare LFs are stored as CRLF, also across chunk boundaries; no dot handling.
        let mut rx = DataReceiver::chunked(LIMITS);
        rx.feed_chunk(b"Subject: a\n");
        rx.feed_chunk(b"\n.\n");
        rx.feed_chunk(b"\r");
        rx.feed_chunk(b"\nlast\n");
        assert_eq!(rx.finish().unwrap(), b"Subject: a\r\n\r\n.\r\n\r\nlast\r\n");

        let mut rx = DataReceiver::chunked(LIMITS);
        rx.feed_chunk(b"Subject: a\r\n\r\nx\ry\n");
        assert_eq!(rx.finish(), Err(BodyFault::BareCr));

        let mut rx = DataReceiver::chunked(LIMITS);
        rx.feed_chunk(b"Subject: a\n\nx\x00\n");
        assert_eq!(rx.finish(), Err(BodyFault::Nul));

        let mut rx = DataReceiver::chunked(LIMITS);
        rx.feed_chunk(b"Subject: a\r\n\r\nx\r");
        assert_eq!(rx.finish(), Err(BodyFault::BareCr));
    }
}
