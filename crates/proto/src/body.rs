//! Message body receivers for DATA (dot-terminated, dot-stuffed) and BDAT (length-
//! delimited chunks).
//!
//! Only `CRLF . CRLF` ends DATA. A bare LF or bare CR (one not part of a CRLF pair) or a
//! NUL anywhere in the body marks the message as faulty, but never ends it: the receiver
//! keeps consuming until the real end, so bytes after a fake end-of-data (the SMTP
//! smuggling technique, CVE-2023-51764 and friends) are never read as commands. A faulty
//! or oversized message is read to its end and then refused as a whole; its bytes stop
//! being kept as soon as the fault is seen, so an attacker cannot make the server hold
//! more than the size limit.

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
    BareLf,
    BareCr,
    Nul,
    LineTooLong,
    TooBig,
}

impl BodyFault {
    pub fn reply(self, limits: &BodyLimits) -> crate::Reply {
        use crate::reply;
        match self {
            BodyFault::BareLf | BodyFault::BareCr => reply::bare_line_ending(),
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
                        self.push(b"\r\n");
                        self.line_start = true;
                        self.line_len = 0;
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
                        // "..": the first dot was stuffing.
                        b'.' => self.text_byte(b'.'),
                        // A lone leading dot is removed too (RFC 5321 4.5.2).
                        _ => self.plain_byte(b),
                    }
                }
                State::DotCr => {
                    if b == b'\n' {
                        self.state = State::Text;
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
                    self.plain_byte(b);
                }
            }
        }
        DataStatus::NeedMore
    }

    fn plain_byte(&mut self, b: u8) {
        match b {
            b'\r' => self.state = State::Cr,
            b'\n' => {
                // A bare LF: refused, and never a line start, so "\n.\n" is not an end.
                self.set_fault(BodyFault::BareLf);
                self.push(b"\n");
                self.line_start = false;
            }
            _ => self.text_byte(b),
        }
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

    /// The smuggling vectors: a fake end followed by commands, then the real end.
    #[test]
    fn smuggling_variants_are_one_refused_message() {
        let fakes: [&[u8]; 10] = [
            b"\n.\n",
            b"\n.\r\n",
            b"\r.\n",
            b"\r.\r\n",
            b"\r\n.\n",
            b"\r\n.\r",
            b"\n.\r",
            b"\r\n\x00.\r\n",
            b"\r.\r",
            b"\r\n.\r\r\n",
        ];
        for fake in fakes {
            for step in [1, 5, 4096] {
                let mut input = b"Subject: hi\r\n\r\nbody".to_vec();
                input.extend_from_slice(fake);
                input.extend_from_slice(
                    b"MAIL FROM:<x@acme.test>\r\nRCPT TO:<y@example.net>\r\nDATA\r\nsmuggled\r\n",
                );
                input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
                let (body, rest, done) = run(&input, step);
                assert!(done, "{fake:?}");
                assert!(body.is_err(), "{fake:?} must be refused");
                assert_eq!(rest, b"NOOP\r\n", "{fake:?}: only the real end counts");
            }
        }
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

        let mut rx = DataReceiver::chunked(LIMITS);
        rx.feed_chunk(b"Subject: a\n\r\n");
        assert_eq!(rx.finish(), Err(BodyFault::BareLf));

        let mut rx = DataReceiver::chunked(LIMITS);
        rx.feed_chunk(b"Subject: a\r\n\r\nx\r");
        assert_eq!(rx.finish(), Err(BodyFault::BareCr));
    }
}
