//! The catalogue of replies. Every reply Mailroom's SMTP server sends is built here,
//! with its enhanced status code (RFC 3463), so the wording is consistent and a test can
//! name the reply it expects. The type itself and its wire form are `super`'s.

use super::Reply;

// --- connection -----------------------------------------------------------------

pub fn greeting(hostname: &str) -> Reply {
    Reply::plain(220, format!("{hostname} ESMTP Mailroom"))
}
pub fn closing(hostname: &str) -> Reply {
    Reply::new(221, (2, 0, 0), format!("{hostname} closing connection"))
}
pub fn too_many_connections() -> Reply {
    Reply::new(421, (4, 7, 0), "Too many connections, try again later")
}
pub fn too_many_connections_from_ip() -> Reply {
    Reply::new(
        421,
        (4, 7, 0),
        "Too many connections from your address, try again later",
    )
}
pub fn shutting_down() -> Reply {
    Reply::new(421, (4, 3, 2), "Service shutting down, try again later")
}
pub fn timeout() -> Reply {
    Reply::new(421, (4, 4, 2), "Timeout, closing connection")
}
pub fn session_too_long() -> Reply {
    Reply::new(
        421,
        (4, 4, 2),
        "Session lasted too long, closing connection",
    )
}
pub fn early_talker() -> Reply {
    Reply::new(554, (5, 5, 1), "Talking before the greeting is not allowed")
}

// --- generic --------------------------------------------------------------------

pub fn ok() -> Reply {
    Reply::new(250, (2, 0, 0), "Ok")
}
pub fn reset_ok() -> Reply {
    Reply::new(250, (2, 0, 0), "Reset state")
}
pub fn noop_ok() -> Reply {
    Reply::new(250, (2, 0, 0), "Ok")
}
pub fn line_too_long() -> Reply {
    Reply::new(500, (5, 5, 2), "Line too long")
}
pub fn unknown_command() -> Reply {
    Reply::new(500, (5, 5, 1), "Command unrecognized")
}
pub fn not_implemented() -> Reply {
    Reply::new(502, (5, 5, 1), "Command not implemented")
}
pub fn syntax(usage: &'static str) -> Reply {
    Reply::new(501, (5, 5, 4), format!("Syntax: {usage}"))
}
pub fn bad_sequence(text: &'static str) -> Reply {
    Reply::new(503, (5, 5, 1), text)
}
pub fn bad_parameter(param: impl std::fmt::Display) -> Reply {
    Reply::new(
        555,
        (5, 5, 4),
        format!("Unsupported or invalid parameter {param}"),
    )
}
pub fn vrfy_no_disclosure() -> Reply {
    Reply::new(
        252,
        (2, 5, 2),
        "Cannot verify addresses; send some mail and see",
    )
}
pub fn expn_refused() -> Reply {
    Reply::new(502, (5, 5, 1), "EXPN is not available")
}
pub fn help() -> Reply {
    Reply::new(
        214,
        (2, 0, 0),
        "See RFC 5321; Mailroom accepts authenticated submission",
    )
}
pub fn too_many_errors() -> Reply {
    Reply::new(421, (4, 7, 0), "Too many errors, closing connection")
}

// --- TLS and AUTH ---------------------------------------------------------------

pub fn starttls_ready() -> Reply {
    Reply::new(220, (2, 0, 0), "Ready to start TLS")
}
pub fn tls_unavailable() -> Reply {
    Reply::new(454, (4, 7, 0), "TLS not available")
}
pub fn already_tls() -> Reply {
    Reply::new(503, (5, 5, 1), "TLS already active")
}
pub fn auth_requires_tls() -> Reply {
    Reply::new(
        538,
        (5, 7, 11),
        "Encryption required for requested authentication mechanism",
    )
}
pub fn auth_unsupported_mechanism() -> Reply {
    Reply::new(
        504,
        (5, 5, 4),
        "Unrecognized authentication type; use PLAIN or LOGIN",
    )
}
pub fn auth_already() -> Reply {
    Reply::new(503, (5, 5, 1), "Already authenticated")
}
pub fn auth_in_transaction() -> Reply {
    Reply::new(503, (5, 5, 1), "AUTH not allowed during a mail transaction")
}
pub fn auth_challenge(b64: &'static str) -> Reply {
    Reply::plain(334, b64)
}
pub fn auth_ok() -> Reply {
    Reply::new(235, (2, 7, 0), "Authentication successful")
}
pub fn auth_failed() -> Reply {
    Reply::new(535, (5, 7, 8), "Authentication credentials invalid")
}
pub fn auth_malformed() -> Reply {
    Reply::new(501, (5, 5, 2), "Cannot decode authentication response")
}
pub fn auth_cancelled() -> Reply {
    Reply::new(501, (5, 7, 0), "Authentication cancelled")
}
pub fn auth_locked_out() -> Reply {
    Reply::new(
        421,
        (4, 7, 0),
        "Too many failed authentication attempts, try again later",
    )
}
pub fn auth_temp_failure() -> Reply {
    Reply::new(454, (4, 7, 0), "Temporary authentication failure")
}
pub fn auth_required() -> Reply {
    Reply::new(530, (5, 7, 0), "Authentication required")
}
/// MAIL FROM … REQUIRETLS on a session without TLS (RFC 8689 §4.1).
pub fn require_tls_needs_tls() -> Reply {
    Reply::new(
        530,
        (5, 7, 10),
        "REQUIRETLS needs a TLS session (STARTTLS first)",
    )
}
pub fn tls_required_for_relay() -> Reply {
    Reply::new(530, (5, 7, 0), "Must issue a STARTTLS command first")
}

// --- envelope -------------------------------------------------------------------

pub fn sender_ok() -> Reply {
    Reply::new(250, (2, 1, 0), "Sender ok")
}
pub fn recipient_ok() -> Reply {
    Reply::new(250, (2, 1, 5), "Recipient ok")
}
pub fn nested_mail() -> Reply {
    Reply::new(503, (5, 5, 1), "Sender already specified")
}
pub fn need_mail() -> Reply {
    Reply::new(503, (5, 5, 1), "Need MAIL command first")
}
pub fn need_rcpt() -> Reply {
    Reply::new(503, (5, 5, 1), "Need RCPT command first")
}
pub fn need_ehlo() -> Reply {
    Reply::new(503, (5, 5, 1), "Send EHLO or HELO first")
}
pub fn bad_sender_syntax(why: impl std::fmt::Display) -> Reply {
    Reply::new(553, (5, 1, 7), format!("Bad sender address: {why}"))
}
pub fn bad_recipient_syntax(why: impl std::fmt::Display) -> Reply {
    Reply::new(553, (5, 1, 3), format!("Bad recipient address: {why}"))
}
pub fn null_sender_refused() -> Reply {
    Reply::new(550, (5, 7, 1), "Null sender is not accepted for submission")
}
pub fn sender_not_authorized(domain: &str) -> Reply {
    Reply::new(
        550,
        (5, 7, 1),
        format!("Sender domain {domain} is not a verified domain of this account"),
    )
}
pub fn message_too_big_declared(limit: usize) -> Reply {
    Reply::new(
        552,
        (5, 3, 4),
        format!("Message size exceeds fixed limit of {limit} bytes"),
    )
}
pub fn too_many_recipients(limit: usize) -> Reply {
    Reply::new(
        452,
        (4, 5, 3),
        format!("Too many recipients (at most {limit} per message)"),
    )
}
pub fn account_inactive(status: &str) -> Reply {
    Reply::new(
        550,
        (5, 7, 1),
        format!("Sending is disabled for this account ({status})"),
    )
}
pub fn rate_limited(window: &str, retry_after_secs: u64) -> Reply {
    Reply::new(
        451,
        (4, 7, 1),
        format!("Sending rate exceeded ({window} quota), try again in {retry_after_secs} s"),
    )
}
pub fn recipient_not_in_sandbox() -> Reply {
    Reply::new(
        550,
        (5, 7, 1),
        "Recipient is not verified for this account (sandbox mode)",
    )
}
pub fn recipient_suppressed(reason: &str) -> Reply {
    Reply::new(
        550,
        (5, 1, 1),
        format!("Recipient is on this account's suppression list ({reason})"),
    )
}
pub fn utf8_not_declared() -> Reply {
    Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8")
}

// --- data -----------------------------------------------------------------------

pub fn start_data() -> Reply {
    Reply::plain(354, "Start mail input; end with <CRLF>.<CRLF>")
}
pub fn queued(id: &str) -> Reply {
    Reply::new(250, (2, 0, 0), format!("Ok: queued as {id}"))
}
pub fn chunk_ok(size: usize) -> Reply {
    Reply::new(250, (2, 0, 0), format!("{size} octets received"))
}
pub fn message_too_big(limit: usize) -> Reply {
    Reply::new(
        552,
        (5, 3, 4),
        format!("Message size exceeds fixed limit of {limit} bytes"),
    )
}
pub fn bare_cr() -> Reply {
    Reply::new(
        550,
        (5, 6, 0),
        "Message refused: bare CR found; lines must end with CRLF",
    )
}
pub fn lone_dot_line() -> Reply {
    Reply::new(
        550,
        (5, 6, 0),
        "Message refused: a line holding only \".\" did not end the data; only <CRLF>.<CRLF> does",
    )
}
pub fn nul_in_data() -> Reply {
    Reply::new(550, (5, 6, 0), "Message refused: NUL character found")
}
pub fn text_line_too_long(limit: usize) -> Reply {
    Reply::new(
        550,
        (5, 6, 0),
        format!("Message refused: a line is longer than {limit} characters"),
    )
}
pub fn data_and_bdat_mixed() -> Reply {
    Reply::new(
        503,
        (5, 5, 1),
        "DATA and BDAT cannot be mixed in one transaction",
    )
}
/// The domain is verified but allows only some local parts (per-domain sender list).
pub fn sender_address_not_allowed(address: &str) -> Reply {
    Reply::new(
        550,
        (5, 7, 1),
        format!("Sender address {address} is not an allowed sender of its domain"),
    )
}

pub fn header_sender_not_authorized(domain: &str) -> Reply {
    Reply::new(
        550,
        (5, 7, 1),
        format!("From header domain {domain} is not a verified domain of this account"),
    )
}
pub fn missing_from_header() -> Reply {
    Reply::new(550, (5, 6, 0), "Message refused: no valid From header")
}
pub fn malformed_headers(why: &str) -> Reply {
    Reply::new(550, (5, 6, 0), format!("Message refused: {why}"))
}
/// A content rule (URL blocklist, attachment, heuristics, malware) refused the message.
pub fn content_rejected(rule: &str) -> Reply {
    Reply::new(
        550,
        (5, 7, 1),
        format!("Message refused by content rule {rule}"),
    )
}
/// The malware scanner is unreachable and scanning fails closed.
pub fn scan_unavailable() -> Reply {
    Reply::new(
        451,
        (4, 7, 1),
        "Content scanner unavailable, try again later",
    )
}
pub fn storage_unavailable() -> Reply {
    Reply::new(451, (4, 3, 0), "Temporary storage failure, try again later")
}
pub fn storage_full() -> Reply {
    Reply::new(
        452,
        (4, 3, 1),
        "Insufficient system storage, try again later",
    )
}

// --- bounce intake listener ---

pub fn not_a_bounce_address() -> Reply {
    Reply::new(
        550,
        (5, 1, 1),
        "Recipient not accepted here: not a bounce address",
    )
}
pub fn report_received() -> Reply {
    Reply::new(250, (2, 0, 0), "Report received")
}
pub fn report_not_recognized() -> Reply {
    Reply::new(
        550,
        (5, 6, 0),
        "Not a delivery status notification or feedback report",
    )
}
/// A DMARC aggregate or TLS-RPT report that cannot be read; `why` is one printable line.
pub fn aggregate_report_refused(why: String) -> Reply {
    Reply::new(550, (5, 6, 0), format!("Report refused: {why}"))
}
pub fn aggregate_report_too_large(limit: usize) -> Reply {
    Reply::new(
        552,
        (5, 3, 4),
        format!("Report refused: larger than {limit} bytes once decompressed"),
    )
}
/// A report about a domain other than the one its address is for.
pub fn aggregate_report_wrong_domain(why: String) -> Reply {
    Reply::new(550, (5, 7, 1), format!("Report refused: {why}"))
}
/// A second kind of report (or a second domain's) in one transaction.
pub fn report_kinds_mixed() -> Reply {
    Reply::new(
        452,
        (4, 5, 3),
        "One domain's reports per transaction: send this recipient in another",
    )
}
pub fn auth_not_offered() -> Reply {
    Reply::new(503, (5, 5, 1), "AUTH is not offered on this listener")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_wire_forms() {
        assert_eq!(
            auth_required().to_wire(),
            "530 5.7.0 Authentication required\r\n"
        );
        let multi = Reply {
            code: 250,
            enhanced: None,
            lines: vec!["a".into(), "b\r\nMAIL FROM:<x>".into()],
        };
        assert_eq!(multi.to_wire(), "250-a\r\n250 b  MAIL FROM:<x>\r\n");
    }
}
