//! The command lines this client sends, as bytes, and the checks that keep
//! caller data from changing their meaning: no CR, LF or other control
//! character in an address or a name (which would inject commands), no angle
//! bracket or stray space (which would inject parameters), DSN values from their
//! RFC 3461 grammar, xtext encoding (RFC 3461 §4). Pure.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A value the caller supplied cannot be sent; the text says which and why.
pub type Invalid = String;

pub fn ehlo(name: &str) -> Vec<u8> {
    format!("EHLO {name}\r\n").into_bytes()
}

pub fn helo(name: &str) -> Vec<u8> {
    format!("HELO {name}\r\n").into_bytes()
}

pub const STARTTLS: &[u8] = b"STARTTLS\r\n";
pub const DATA: &[u8] = b"DATA\r\n";
pub const RSET: &[u8] = b"RSET\r\n";
pub const QUIT: &[u8] = b"QUIT\r\n";
pub const AUTH_LOGIN: &[u8] = b"AUTH LOGIN\r\n";

/// Checks an EHLO/HELO argument: a domain or an address literal, printable
/// ASCII without spaces.
pub fn check_helo_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("EHLO name must have 1 to 255 characters: {name:?}"));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "EHLO name must be printable ASCII without spaces: {name:?}"
        ));
    }
    Ok(())
}

/// `AUTH PLAIN <base64(\0user\0password)>` (RFC 4616, initial response).
pub fn auth_plain(user: &str, password: &str) -> Result<Vec<u8>, Invalid> {
    check_credentials(user, password)?;
    let token = STANDARD.encode(format!("\0{user}\0{password}"));
    Ok(format!("AUTH PLAIN {token}\r\n").into_bytes())
}

/// One base64 line of the AUTH LOGIN exchange.
pub fn auth_login_line(value: &str) -> Vec<u8> {
    format!("{}\r\n", STANDARD.encode(value)).into_bytes()
}

pub fn check_credentials(user: &str, password: &str) -> Result<(), Invalid> {
    if user.contains('\0') || password.contains('\0') {
        return Err("AUTH user name or password contains NUL".to_owned());
    }
    Ok(())
}

/// Which optional MAIL FROM parameters to send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailParams<'a> {
    pub size: Option<usize>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub ret: Option<&'a str>,
    pub envid: Option<&'a str>,
    /// RFC 8689 REQUIRETLS.
    pub require_tls: bool,
}

/// `MAIL FROM:<path> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8] [RET=..] [ENVID=..]`.
pub fn mail_from(path: &str, params: &MailParams<'_>) -> Result<Vec<u8>, Invalid> {
    if !path.is_empty() {
        check_address(path, params.smtputf8)?;
    }
    let mut line = format!("MAIL FROM:<{path}>");
    if let Some(size) = params.size {
        line.push_str(&format!(" SIZE={size}"));
    }
    if params.eight_bit_mime {
        line.push_str(" BODY=8BITMIME");
    }
    if params.smtputf8 {
        line.push_str(" SMTPUTF8");
    }
    if let Some(ret) = params.ret {
        let ret = ret.to_ascii_uppercase();
        if ret != "FULL" && ret != "HDRS" {
            return Err(format!("DSN RET must be FULL or HDRS: {ret:?}"));
        }
        line.push_str(&format!(" RET={ret}"));
    }
    if let Some(envid) = params.envid {
        if envid.is_empty() || envid.len() > 100 {
            return Err(format!(
                "DSN ENVID must have 1 to 100 characters: {envid:?}"
            ));
        }
        line.push_str(&format!(" ENVID={}", xtext(envid)));
    }
    if params.require_tls {
        line.push_str(" REQUIRETLS");
    }
    line.push_str("\r\n");
    Ok(line.into_bytes())
}

/// `RCPT TO:<address> [NOTIFY=..] [ORCPT=type;xtext]`; the DSN parameters only
/// when `dsn` (the server offers DSN).
pub fn rcpt_to(
    address: &str,
    notify: Option<&str>,
    orcpt: Option<&str>,
    dsn: bool,
    smtputf8: bool,
) -> Result<Vec<u8>, Invalid> {
    check_address(address, smtputf8)?;
    let notify = notify.map(check_notify).transpose()?;
    let orcpt = orcpt.map(encode_orcpt).transpose()?;
    let mut line = format!("RCPT TO:<{address}>");
    if dsn {
        if let Some(notify) = notify {
            line.push_str(&format!(" NOTIFY={notify}"));
        }
        if let Some(orcpt) = orcpt {
            line.push_str(&format!(" ORCPT={orcpt}"));
        }
    }
    line.push_str("\r\n");
    Ok(line.into_bytes())
}

/// An address may not contain control characters or angle brackets, nor
/// spaces outside a quoted local part; non-ASCII only with SMTPUTF8.
pub fn check_address(address: &str, smtputf8: bool) -> Result<(), Invalid> {
    if address.is_empty() {
        return Err("empty address".to_owned());
    }
    if address
        .chars()
        .any(|c| c.is_control() || c == '<' || c == '>')
    {
        return Err(format!(
            "address contains a control character or angle bracket: {address:?}"
        ));
    }
    if !smtputf8 && !address.is_ascii() {
        return Err(format!("non-ASCII address without SMTPUTF8: {address:?}"));
    }
    let unquoted = match address.strip_prefix('"') {
        Some(rest) => {
            let mut escaped = false;
            let close = rest.char_indices().find_map(|(i, c)| {
                let found = !escaped && c == '"';
                escaped = !escaped && c == '\\';
                found.then_some(i)
            });
            match close {
                Some(i) => &rest[i + 1..],
                None => return Err(format!("unterminated quoted local part: {address:?}")),
            }
        }
        None => address,
    };
    if unquoted.chars().any(char::is_whitespace) {
        return Err(format!("address contains a space: {address:?}"));
    }
    Ok(())
}

/// RFC 3461 §4.1: `NEVER` or a comma list of SUCCESS, FAILURE, DELAY.
fn check_notify(notify: &str) -> Result<String, Invalid> {
    let upper = notify.to_ascii_uppercase();
    let ok = upper == "NEVER"
        || (!upper.is_empty()
            && upper
                .split(',')
                .all(|v| matches!(v, "SUCCESS" | "FAILURE" | "DELAY")));
    if ok {
        Ok(upper)
    } else {
        Err(format!(
            "DSN NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY: {notify:?}"
        ))
    }
}

/// RFC 3461 §4.2: `addr-type ";" xtext`; a value without `;` is an rfc822 address.
fn encode_orcpt(orcpt: &str) -> Result<String, Invalid> {
    let (kind, address) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
    let kind_ok = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !kind_ok || address.is_empty() || address.len() > 500 {
        return Err(format!("invalid DSN ORCPT: {orcpt:?}"));
    }
    Ok(format!("{kind};{}", xtext(address)))
}

/// RFC 3461 §4: printable ASCII except `+` and `=` as is, every other byte as `+HH`.
pub fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn mail_from_parameters() {
        assert_eq!(
            text(mail_from("", &MailParams::default()).unwrap()),
            "MAIL FROM:<>\r\n"
        );
        let params = MailParams {
            size: Some(1234),
            eight_bit_mime: true,
            smtputf8: true,
            ret: Some("hdrs"),
            envid: Some("id+1=x y"),
            require_tls: true,
        };
        assert_eq!(
            text(mail_from("bounce@exämple.org", &params).unwrap()),
            "MAIL FROM:<bounce@exämple.org> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+3Dx+20y REQUIRETLS\r\n"
        );
        assert!(
            mail_from(
                "a@b",
                &MailParams {
                    ret: Some("ALL"),
                    ..MailParams::default()
                }
            )
            .is_err()
        );
        assert!(
            mail_from(
                "a@b",
                &MailParams {
                    envid: Some(""),
                    ..MailParams::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn rcpt_to_parameters_only_with_dsn() {
        assert_eq!(
            text(
                rcpt_to(
                    "u@x.org",
                    Some("failure,delay"),
                    Some("u@x.org"),
                    true,
                    false
                )
                .unwrap()
            ),
            "RCPT TO:<u@x.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;u@x.org\r\n"
        );
        assert_eq!(
            text(rcpt_to("u@x.org", Some("NEVER"), Some("rfc822;a+b@x"), false, false).unwrap()),
            "RCPT TO:<u@x.org>\r\n"
        );
        assert_eq!(
            text(rcpt_to("u@x.org", None, Some("rfc822;a+b@x"), true, false).unwrap()),
            "RCPT TO:<u@x.org> ORCPT=rfc822;a+2Bb@x\r\n"
        );
        // invalid DSN values are refused even when DSN is not offered
        assert!(rcpt_to("u@x", Some("NEVER,SUCCESS"), None, false, false).is_err());
        assert!(rcpt_to("u@x", Some(""), None, true, false).is_err());
        assert!(rcpt_to("u@x", None, Some("bad type;u@x"), true, false).is_err());
    }

    #[test]
    fn injection_attempts_are_refused() {
        for address in [
            "a@b>\r\nRCPT TO:<evil@x",
            "a@b\nDATA",
            "a@b\r",
            "a@b> NOTIFY=NEVER",
            "a@b>",
            "<a@b",
            "a b@c",
            "a@b\0",
            "",
            "\"unterminated@x",
        ] {
            assert!(check_address(address, true).is_err(), "{address:?}");
        }
        assert!(check_address("\"john doe\"@example.com", false).is_ok());
        assert!(check_address("\"a\\\" b\"@example.com", false).is_ok());
        assert!(check_address("\"a\" b@example.com", false).is_err());
        assert!(check_address("üser@example.com", false).is_err());
        assert!(check_address("üser@example.com", true).is_ok());
        assert!(check_address("Postmaster", false).is_ok());
    }

    #[test]
    fn helo_names() {
        assert!(check_helo_name("relay.example.org").is_ok());
        assert!(check_helo_name("[192.0.2.1]").is_ok());
        for bad in ["", "a b", "a\r\nMAIL FROM:<x>", "exämple", &"a".repeat(256)] {
            assert!(check_helo_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn auth_lines() {
        assert_eq!(
            text(auth_plain("user", "pass").unwrap()),
            "AUTH PLAIN AHVzZXIAcGFzcw==\r\n"
        );
        assert!(auth_plain("us\0er", "pass").is_err());
        assert_eq!(text(auth_login_line("user")), "dXNlcg==\r\n");
    }

    #[test]
    fn xtext_vectors() {
        assert_eq!(xtext("plain"), "plain");
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext("é"), "+C3+A9");
        assert_eq!(xtext("\r\n"), "+0D+0A");
    }
}
