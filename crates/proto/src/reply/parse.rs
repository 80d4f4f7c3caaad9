//! The client side of replies: a pure, bounded parser that assembles one [`Reply`]
//! from the lines a server sends. It reads no socket: the transport hands it lines.
//!
//! Bounds: a reply line may be at most [`MAX_REPLY_LINE`] bytes and a reply at
//! most [`MAX_REPLY_LINES`] lines, so a hostile server cannot make the client
//! allocate without limit.

use super::{EnhancedCode, Reply};
use std::borrow::Cow;

/// Longest reply line accepted, terminator included (RFC 5321 §4.5.3.1.5 says 512;
/// real servers exceed it, so allow more but not without bound).
pub const MAX_REPLY_LINE: usize = 4096;
/// Most lines one (multi-line) reply may have.
pub const MAX_REPLY_LINES: usize = 100;

/// Why bytes from the server are not a valid reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line longer than {MAX_REPLY_LINE} bytes")]
    LineTooLong,
    #[error("reply longer than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    #[error("malformed reply line: {0}")]
    Syntax(&'static str),
    #[error("reply lines carry different codes ({0} then {1})")]
    CodeMismatch(u16, u16),
}

/// Assembles one reply from successive lines. Feed it lines with
/// [`push_line`](Self::push_line) until it returns `Some`; it then starts over.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    enhanced: Option<EnhancedCode>,
    lines: Vec<Cow<'static, str>>,
}

impl ReplyParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one line (with or without its `\r\n` or `\n`). Returns the reply
    /// once its last line (`code SP text`) has been seen.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        if line.len() > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (code, last, rest) = split_line(line)?;
        match self.code {
            None => self.code = Some(code),
            Some(first) if first != code => return Err(ReplyError::CodeMismatch(first, code)),
            Some(_) => {}
        }
        let first_line = self.lines.is_empty();
        let (esc, rest) = match enhanced_code(code, rest) {
            Some((esc, tail)) if first_line || Some(esc) == self.enhanced => (Some(esc), tail),
            _ => (None, rest),
        };
        if first_line {
            self.enhanced = esc;
        }
        self.lines.push(Cow::Owned(sanitized(rest)));
        if !last {
            return Ok(None);
        }
        let reply = Reply {
            code,
            enhanced: self.enhanced,
            lines: std::mem::take(&mut self.lines),
        };
        *self = Self::default();
        Ok(Some(reply))
    }
}

/// Parses a complete reply from `bytes` (for tests and callers that already
/// hold the whole reply). Returns the reply and the number of bytes used, or
/// `None` when the bytes end before the reply does.
pub fn parse_reply(bytes: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut parser = ReplyParser::new();
    let mut used = 0;
    while let Some(end) = bytes[used..].iter().position(|&b| b == b'\n') {
        let line = &bytes[used..used + end + 1];
        used += end + 1;
        if let Some(reply) = parser.push_line(line)? {
            return Ok(Some((reply, used)));
        }
    }
    if bytes.len() - used > MAX_REPLY_LINE {
        return Err(ReplyError::LineTooLong);
    }
    Ok(None)
}

/// Splits `NNN[SP|-]text` into code, "is last line" and text.
fn split_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let [d0, d1, d2, rest @ ..] = line else {
        return Err(ReplyError::Syntax("shorter than a reply code"));
    };
    if !(b'2'..=b'5').contains(d0) || !d1.is_ascii_digit() || !d2.is_ascii_digit() {
        return Err(ReplyError::Syntax("invalid reply code"));
    }
    let code = u16::from(d0 - b'0') * 100 + u16::from(d1 - b'0') * 10 + u16::from(d2 - b'0');
    match rest {
        [] => Ok((code, true, rest)),
        [b' ', text @ ..] => Ok((code, true, text)),
        [b'-', text @ ..] => Ok((code, false, text)),
        _ => Err(ReplyError::Syntax("invalid separator after reply code")),
    }
}

/// Recognises `class.subject.detail` (RFC 3463: class 2, 4 or 5 matching the
/// reply code, subject and detail 1–3 digits) followed by a space or the end.
fn enhanced_code(code: u16, text: &[u8]) -> Option<(EnhancedCode, &[u8])> {
    let class = *text.first()?;
    if !class.is_ascii_digit()
        || u16::from(class - b'0') != code / 100
        || text.get(1) != Some(&b'.')
    {
        return None;
    }
    let (subject, rest) = number(&text[2..])?;
    let rest = rest.strip_prefix(b".")?;
    let (detail, rest) = number(rest)?;
    let rest = match rest {
        [] => rest,
        [b' ', tail @ ..] => tail,
        _ => return None,
    };
    Some(((class - b'0', subject, detail), rest))
}

/// One to three ASCII digits.
fn number(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let digits = bytes
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 3 {
        return None;
    }
    let value = bytes[..digits]
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    Some((value, &bytes[digits..]))
}

/// The line's text with control characters other than tab replaced by `?`.
fn sanitized(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &str) -> Reply {
        match parse_reply(input.as_bytes()) {
            Ok(Some((reply, used))) => {
                assert_eq!(used, input.len(), "{input:?}");
                reply
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }

    #[test]
    fn single_line_vectors() {
        let cases: &[(&str, u16, Option<EnhancedCode>, &str)] = &[
            ("250 OK\r\n", 250, None, "OK"),
            ("250 2.1.5 Ok\r\n", 250, Some((2, 1, 5)), "Ok"),
            (
                "550 5.1.1 <x@y>: user unknown\r\n",
                550,
                Some((5, 1, 1)),
                "<x@y>: user unknown",
            ),
            ("451 4.2.0 try later\n", 451, Some((4, 2, 0)), "try later"),
            ("354\r\n", 354, None, ""),
            ("221 \r\n", 221, None, ""),
            ("550 5.7.1\r\n", 550, Some((5, 7, 1)), ""),
            ("552 5.3.4 \r\n", 552, Some((5, 3, 4)), ""),
            ("421 4.4.2 bye\r\n", 421, Some((4, 4, 2)), "bye"),
            // class must match the code
            ("550 4.1.1 odd\r\n", 550, None, "4.1.1 odd"),
            // not an enhanced code
            ("250 2.0 ok\r\n", 250, None, "2.0 ok"),
            ("250 2.0.1234 ok\r\n", 250, None, "2.0.1234 ok"),
            ("250 2.0.0ok\r\n", 250, None, "2.0.0ok"),
            ("250 2.100.999 big\r\n", 250, Some((2, 100, 999)), "big"),
            ("250 8BITMIME\r\n", 250, None, "8BITMIME"),
            // control characters are neutralised
            ("550 bad\x1b[31m\r\n", 550, None, "bad?[31m"),
            ("550 a\rb\r\n", 550, None, "a?b"),
        ];
        for (input, code, enhanced, text) in cases {
            let reply = one(input);
            assert_eq!(reply.code, *code, "{input:?}");
            assert_eq!(reply.enhanced, *enhanced, "{input:?}");
            assert_eq!(reply.text(), *text, "{input:?}");
        }
    }

    #[test]
    fn multi_line_reply_joins_text_and_strips_repeated_codes() {
        let reply = one(
            "550-5.1.1 The email account that you tried to reach does not exist.\r\n\
             550-5.1.1 Please try double-checking.\r\n\
             550 5.1.1 https://support.example/x\r\n",
        );
        assert_eq!(reply.code, 550);
        assert_eq!(reply.enhanced, Some((5, 1, 1)));
        assert_eq!(
            reply.text(),
            "The email account that you tried to reach does not exist.\n\
             Please try double-checking.\nhttps://support.example/x"
        );
        assert_eq!(reply.lines.len(), 3);
        assert!(reply.to_string().starts_with("550 5.1.1 The email account"));
    }

    #[test]
    fn ehlo_style_reply() {
        let reply =
            one("250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n");
        assert_eq!(reply.enhanced, None);
        assert_eq!(
            reply.text(),
            "mx.example Hello\nPIPELINING\nSIZE 1000\n8BITMIME"
        );
    }

    #[test]
    fn incomplete_input_needs_more() {
        assert_eq!(parse_reply(b""), Ok(None));
        assert_eq!(parse_reply(b"250 O"), Ok(None));
        assert_eq!(parse_reply(b"250-a\r\n250-b\r\n"), Ok(None));
    }

    #[test]
    fn parse_reply_reports_bytes_used_for_pipelined_replies() {
        let input = b"250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go\r\n";
        let (first, used) = parse_reply(input).unwrap().unwrap();
        assert_eq!(first.code, 250);
        let (second, used2) = parse_reply(&input[used..]).unwrap().unwrap();
        assert_eq!(second.to_string(), "550 5.1.1 no");
        let (third, _) = parse_reply(&input[used + used2..]).unwrap().unwrap();
        assert_eq!(third.code, 354);
    }

    #[test]
    fn malformed_lines_are_errors() {
        let bad: &[(&[u8], ReplyError)] = &[
            (b"25\r\n", ReplyError::Syntax("shorter than a reply code")),
            (b"abc ok\r\n", ReplyError::Syntax("invalid reply code")),
            (b"150 ok\r\n", ReplyError::Syntax("invalid reply code")),
            (b"650 ok\r\n", ReplyError::Syntax("invalid reply code")),
            (
                b"250_ok\r\n",
                ReplyError::Syntax("invalid separator after reply code"),
            ),
            (b"250-a\r\n251 b\r\n", ReplyError::CodeMismatch(250, 251)),
            (
                b"HTTP/1.1 400 Bad\r\n",
                ReplyError::Syntax("invalid reply code"),
            ),
        ];
        for (input, err) in bad {
            assert_eq!(parse_reply(input), Err(err.clone()), "{input:?}");
        }
    }

    #[test]
    fn bounds_hold() {
        let mut long = b"250 ".to_vec();
        long.resize(MAX_REPLY_LINE + 10, b'a');
        assert_eq!(parse_reply(&long), Err(ReplyError::LineTooLong));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_reply(&long), Err(ReplyError::LineTooLong));

        let mut many = Vec::new();
        for _ in 0..MAX_REPLY_LINES {
            many.extend_from_slice(b"250-x\r\n");
        }
        many.extend_from_slice(b"250 x\r\n");
        assert_eq!(parse_reply(&many), Err(ReplyError::TooManyLines));

        let mut just = Vec::new();
        for _ in 0..MAX_REPLY_LINES - 1 {
            just.extend_from_slice(b"250-x\r\n");
        }
        just.extend_from_slice(b"250 x\r\n");
        assert_eq!(parse_reply(&just).unwrap().unwrap().0.lines.len(), 100);
    }

    #[test]
    fn parser_restarts_after_each_reply() {
        let mut parser = ReplyParser::new();
        assert_eq!(parser.push_line(b"250-a\r\n"), Ok(None));
        assert_eq!(
            parser.push_line(b"250 b\r\n").unwrap().unwrap().text(),
            "a\nb"
        );
        let next = parser.push_line(b"550 5.0.0 c\r\n").unwrap().unwrap();
        assert_eq!((next.code, next.text().as_ref()), (550, "c"));
    }
}
