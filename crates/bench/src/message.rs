//! The messages the bench submits: unique headers, a deterministic printable
//! body padded to the requested size, and SMTP dot-stuffing for the DATA phase.
//! It owns bytes only; no sockets, no clock (the Date header is a parameter).

use crate::args::BenchArgs;

/// Longest body line, in characters before CRLF (RFC 5322 recommends 78 with CRLF).
pub const MAX_LINE: usize = 76;

/// What every message of one run shares.
#[derive(Debug, Clone)]
pub struct MessageSpec {
    /// Envelope sender and From: header.
    pub from: String,
    /// Envelope recipients and To: header.
    pub to: Vec<String>,
    /// Right-hand side of Message-ID.
    pub domain: String,
    /// Tells this run's messages apart from another run's in the Message-ID and Subject.
    pub run_id: String,
    /// Target size of the whole message (headers, blank line and body).
    pub size: usize,
}

impl MessageSpec {
    /// The spec of a run started with `args`, tagged with `run_id`.
    pub fn from_args(args: &BenchArgs, run_id: impl Into<String>) -> Self {
        Self {
            from: args.from.clone(),
            to: args.recipient_list(),
            domain: args.helo.clone(),
            run_id: run_id.into(),
            size: args.size,
        }
    }

    /// Message number `seq` with the given RFC 5322 `date`, CRLF line endings,
    /// exactly `size` bytes unless the headers alone are longer (or one byte short
    /// of it, where a lone byte cannot form a line).
    pub fn build(&self, seq: u64, date: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size.max(512));
        let head = |out: &mut Vec<u8>, s: &str| out.extend_from_slice(s.as_bytes());
        head(&mut out, &format!("From: <{}>\r\n", self.from));
        head(&mut out, "To: ");
        for (i, rcpt) in self.to.iter().enumerate() {
            let sep = if i + 1 == self.to.len() {
                "\r\n"
            } else {
                ",\r\n "
            };
            head(&mut out, &format!("<{rcpt}>{sep}"));
        }
        head(&mut out, &format!("Date: {date}\r\n"));
        head(
            &mut out,
            &format!("Message-ID: <{}.{seq}@{}>\r\n", self.run_id, self.domain),
        );
        head(
            &mut out,
            &format!("Subject: Mailroom bench {} #{seq}\r\n", self.run_id),
        );
        head(
            &mut out,
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        );
        let budget = self.size.saturating_sub(out.len());
        body(&mut out, seq, budget);
        out
    }
}

/// Appends about `budget` bytes of CRLF-terminated printable lines. Some lines
/// start with a dot and some are a lone dot, so a client that forgets to
/// dot-stuff (or a server that forgets to unstuff) changes the byte count.
fn body(out: &mut Vec<u8>, seq: u64, budget: usize) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,;:-";
    let mut remaining = budget;
    let mut line = 0usize;
    while remaining >= 2 {
        let mut len = (remaining - 2).min(MAX_LINE);
        if remaining - (len + 2) == 1 {
            len -= 1; // never leave a single byte that cannot form a line
        }
        let lone_dot = line % 31 == 7 && remaining >= 3 && remaining != 4;
        if lone_dot {
            len = 1;
        }
        let offset = usize::try_from(seq % 61).unwrap_or(0) + line;
        for i in 0..len {
            let leading_dot = i == 0 && (lone_dot || line % 9 == 4);
            out.push(if leading_dot {
                b'.'
            } else {
                ALPHABET[(offset + i) % ALPHABET.len()]
            });
        }
        out.extend_from_slice(b"\r\n");
        remaining -= len + 2;
        line += 1;
    }
}

/// `msg` as sent after `354`: every line starting with `.` gets another `.`, and
/// the end-of-data marker `.CRLF` follows (after a CRLF if `msg` lacks a final one).
pub fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let dots = msg
        .split(|&b| b == b'\n')
        .filter(|l| l.first() == Some(&b'.'))
        .count();
    let mut out = Vec::with_capacity(msg.len() + dots + 5);
    let mut at_line_start = true;
    for &b in msg {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !msg.is_empty() && !msg.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: usize, rcpts: usize) -> MessageSpec {
        MessageSpec {
            from: "bench@example.com".into(),
            to: (0..rcpts).map(|i| format!("r+{i}@example.net")).collect(),
            domain: "bench.local".into(),
            run_id: "abc".into(),
            size,
        }
    }

    const DATE: &str = "Tue, 1 Jul 2003 10:52:37 +0000";

    #[test]
    fn sizes_are_exact_and_lines_are_short_and_printable() {
        for size in [300, 301, 302, 378, 379, 380, 381, 5120, 100_000] {
            let msg = spec(size, 2).build(7, DATE);
            assert_eq!(msg.len(), size, "size {size}");
            assert!(msg.ends_with(b"\r\n"));
            for line in msg.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                assert!(
                    line.len() <= MAX_LINE,
                    "{size}: {}",
                    String::from_utf8_lossy(line)
                );
                assert!(line.iter().all(|b| (0x20..0x7f).contains(b)));
            }
        }
    }

    #[test]
    fn tiny_sizes_still_give_a_whole_header_block() {
        let msg = spec(10, 1).build(1, DATE);
        assert!(msg.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn headers_are_unique_per_message() {
        let s = spec(1000, 1);
        let a = String::from_utf8(s.build(1, DATE)).unwrap_or_default();
        let b = String::from_utf8(s.build(2, DATE)).unwrap_or_default();
        assert!(a.contains("Message-ID: <abc.1@bench.local>\r\n"));
        assert!(b.contains("Subject: Mailroom bench abc #2\r\n"));
        assert!(a.starts_with("From: <bench@example.com>\r\nTo: <r+0@example.net>\r\n"));
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_terminates() {
        assert_eq!(dot_stuff(b".a\r\nb.\r\n.\r\n"), b"..a\r\nb.\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n.\r\n");
        let msg = spec(5120, 1).build(3, DATE);
        let stuffed = dot_stuff(&msg);
        assert!(stuffed.windows(5).filter(|w| w == b"\r\n..\r").count() >= 1);
        assert!(stuffed.len() > msg.len() + 3);
    }
}
