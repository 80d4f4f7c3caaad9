//! SMTP replies (RFC 5321 §4.2) with RFC 3463 enhanced status codes, for both sides
//! of a connection: the one [`Reply`] type and its wire form (here), the catalogue of
//! replies the server sends (`catalogue`, re-exported here, so `reply::greeting()`),
//! and the bounded parser that assembles a reply from the lines a server sends
//! (`parse`, used by the SMTP client).

mod catalogue;
mod parse;

pub use catalogue::*;
pub use parse::{MAX_REPLY_LINE, MAX_REPLY_LINES, ReplyError, ReplyParser, parse_reply};

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// An RFC 3463 enhanced status code: (class, subject, detail), as in `5.1.1`.
pub type EnhancedCode = (u8, u16, u16);

/// One complete reply: what the server sends, or what the client read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reply {
    /// The three-digit reply code (200..=599).
    pub code: u16,
    /// Enhanced status code (class.subject.detail), written on every line. `None` for
    /// 220/221-style greetings and EHLO, where RFC 2034 does not use one, and for a
    /// parsed reply whose server sent none (or one whose class does not match the code).
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line, without code and enhanced code. A parsed reply's text
    /// has control characters other than tab replaced by `?` (safe to log); a reply
    /// being written has CR and LF replaced by spaces on the way out.
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    pub fn new(code: u16, enhanced: EnhancedCode, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: the server waits for more (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: a temporary failure; the same command may succeed later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: a permanent failure.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The text of every line joined with `\n` (one line: borrowed as it is).
    pub fn text(&self) -> Cow<'_, str> {
        match self.lines.as_slice() {
            [] => Cow::Borrowed(""),
            [one] => Cow::Borrowed(one),
            many => Cow::Owned(many.join("\n")),
        }
    }

    /// Appends the wire form (all lines, CRLF-terminated) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut text = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let _ = write!(text, "{}{}", self.code, sep);
            if let Some((a, b, c)) = self.enhanced {
                let _ = write!(text, "{a}.{b}.{c} ");
            }
            // Never let text from anywhere break the reply framing.
            for ch in line.chars() {
                text.push(if ch == '\r' || ch == '\n' { ' ' } else { ch });
            }
            text.push_str("\r\n");
        }
        out.extend_from_slice(text.as_bytes());
    }

    pub fn to_wire(&self) -> String {
        let mut out = Vec::new();
        self.write_to(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// One line for logs and recorded outcomes: `550 5.1.1 text`, the lines of a
/// multi-line reply joined with `\n`.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some((class, subject, detail)) = self.enhanced {
            write!(f, " {class}.{subject}.{detail}")?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        assert_eq!(Reply::plain(250, "ok").to_string(), "250 ok");
        assert_eq!(Reply::plain(354, "").to_string(), "354");
        assert_eq!(
            Reply::new(451, (4, 2, 0), "later").to_string(),
            "451 4.2.0 later"
        );
        let multi = Reply {
            code: 550,
            enhanced: Some((5, 1, 1)),
            lines: vec!["a".into(), "b".into()],
        };
        assert_eq!(multi.to_string(), "550 5.1.1 a\nb");
        assert_eq!(multi.text(), "a\nb");
    }

    #[test]
    fn classes() {
        let r = |code| Reply::plain(code, "");
        assert!(r(250).is_positive() && !r(354).is_positive());
        assert!(r(354).is_intermediate() && r(334).is_intermediate());
        assert!(r(421).is_transient() && !r(421).is_permanent());
        assert!(r(550).is_permanent() && !r(550).is_transient());
    }
}
