//! `POST /v1/messages` bodies: validation of every field (errors name it, e.g.
//! `to[2]`, `attachments[0].content`, `headers.X-Campaign`) and composition of the
//! RFC 5322 message with `mail-builder`. Pure: no store, no policy, no I/O; the handler
//! hands the result to the same ingest pipeline SMTP uses.

use base64::Engine as _;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as MbAddress;
use mail_builder::headers::text::Text;
use mailroom_model::Address;
use serde::Deserialize;

use crate::ApiError;

/// An address as JSON: `"a@example.com"` or `{"address": "a@example.com", "name": "A"}`.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged, deny_unknown_fields)]
pub enum JsonAddress {
    Plain(String),
    Named {
        address: String,
        #[serde(default)]
        name: Option<String>,
    },
}

/// One address or a list of them.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum OneOrMany {
    One(JsonAddress),
    Many(Vec<JsonAddress>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&JsonAddress> {
        match self {
            OneOrMany::One(a) => vec![a],
            OneOrMany::Many(v) => v.iter().collect(),
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub filename: String,
    #[serde(default)]
    pub content_type: Option<String>,
    /// Base64 (standard alphabet, padding optional, whitespace ignored).
    pub content: String,
    /// Makes the part inline, referenced from HTML as `cid:<content_id>`.
    #[serde(default)]
    pub content_id: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    #[serde(default)]
    pub from: Option<JsonAddress>,
    #[serde(default)]
    pub to: Option<OneOrMany>,
    #[serde(default)]
    pub cc: Option<OneOrMany>,
    #[serde(default)]
    pub bcc: Option<OneOrMany>,
    #[serde(default)]
    pub reply_to: Option<OneOrMany>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub headers: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// A complete RFC 5322 message, base64; needs `envelope`.
    #[serde(default)]
    pub raw: Option<String>,
    #[serde(default)]
    pub envelope: Option<Envelope>,
    /// Per-message tracking opt-out; it can only turn off what the tenant enables.
    #[serde(default)]
    pub tracking: Option<TrackingChoice>,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct TrackingChoice {
    #[serde(default = "yes")]
    pub opens: bool,
    #[serde(default = "yes")]
    pub clicks: bool,
}

fn yes() -> bool {
    true
}

impl TrackingChoice {
    /// The `X-Mailroom-Track` line ingest reads (and removes) for this choice.
    fn header_line(self) -> String {
        let on: Vec<&str> = [(self.opens, "opens"), (self.clicks, "clicks")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        let value = if on.is_empty() {
            "none".to_string()
        } else {
            on.join(", ")
        };
        format!("{}: {value}\r\n", mailroom_ingest::TRACK_HEADER)
    }
}

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

pub const MAX_TAGS: usize = 20;
pub const MAX_METADATA_BYTES: usize = 2048;

/// Headers a caller may not set: trace and authentication headers are Mailroom's, and
/// the structural ones have their own fields.
const RESERVED_HEADERS: &[&str] = &[
    "received",
    "return-path",
    "dkim-signature",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
    "authentication-results",
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "x-mailroom-track",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
];

fn parse_address(field: &str, text: &str) -> Result<Address, ApiError> {
    Address::parse(text.trim())
        .map_err(|e| ApiError::invalid(field, format!("not a valid address: {e}")))
}

fn no_line_breaks(field: &str, text: &str) -> Result<(), ApiError> {
    if text.contains(['\r', '\n', '\0']) {
        return Err(ApiError::invalid(
            field,
            "must not contain CR, LF or NUL characters",
        ));
    }
    Ok(())
}

fn json_address(field: &str, a: &JsonAddress) -> Result<(Address, Option<String>), ApiError> {
    match a {
        JsonAddress::Plain(text) => Ok((parse_address(field, text)?, None)),
        JsonAddress::Named { address, name } => {
            let parsed = parse_address(&format!("{field}.address"), address)?;
            if let Some(n) = name {
                no_line_breaks(&format!("{field}.name"), n)?;
            }
            Ok((parsed, name.clone().filter(|n| !n.trim().is_empty())))
        }
    }
}

fn header_address(a: &Address, name: Option<String>) -> MbAddress<'static> {
    MbAddress::new_address(name, a.to_string())
}

/// Parses a list field (`to`, `cc`, ...) into addresses with their field paths.
fn address_list(
    field: &str,
    list: &Option<OneOrMany>,
) -> Result<Vec<(Address, Option<String>, String)>, ApiError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let many = matches!(list, OneOrMany::Many(_));
    list.items()
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let path = if many {
                format!("{field}[{i}]")
            } else {
                field.to_string()
            };
            json_address(&path, a).map(|(addr, name)| (addr, name, path))
        })
        .collect()
}

fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(compact.as_bytes())
        .map_err(|e| ApiError::invalid(field, format!("not valid base64: {e}")))
}

fn meta(req: &SendRequest) -> Result<Option<serde_json::Value>, ApiError> {
    if req.tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(
            "tags",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    for (i, t) in req.tags.iter().enumerate() {
        if t.is_empty()
            || t.len() > 64
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(ApiError::invalid(
                &format!("tags[{i}]"),
                "1 to 64 characters: letters, digits, '-', '_', '.' or ':'",
            ));
        }
    }
    for (k, v) in &req.metadata {
        if !v.is_string() && !v.is_number() && !v.is_boolean() {
            return Err(ApiError::invalid(
                &format!("metadata.{k}"),
                "values must be strings, numbers or booleans",
            ));
        }
    }
    let metadata = serde_json::Value::Object(req.metadata.clone());
    if metadata.to_string().len() > MAX_METADATA_BYTES {
        return Err(ApiError::invalid(
            "metadata",
            format!("at most {MAX_METADATA_BYTES} bytes as JSON"),
        ));
    }
    if req.tags.is_empty() && req.metadata.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        serde_json::json!({ "tags": req.tags, "metadata": metadata }),
    ))
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
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> SendRequest {
        serde_json::from_value(json).expect("request")
    }

    fn field_of(r: Result<Composed, ApiError>) -> String {
        r.expect_err("should fail").field.unwrap_or_default()
    }

    #[test]
    fn structured_message_has_headers_parts_and_envelope() {
        let r = req(serde_json::json!({
            "from": {"address": "app@acme.test", "name": "Acme Ä"},
            "to": ["a@example.net", "b@example.net"],
            "cc": "c@example.net",
            "bcc": ["hidden@example.net", "a@example.net"],
            "subject": "Hello — world",
            "text": "plain\nbody",
            "html": "<p>hi</p>",
            "headers": {"X-Campaign": "spring"},
            "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content": "aGVsbG8="}],
            "tags": ["welcome"],
            "metadata": {"user": 42}
        }));
        let c = compose(&r, 50, "id1@mailroom.test").expect("compose");
        let text = String::from_utf8_lossy(&c.body);
        assert_eq!(c.mail_from.to_string(), "app@acme.test");
        let rcpts: Vec<String> = c.recipients.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(
            rcpts,
            [
                "a@example.net",
                "b@example.net",
                "c@example.net",
                "hidden@example.net"
            ]
        );
        assert!(text.contains("X-Campaign: spring\r\n"), "{text}");
        assert!(text.contains("Message-ID: <id1@mailroom.test>"), "{text}");
        assert!(
            !text.to_ascii_lowercase().contains("hidden@"),
            "Bcc leaked: {text}"
        );
        assert!(text.contains("multipart/mixed"), "{text}");
        assert!(text.contains("a.txt"));
        assert!(!text.contains("\n\n") && !text.replace("\r\n", "").contains('\n'));
        assert_eq!(c.meta.unwrap()["tags"][0], "welcome");
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = serde_json::json!({"from": "a@acme.test", "to": ["x@example.net"], "subject": "s", "text": "t"});
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base.clone();
            b[k] = v;
            req(b)
        };
        let without = |k: &str| {
            let mut b = base.clone();
            b.as_object_mut().unwrap().remove(k);
            req(b)
        };
        assert_eq!(field_of(compose(&without("from"), 50, "m")), "from");
        assert_eq!(
            field_of(compose(&with("from", "nope".into()), 50, "m")),
            "from"
        );
        assert_eq!(
            field_of(compose(
                &with("to", serde_json::json!(["ok@x.test", "bad"])),
                50,
                "m"
            )),
            "to[1]"
        );
        assert_eq!(
            field_of(compose(
                &with("cc", serde_json::json!({"address": "x"})),
                50,
                "m"
            )),
            "cc.address"
        );
        assert_eq!(field_of(compose(&without("subject"), 50, "m")), "subject");
        assert_eq!(
            field_of(compose(&with("subject", "a\r\nBcc: x@y".into()), 50, "m")),
            "subject"
        );
        assert_eq!(field_of(compose(&without("text"), 50, "m")), "text");
        assert_eq!(
            field_of(compose(
                &with("headers", serde_json::json!({"X-A": "v\r\nBcc: e@x"})),
                50,
                "m"
            )),
            "headers.X-A"
        );
        assert_eq!(
            field_of(compose(
                &with("headers", serde_json::json!({"DKIM-Signature": "v=1"})),
                50,
                "m"
            )),
            "headers.DKIM-Signature"
        );
        assert_eq!(
            field_of(compose(
                &with("headers", serde_json::json!({"Received": "x"})),
                50,
                "m"
            )),
            "headers.Received"
        );
        assert_eq!(
            field_of(compose(
                &with(
                    "attachments",
                    serde_json::json!([{"filename": "a", "content": "!!"}])
                ),
                50,
                "m"
            )),
            "attachments[0].content"
        );
        assert_eq!(
            field_of(compose(
                &with(
                    "attachments",
                    serde_json::json!([{"filename": "a", "content": "", "content_type": "pdf"}])
                ),
                50,
                "m"
            )),
            "attachments[0].content_type"
        );
        assert_eq!(
            field_of(compose(
                &with("tags", serde_json::json!(["ok", "no spaces"])),
                50,
                "m"
            )),
            "tags[1]"
        );
        let many: Vec<String> = (0..51).map(|i| format!("r{i}@example.net")).collect();
        assert_eq!(
            field_of(compose(&with("to", serde_json::json!(many)), 50, "m")),
            "to"
        );
        assert_eq!(
            field_of(compose(&with("raw", "aGk=".into()), 50, "m")),
            "from"
        );
    }

    #[test]
    fn raw_needs_an_envelope_and_is_normalised() {
        let r = req(serde_json::json!({"raw": "RnJvbTogYUBhY21lLnRlc3QKU3ViamVjdDogeAoKYm9keQo="}));
        assert_eq!(field_of(compose(&r, 50, "m")), "envelope");
        let r = req(serde_json::json!({
            "raw": "RnJvbTogYUBhY21lLnRlc3QKU3ViamVjdDogeAoKYm9keQo=",
            "envelope": {"from": "a@acme.test", "to": ["x@example.net", "bad"]}
        }));
        assert_eq!(field_of(compose(&r, 50, "m")), "envelope.to[1]");
        let r = req(serde_json::json!({
            "raw": "RnJvbTogYUBhY21lLnRlc3QKU3ViamVjdDogeAoKYm9keQo=",
            "envelope": {"from": "a@acme.test", "to": ["x@example.net"]}
        }));
        let c = compose(&r, 50, "m").expect("raw");
        assert_eq!(c.body, b"From: a@acme.test\r\nSubject: x\r\n\r\nbody\r\n");
    }

    #[test]
    fn crlf_normalisation() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd");
    }
}
