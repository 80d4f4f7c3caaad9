//! Zone text for [`Zone::parse`]: one record per line, a readable subset of RFC
//! 1035 master-file syntax plus three pseudo-types for failures. Owns the parser and
//! its line-numbered errors.

use super::zone::{Behaviour, Zone, parse_name, split_txt};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, TXT};
use hickory_server::proto::rr::{Name, RData};
use std::fmt;

/// A line of zone text that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("zone text line {line}: {message}")]
pub struct ZoneParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl Zone {
    /// Reads zone text, one record per line:
    ///
    /// ```text
    /// ; comment (also "#"), blank lines ignored
    /// example.test.        MX 10 mx1.example.test.
    /// example.test.    300 IN MX 20 mx2.example.test.
    /// mx1.example.test.    A    127.0.0.1
    /// mx1.example.test.    AAAA ::1
    /// example.test.        TXT  "v=spf1 -all"
    /// nomail.test.         MX   0 .
    /// gone.test.           NXDOMAIN
    /// broken.test.         SERVFAIL
    /// slow.test.           TIMEOUT
    /// ```
    ///
    /// `name [ttl] [IN] TYPE data`. Every name is absolute, trailing dot or not (no
    /// `$ORIGIN`, no `@`). Types: MX, A, AAAA, CNAME, TXT (one or more quoted strings with `\"`
    /// and `\\` escapes, or the bare rest of the line), and the pseudo-types NXDOMAIN,
    /// SERVFAIL and TIMEOUT, which do what the builder methods of the same names do.
    /// Comments are whole lines only.
    pub fn parse(text: &str) -> Result<Zone, ZoneParseError> {
        let mut zone = Zone::new();
        for (index, line) in text.lines().enumerate() {
            parse_line(&mut zone, line).map_err(|message| ZoneParseError {
                line: index + 1,
                message,
            })?;
        }
        Ok(zone)
    }
}

/// Parses one field, phrasing a failure for the error message.
fn field<T: std::str::FromStr>(value: Option<&str>, what: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    let value = value.ok_or_else(|| format!("missing {what}"))?;
    value
        .parse()
        .map_err(|e| format!("bad {what} {value:?}: {e}"))
}

fn parse_line(zone: &mut Zone, line: &str) -> Result<(), String> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
        return Ok(());
    }
    let tokens = tokens(line);
    let mut i = 0;
    let owner_text = tokens[i].1;
    let owner = parse_name(owner_text)?;
    i += 1;
    let mut ttl = None;
    if let Some((_, t)) = tokens.get(i)
        && t.bytes().all(|b| b.is_ascii_digit())
    {
        ttl = Some(field::<u32>(Some(t), "TTL")?);
        i += 1;
    }
    if tokens
        .get(i)
        .is_some_and(|(_, t)| t.eq_ignore_ascii_case("IN"))
    {
        i += 1;
    }
    let (type_end, rtype) = match tokens.get(i) {
        Some((start, t)) => (start + t.len(), t.to_ascii_uppercase()),
        None => return Err(format!("missing record type after {owner_text:?}")),
    };
    let args: Vec<&str> = tokens[i + 1..].iter().map(|(_, t)| *t).collect();
    let no_args = |zone: &mut Zone, behaviour| {
        if args.is_empty() {
            zone.set_behaviour(owner.clone(), behaviour);
            Ok(())
        } else {
            Err(format!("{rtype} takes no data, found {:?}", args.join(" ")))
        }
    };
    let exact = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "{rtype} takes {n} field(s), found {}: {:?}",
                args.len(),
                args.join(" ")
            ))
        }
    };
    let data = match rtype.as_str() {
        "NXDOMAIN" => return no_args(zone, Behaviour::NxDomain),
        "SERVFAIL" => return no_args(zone, Behaviour::ServFail),
        "TIMEOUT" => return no_args(zone, Behaviour::Silent),
        "MX" => {
            exact(2)?;
            let preference = field::<u16>(args.first().copied(), "MX preference")?;
            let exchange: Name = parse_name(args[1])?;
            RData::MX(MX::new(preference, exchange))
        }
        "A" => {
            exact(1)?;
            RData::A(A(field(args.first().copied(), "IPv4 address")?))
        }
        "AAAA" => {
            exact(1)?;
            RData::AAAA(AAAA(field(args.first().copied(), "IPv6 address")?))
        }
        "TXT" => RData::TXT(TXT::new(txt_strings(line[type_end..].trim())?)),
        "CNAME" => {
            exact(1)?;
            RData::CNAME(CNAME(parse_name(args[0])?))
        }
        other => {
            return Err(format!(
                "unsupported type {other:?} (MX, A, AAAA, TXT, CNAME, NXDOMAIN, SERVFAIL, TIMEOUT)"
            ));
        }
    };
    zone.add_record(owner, data, ttl);
    Ok(())
}

/// Whitespace-separated tokens with their byte offsets in the line.
fn tokens(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

/// TXT data: quoted strings (each one or more character-strings, split at 255 octets),
/// or the bare text as one.
fn txt_strings(data: &str) -> Result<Vec<String>, String> {
    if data.is_empty() {
        return Err("TXT needs data".to_string());
    }
    if !data.starts_with('"') {
        return Ok(split_txt(data));
    }
    let mut out = Vec::new();
    let mut chars = data.chars();
    loop {
        match chars.next() {
            None => break,
            Some(c) if c.is_whitespace() => continue,
            Some('"') => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted TXT string".to_string()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => s.push(escaped),
                            None => return Err("unterminated quoted TXT string".to_string()),
                        },
                        Some(c) => s.push(c),
                    }
                }
                out.extend(split_txt(&s));
            }
            Some(c) => return Err(format!("unexpected {c:?} outside quotes in TXT data")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::zone::Answer;
    use super::*;
    use hickory_server::proto::op::ResponseCode;
    use hickory_server::proto::rr::RecordType;

    fn records(zone: &Zone, name: &str, qtype: RecordType) -> Vec<(u32, RData)> {
        match zone.answer(&parse_name(name).unwrap(), qtype) {
            Answer::Reply { answers, .. } => answers.into_iter().map(|r| (r.ttl, r.data)).collect(),
            Answer::Silent => panic!("silent"),
        }
    }

    #[test]
    fn reads_the_documented_example() {
        let zone = Zone::parse(
            "; mail for example.test\n\
             example.test.        MX 10 mx1.example.test.\n\
             example.test.    300 IN MX 20 mx2.example.test.\n\
             \n\
             # hash comments too\n\
             mx1.example.test.    A    127.0.0.1\n\
             mx1.example.test     AAAA ::1\n\
             example.test.        TXT  \"v=spf1 \\\"x\\\" -all\" \"second\"\n\
             bare.test            txt  hello world\n\
             nomail.test.         MX   0 .\n\
             gone.test.           NXDOMAIN\n\
             broken.test.         SERVFAIL\n\
             slow.test.           TIMEOUT\n",
        )
        .unwrap();
        let mx = records(&zone, "example.test", RecordType::MX);
        assert_eq!(mx.len(), 2);
        assert_eq!(mx[0].0, 60);
        assert_eq!(mx[1].0, 300);
        assert_eq!(
            records(&zone, "example.test", RecordType::TXT),
            vec![(
                60,
                RData::TXT(TXT::new(vec!["v=spf1 \"x\" -all".into(), "second".into()]))
            )]
        );
        assert_eq!(
            records(&zone, "bare.test", RecordType::TXT),
            vec![(60, RData::TXT(TXT::new(vec!["hello world".into()])))]
        );
        assert_eq!(
            records(&zone, "nomail.test", RecordType::MX),
            vec![(60, RData::MX(MX::new(0, Name::root())))]
        );
        assert!(matches!(
            zone.answer(&parse_name("broken.test").unwrap(), RecordType::A),
            Answer::Reply {
                rcode: ResponseCode::ServFail,
                ..
            }
        ));
        assert!(matches!(
            zone.answer(&parse_name("slow.test").unwrap(), RecordType::A),
            Answer::Silent
        ));
        assert!(matches!(
            zone.answer(&parse_name("gone.test").unwrap(), RecordType::A),
            Answer::Reply {
                rcode: ResponseCode::NXDomain,
                ..
            }
        ));
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("a.test. MX ten mx.test.", "bad MX preference \"ten\""),
            ("a.test. MX 10", "MX takes 2 field(s)"),
            ("a.test. A 300.1.1.1", "bad IPv4 address"),
            ("a.test. AAAA 127.0.0.1", "bad IPv6 address"),
            ("a.test. SRV 0 0 25 b.test.", "unsupported type \"SRV\""),
            ("a.test. CNAME", "CNAME takes 1 field(s)"),
            ("a.test.", "missing record type"),
            ("a.test. TXT \"open", "unterminated"),
            ("a.test. TXT", "TXT needs data"),
            ("a.test. SERVFAIL now", "SERVFAIL takes no data"),
            ("a..test. A 127.0.0.1", "bad name"),
        ];
        for (line, expected) in cases {
            let text = format!("ok.test. A 127.0.0.1\n{line}\n");
            let err = Zone::parse(&text).unwrap_err();
            assert_eq!(err.line, 2, "{line}");
            assert!(
                err.message.contains(expected),
                "{line}: {} does not contain {expected}",
                err.message
            );
            assert!(err.to_string().starts_with("zone text line 2: "));
        }
    }
}
