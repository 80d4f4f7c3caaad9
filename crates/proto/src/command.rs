//! SMTP commands (RFC 5321 and extensions) parsed from one complete command line.
//! The lexing is smtp-proto's (Stalwart's sans-IO parser); this module turns its
//! result into the small set of commands and parameters Mailroom acts on, and decides
//! which syntax errors become which replies.

use smtp_proto::{Error as ProtoError, Request};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(MailParams),
    Rcpt(RcptParams),
    Data,
    Bdat {
        size: usize,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    StartTls,
    Auth {
        mechanism: Mechanism,
        initial: Option<String>,
    },
    Vrfy,
    Expn,
    Help,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    /// Any mechanism Mailroom does not offer.
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnRet {
    Full,
    Headers,
}

impl DsnRet {
    pub fn as_str(self) -> &'static str {
        match self {
            DsnRet::Full => "FULL",
            DsnRet::Headers => "HDRS",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// The reverse-path as written between `<` and `>`; empty for the null sender.
    pub address: String,
    /// SIZE= declared by the client, if any.
    pub size: Option<usize>,
    pub smtputf8: bool,
    pub eight_bit: bool,
    /// DSN RET= (RFC 3461), stored for the delivery side.
    pub ret: Option<DsnRet>,
    /// DSN ENVID=.
    pub envid: Option<String>,
    /// REQUIRETLS (RFC 8689): deliver only over validated TLS to servers offering it.
    pub require_tls: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptParams {
    pub address: String,
    /// DSN NOTIFY= as a comma-separated list (NEVER, SUCCESS, FAILURE, DELAY).
    pub notify: Option<String>,
    /// DSN ORCPT=.
    pub orcpt: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The line did not end with CRLF or contained NUL.
    BadLineEnding,
    Unknown,
    Syntax(&'static str),
    InvalidSender,
    InvalidRecipient,
    Parameter(String),
}

impl CommandError {
    pub fn reply(&self) -> crate::Reply {
        use crate::reply;
        match self {
            CommandError::BadLineEnding => crate::Reply::new(
                500,
                (5, 5, 2),
                "Syntax error: commands must end with CRLF and contain no NUL",
            ),
            CommandError::Unknown => reply::unknown_command(),
            CommandError::Syntax(usage) => reply::syntax(usage),
            CommandError::InvalidSender => reply::bad_sender_syntax("invalid address syntax"),
            CommandError::InvalidRecipient => reply::bad_recipient_syntax("invalid address syntax"),
            CommandError::Parameter(p) => reply::bad_parameter(p),
        }
    }
}

/// Parses one command line, which must include its terminating CRLF.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    if !line.ends_with(b"\r\n")
        || line[..line.len() - 2].contains(&b'\n')
        || line[..line.len() - 2].contains(&b'\r')
        || line.contains(&0)
    {
        return Err(CommandError::BadLineEnding);
    }
    check_numbers_and_duplicates(&line[..line.len() - 2])?;
    let mut iter = line.iter();
    let request = Request::parse(&mut iter).map_err(|e| match e {
        ProtoError::NeedsMoreData { .. } => CommandError::Syntax("incomplete command"),
        ProtoError::UnknownCommand => CommandError::Unknown,
        ProtoError::InvalidSenderAddress => CommandError::InvalidSender,
        ProtoError::InvalidRecipientAddress => CommandError::InvalidRecipient,
        ProtoError::SyntaxError { syntax } => CommandError::Syntax(syntax),
        ProtoError::InvalidParameter { param } => CommandError::Parameter(param.to_string()),
        ProtoError::UnsupportedParameter { param } => CommandError::Parameter(param),
        ProtoError::ResponseTooLong | ProtoError::InvalidResponse { .. } => CommandError::Unknown,
    })?;
    Ok(match request {
        Request::Ehlo { host } => Command::Ehlo(host.into_owned()),
        Request::Helo { host } => Command::Helo(host.into_owned()),
        Request::Lhlo { .. } => return Err(CommandError::Unknown),
        Request::Mail { from } => {
            let ret = if from.flags & smtp_proto::MAIL_RET_FULL != 0 {
                Some(DsnRet::Full)
            } else if from.flags & smtp_proto::MAIL_RET_HDRS != 0 {
                Some(DsnRet::Headers)
            } else {
                None
            };
            if from.flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 {
                return Err(CommandError::Parameter("BODY=BINARYMIME".into()));
            }
            Command::Mail(MailParams {
                address: from.address.into_owned(),
                size: (from.size > 0).then_some(from.size),
                smtputf8: from.flags & smtp_proto::MAIL_SMTPUTF8 != 0,
                eight_bit: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
                ret,
                envid: from.env_id.map(|e| e.into_owned()),
                require_tls: from.flags & smtp_proto::MAIL_REQUIRETLS != 0,
            })
        }
        Request::Rcpt { to } => {
            let mut notify = Vec::new();
            if to.flags & smtp_proto::RCPT_NOTIFY_NEVER != 0 {
                notify.push("NEVER");
            }
            if to.flags & smtp_proto::RCPT_NOTIFY_SUCCESS != 0 {
                notify.push("SUCCESS");
            }
            if to.flags & smtp_proto::RCPT_NOTIFY_FAILURE != 0 {
                notify.push("FAILURE");
            }
            if to.flags & smtp_proto::RCPT_NOTIFY_DELAY != 0 {
                notify.push("DELAY");
            }
            if notify.contains(&"NEVER") && notify.len() > 1 {
                return Err(CommandError::Parameter(
                    "NOTIFY=NEVER with other values".into(),
                ));
            }
            Command::Rcpt(RcptParams {
                address: to.address.into_owned(),
                notify: (!notify.is_empty()).then(|| notify.join(",")),
                orcpt: to.orcpt.map(|o| o.into_owned()),
            })
        }
        Request::Bdat {
            chunk_size,
            is_last,
        } => Command::Bdat {
            size: chunk_size,
            last: is_last,
        },
        Request::Auth {
            mechanism,
            initial_response,
        } => {
            let mechanism = if mechanism == smtp_proto::AUTH_PLAIN {
                Mechanism::Plain
            } else if mechanism == smtp_proto::AUTH_LOGIN {
                Mechanism::Login
            } else {
                Mechanism::Other
            };
            let initial = (!initial_response.is_empty()).then(|| initial_response.into_owned());
            Command::Auth { mechanism, initial }
        }
        Request::Noop { .. } => Command::Noop,
        Request::Vrfy { .. } => Command::Vrfy,
        Request::Expn { .. } => Command::Expn,
        Request::Help { .. } => Command::Help,
        Request::StartTls => Command::StartTls,
        Request::Data => Command::Data,
        Request::Rset => Command::Rset,
        Request::Quit => Command::Quit,
        Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
            return Err(CommandError::Unknown);
        }
    })
}

/// What smtp-proto does not check: it truncates numbers that do not fit (so
/// `BDAT 99999999999999999999999` became a 999-byte chunk, and the bytes after it
/// commands; `SIZE=` likewise) and lets a repeated ESMTP parameter silently override
/// (or not) the first. RFC 1869 4.1.2 allows each parameter once. Both are refused here,
/// on the raw line, before smtp-proto sees it.
fn check_numbers_and_duplicates(line: &[u8]) -> Result<(), CommandError> {
    let text = String::from_utf8_lossy(line);
    let verb_len = text.find(' ').unwrap_or(text.len());
    let verb = text[..verb_len].to_ascii_uppercase();
    match verb.as_str() {
        "BDAT" => {
            let usage = CommandError::Syntax("BDAT <size> [LAST]");
            let mut args = text[verb_len..].split_ascii_whitespace();
            let size = args.next().ok_or(usage.clone())?;
            if !size.bytes().all(|b| b.is_ascii_digit()) || size.parse::<usize>().is_err() {
                return Err(usage);
            }
            match (args.next(), args.next()) {
                (None, _) => Ok(()),
                (Some(last), None) if last.eq_ignore_ascii_case("LAST") => Ok(()),
                _ => Err(usage),
            }
        }
        "MAIL" | "RCPT" => {
            let Some(params) = after_path(&text) else {
                return Ok(()); // no path: smtp-proto reports the syntax error
            };
            let mut seen: Vec<String> = Vec::new();
            for param in params.split_ascii_whitespace() {
                let (key, value) = param.split_once('=').unwrap_or((param, ""));
                let key = key.to_ascii_uppercase();
                if seen.contains(&key) {
                    return Err(CommandError::Parameter(format!("{key} (given twice)")));
                }
                if key == "SIZE" && value.parse::<usize>().is_err() {
                    return Err(CommandError::Parameter("SIZE".into()));
                }
                seen.push(key);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The text after the `<path>` of MAIL FROM / RCPT TO (quotes in the path respected).
fn after_path(text: &str) -> Option<&str> {
    let start = text.find('<')?;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(&text[start + i + 1..]),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, CommandError> {
        parse_command(s.as_bytes())
    }

    #[test]
    fn parses_the_submission_commands() {
        assert_eq!(
            p("EHLO client.example\r\n"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(
            p("ehlo client.example\r\n"),
            Ok(Command::Ehlo("client.example".into()))
        );
        let Ok(Command::Mail(m)) =
            p("MAIL FROM:<a@b.example> SIZE=1000 RET=HDRS ENVID=x1 BODY=8BITMIME SMTPUTF8\r\n")
        else {
            panic!("mail")
        };
        assert_eq!(m.address, "a@b.example");
        assert_eq!(m.size, Some(1000));
        assert_eq!(m.ret, Some(DsnRet::Headers));
        assert_eq!(m.envid.as_deref(), Some("x1"));
        assert!(m.smtputf8 && m.eight_bit);
        let Ok(Command::Rcpt(r)) =
            p("RCPT TO:<c@d.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@d.example\r\n")
        else {
            panic!("rcpt")
        };
        assert_eq!(r.address, "c@d.example");
        assert_eq!(r.notify.as_deref(), Some("SUCCESS,FAILURE"));
        // smtp-proto keeps the address and drops the "rfc822;" address type.
        assert_eq!(r.orcpt.as_deref(), Some("c@d.example"));
        assert_eq!(
            p("MAIL FROM:<>\r\n").map(|c| matches!(c, Command::Mail(m) if m.address.is_empty())),
            Ok(true)
        );
        assert_eq!(
            p("BDAT 100 LAST\r\n"),
            Ok(Command::Bdat {
                size: 100,
                last: true
            })
        );
        assert_eq!(
            p("AUTH PLAIN AGEAYg==\r\n"),
            Ok(Command::Auth {
                mechanism: Mechanism::Plain,
                initial: Some("AGEAYg==".into())
            })
        );
        assert_eq!(
            p("AUTH LOGIN\r\n"),
            Ok(Command::Auth {
                mechanism: Mechanism::Login,
                initial: None
            })
        );
        assert_eq!(p("STARTTLS\r\n"), Ok(Command::StartTls));
        assert_eq!(p("QUIT\r\n"), Ok(Command::Quit));
    }

    #[test]
    fn source_routes_are_dropped_and_garbage_refused() {
        let Ok(Command::Rcpt(r)) = p("RCPT TO:<@relay.example:user@other.example>\r\n") else {
            panic!("route")
        };
        assert_eq!(r.address, "user@other.example");
        assert_eq!(
            p("MAIL FROM:<a@b.example>\n"),
            Err(CommandError::BadLineEnding)
        );
        assert_eq!(
            p("MAIL FROM:<a\0@b.example>\r\n"),
            Err(CommandError::BadLineEnding)
        );
        assert_eq!(
            p("MAIL FROM:<a@b.example>\rRCPT TO:<x@y.example>\r\n"),
            Err(CommandError::BadLineEnding)
        );
        assert_eq!(p("XYZZY\r\n"), Err(CommandError::Unknown));
        assert!(matches!(
            p("MAIL FROM:<a@b.example> FOO=BAR\r\n"),
            Err(CommandError::Parameter(_))
        ));
        assert!(matches!(
            p("RCPT TO:<c@d.example> NOTIFY=NEVER,SUCCESS\r\n"),
            Err(CommandError::Parameter(_))
        ));
        assert!(p("MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n").is_err());
    }

    /// Found by review for the fuzzing issue: smtp-proto truncated overflowing numbers
    /// (a 23-digit BDAT size became 999) and let repeated parameters override.
    #[test]
    fn overflowing_numbers_and_repeated_parameters_are_refused() {
        let huge = "99999999999999999999999";
        assert_eq!(
            p(&format!("BDAT {huge} LAST\r\n")),
            Err(CommandError::Syntax("BDAT <size> [LAST]"))
        );
        for bad in [
            "BDAT 10 LAST LAST",
            "BDAT 10 FIRST",
            "BDAT -1",
            "BDAT +5",
            "BDAT",
        ] {
            assert!(p(&format!("{bad}\r\n")).is_err(), "{bad}");
        }
        assert_eq!(
            p(&format!("MAIL FROM:<a@b.example> SIZE={huge}\r\n")),
            Err(CommandError::Parameter("SIZE".into()))
        );
        for (line, key) in [
            ("MAIL FROM:<a@b.example> SIZE=10 SIZE=20", "SIZE"),
            ("MAIL FROM:<a@b.example> BODY=8BITMIME body=7BIT", "BODY"),
            ("MAIL FROM:<a@b.example> RET=FULL RET=HDRS", "RET"),
            ("MAIL FROM:<a@b.example> ENVID=a ENVID=b", "ENVID"),
            ("MAIL FROM:<a@b.example> SMTPUTF8 SMTPUTF8", "SMTPUTF8"),
            (
                "RCPT TO:<c@d.example> NOTIFY=SUCCESS NOTIFY=FAILURE",
                "NOTIFY",
            ),
            (
                "RCPT TO:<c@d.example> ORCPT=rfc822;a ORCPT=rfc822;b",
                "ORCPT",
            ),
        ] {
            assert_eq!(
                p(&format!("{line}\r\n")),
                Err(CommandError::Parameter(format!("{key} (given twice)"))),
                "{line}"
            );
        }
        // Still fine: one of each, several different ones, a '>' inside quotes.
        assert!(p("MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME RET=HDRS\r\n").is_ok());
        assert!(p("BDAT 0 LAST\r\n").is_ok());
        assert_eq!(
            after_path("MAIL FROM:<\"x>y\"@b.example> SIZE=1"),
            Some(" SIZE=1")
        );
    }
}
