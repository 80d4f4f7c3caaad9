//! `POST /v1/messages` bodies: validation of every field (errors name it, e.g.
//! `to[2]`, `attachments[0].content`, `headers.X-Campaign`) and composition of the
//! RFC 5322 message with `mail-builder`. Pure: no store, no policy, no I/O; the handler
//! hands the result to the same ingest pipeline SMTP uses.

mod fields;
mod request;

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as MbAddress;
use mail_builder::headers::text::Text;
use mailroom_model::Address;

use crate::ApiError;
use fields::*;
pub use fields::{MAX_METADATA_BYTES, MAX_TAGS};
pub use request::*;

/// Puts the tracking choice (if any) in front of the composed message.
fn with_tracking(req: &SendRequest, body: Vec<u8>) -> Vec<u8> {
    match req.tracking {
        None => body,
        Some(t) => {
            let mut out = t.header_line().into_bytes();
            out.extend_from_slice(&body);
            out
        }
    }
}

/// A validated, composed message ready for ingest.
#[derive(Debug)]
pub struct Composed {
    pub mail_from: Address,
    /// Envelope recipients, de-duplicated, with the request field each came from.
    pub recipients: Vec<(Address, String)>,
    /// CRLF line endings.
    pub body: Vec<u8>,
    pub meta: Option<serde_json::Value>,
}

/// Validates the request and builds the message. `max_recipients` bounds `to`, `cc`
/// and `bcc` together (or `envelope.to`); `message_id` is the `Message-ID:` value to
/// use (without angle brackets).
pub fn compose(
    req: &SendRequest,
    max_recipients: usize,
    message_id: &str,
) -> Result<Composed, ApiError> {
    let meta = meta(req)?;
    if let Some(raw) = &req.raw {
        return compose_raw(req, raw, max_recipients, meta);
    }
    if req.envelope.is_some() {
        return Err(ApiError::invalid(
            "envelope",
            "only used with raw; for structured messages the envelope comes from from/to/cc/bcc",
        ));
    }
    let from = req
        .from
        .as_ref()
        .ok_or_else(|| ApiError::invalid("from", "required"))?;
    let (from, from_name) = json_address("from", from)?;
    let to = address_list("to", &req.to)?;
    let cc = address_list("cc", &req.cc)?;
    let bcc = address_list("bcc", &req.bcc)?;
    let reply_to = address_list("reply_to", &req.reply_to)?;
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(ApiError::invalid(
            "to",
            "at least one recipient is required in to, cc or bcc",
        ));
    }
    let mut recipients: Vec<(Address, String)> = Vec::new();
    for (a, _, path) in to.iter().chain(&cc).chain(&bcc) {
        if !recipients.iter().any(|(r, _)| r == a) {
            recipients.push((a.clone(), path.clone()));
        }
    }
    if recipients.len() > max_recipients {
        return Err(ApiError::invalid(
            "to",
            format!("at most {max_recipients} recipients in to, cc and bcc together"),
        ));
    }
    let subject = req
        .subject
        .as_deref()
        .ok_or_else(|| ApiError::invalid("subject", "required"))?;
    no_line_breaks("subject", subject)?;
    if req.text.is_none() && req.html.is_none() {
        return Err(ApiError::invalid(
            "text",
            "text or html (or both) is required",
        ));
    }
    let mut builder = MessageBuilder::new()
        .from(header_address(&from, from_name))
        .subject(subject.to_string())
        .message_id(message_id.to_string());
    if !to.is_empty() {
        builder = builder.to(MbAddress::new_list(
            to.iter()
                .map(|(a, n, _)| header_address(a, n.clone()))
                .collect(),
        ));
    }
    if !cc.is_empty() {
        builder = builder.cc(MbAddress::new_list(
            cc.iter()
                .map(|(a, n, _)| header_address(a, n.clone()))
                .collect(),
        ));
    }
    if !reply_to.is_empty() {
        builder = builder.reply_to(MbAddress::new_list(
            reply_to
                .iter()
                .map(|(a, n, _)| header_address(a, n.clone()))
                .collect(),
        ));
    }
    for (name, value) in &req.headers {
        let field = format!("headers.{name}");
        if name.is_empty()
            || name.len() > 76
            || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
        {
            return Err(ApiError::invalid(&field, "not a valid header name"));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("arc-") {
            return Err(ApiError::invalid(
                &field,
                "this header is set by Mailroom or by its own field",
            ));
        }
        let Some(text) = value.as_str() else {
            return Err(ApiError::invalid(&field, "must be a string"));
        };
        no_line_breaks(&field, text)?;
        if text.len() > 998 {
            return Err(ApiError::invalid(&field, "at most 998 bytes"));
        }
        // Text encodes non-ASCII values (RFC 2047) and folds long ones.
        builder = builder.header(name.clone(), Text::new(text.to_string()));
    }
    if let Some(text) = &req.text {
        builder = builder.text_body(text.clone());
    }
    if let Some(html) = &req.html {
        builder = builder.html_body(html.clone());
    }
    for (i, a) in req.attachments.iter().enumerate() {
        let base = format!("attachments[{i}]");
        if a.filename.trim().is_empty() || a.filename.len() > 255 {
            return Err(ApiError::invalid(
                &format!("{base}.filename"),
                "1 to 255 characters",
            ));
        }
        no_line_breaks(&format!("{base}.filename"), &a.filename)?;
        let content_type = a
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        let valid_type = content_type.split_once('/').is_some_and(|(t, s)| {
            let token = |x: &str| {
                !x.is_empty()
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
            };
            token(t) && token(s)
        });
        if !valid_type {
            return Err(ApiError::invalid(
                &format!("{base}.content_type"),
                "must be a MIME type such as application/pdf",
            ));
        }
        let content = decode_base64(&format!("{base}.content"), &a.content)?;
        // A text/* part leaves as 7bit or quoted-printable, chosen by mail-builder, which
        // passes NUL bytes through unencoded (found by the `compose` fuzz target): refuse
        // them here rather than send a message no receiver has to accept.
        if content_type
            .get(..5)
            .is_some_and(|t| t.eq_ignore_ascii_case("text/"))
            && content.contains(&0)
        {
            return Err(ApiError::invalid(
                &format!("{base}.content"),
                "a text/* attachment cannot carry NUL bytes (UTF-16 text, for instance); \
                 send it as application/octet-stream, which is base64-encoded",
            ));
        }
        match &a.content_id {
            Some(cid) => {
                if cid.is_empty()
                    || !cid
                        .bytes()
                        .all(|b| (33..=126).contains(&b) && !b"<>\"\\".contains(&b))
                {
                    return Err(ApiError::invalid(
                        &format!("{base}.content_id"),
                        "printable ASCII without spaces, quotes or angle brackets",
                    ));
                }
                builder = builder.inline(content_type, cid.clone(), content);
            }
            None => {
                builder = builder.attachment(content_type, a.filename.clone(), content);
            }
        }
    }
    let body = builder
        .write_to_vec()
        .map_err(|e| ApiError::invalid("text", format!("cannot build the message: {e}")))?;
    Ok(Composed {
        mail_from: from,
        recipients,
        body: with_tracking(req, to_crlf(&body)),
        meta,
    })
}

fn compose_raw(
    req: &SendRequest,
    raw: &str,
    max_recipients: usize,
    meta: Option<serde_json::Value>,
) -> Result<Composed, ApiError> {
    for (set, name) in [
        (req.from.is_some(), "from"),
        (req.to.is_some(), "to"),
        (req.cc.is_some(), "cc"),
        (req.bcc.is_some(), "bcc"),
        (req.reply_to.is_some(), "reply_to"),
        (req.subject.is_some(), "subject"),
        (req.text.is_some(), "text"),
        (req.html.is_some(), "html"),
        (!req.attachments.is_empty(), "attachments"),
        (!req.headers.is_empty(), "headers"),
    ] {
        if set {
            return Err(ApiError::invalid(
                name,
                "cannot be combined with raw (the raw message carries it)",
            ));
        }
    }
    let envelope = req
        .envelope
        .as_ref()
        .ok_or_else(|| ApiError::invalid("envelope", "required with raw"))?;
    let mail_from = parse_address("envelope.from", &envelope.from)?;
    if envelope.to.is_empty() {
        return Err(ApiError::invalid("envelope.to", "at least one recipient"));
    }
    let mut recipients: Vec<(Address, String)> = Vec::new();
    for (i, t) in envelope.to.iter().enumerate() {
        let path = format!("envelope.to[{i}]");
        let a = parse_address(&path, t)?;
        if !recipients.iter().any(|(r, _)| r == &a) {
            recipients.push((a, path));
        }
    }
    if recipients.len() > max_recipients {
        return Err(ApiError::invalid(
            "envelope.to",
            format!("at most {max_recipients} recipients"),
        ));
    }
    let bytes = decode_base64("raw", raw)?;
    if bytes.contains(&0) {
        return Err(ApiError::invalid("raw", "must not contain NUL bytes"));
    }
    Ok(Composed {
        mail_from,
        recipients,
        body: with_tracking(req, to_crlf(&bytes)),
        meta,
    })
}

/// Normalises line endings to CRLF (bare LF or bare CR become CRLF).
pub fn to_crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 32);
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
