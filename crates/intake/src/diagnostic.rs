//! Reply codes inside free text: the basic code at the start of an SMTP reply
//! (`550`, `550-5.1.1`) and an RFC 3463 enhanced code anywhere (`5.1.1`, `#5.1.1`).

/// The first `[245]dd` that starts a word and is followed by a space, `-`, or end.
pub fn smtp_code(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(2)).find_map(|i| {
        let starts_word = i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'.';
        let digits = &b[i..i + 3];
        let ends = b
            .get(i + 3)
            .is_none_or(|c| matches!(c, b' ' | b'-' | b'\t'));
        (starts_word
            && ends
            && matches!(digits[0], b'2' | b'4' | b'5')
            && digits[1].is_ascii_digit()
            && digits[2].is_ascii_digit())
        .then(|| {
            u16::from(digits[0] - b'0') * 100
                + u16::from(digits[1] - b'0') * 10
                + u16::from(digits[2] - b'0')
        })
    })
}

/// The first `c.s.d` with class 2, 4 or 5, subject and detail of 1 to 3 digits.
pub fn enhanced_code(text: &str) -> Option<(u8, u16, u16)> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(parse_enhanced)
}

/// Exactly `c.s.d`.
pub fn parse_enhanced(word: &str) -> Option<(u8, u16, u16)> {
    let mut it = word.trim().split('.');
    let (c, s, d) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let ok = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if c.len() != 1 || !ok(s) || !ok(d) {
        return None;
    }
    let class: u8 = c.parse().ok()?;
    matches!(class, 2 | 4 | 5).then_some((class, s.parse().ok()?, d.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_in_text() {
        assert_eq!(smtp_code("smtp; 550 5.1.1 <a@b>: no"), Some(550));
        assert_eq!(smtp_code("550-5.1.1 The email account"), Some(550));
        assert_eq!(smtp_code("Remote host said: 552 full"), Some(552));
        assert_eq!(smtp_code("from 192.0.2.250 said"), None);
        assert_eq!(smtp_code("ip 10.0.0.1 550x"), None);
        assert_eq!(smtp_code(""), None);
        assert_eq!(enhanced_code("550-5.1.1 The email"), Some((5, 1, 1)));
        assert_eq!(enhanced_code("no mailbox here (#5.1.1)"), Some((5, 1, 1)));
        assert_eq!(enhanced_code("host 192.0.2.1 said 4.2.2"), Some((4, 2, 2)));
        assert_eq!(enhanced_code("version 1.2.3"), None);
        assert_eq!(parse_enhanced("5.7.1"), Some((5, 7, 1)));
        assert_eq!(parse_enhanced("5.7"), None);
        assert_eq!(parse_enhanced("5.1234.1"), None);
    }
}
