//! Checks of single request fields, each error naming its field: addresses and
//! address lists, header text without line breaks, base64 content, tags and metadata,
//! and the headers a caller may not set.

use base64::Engine as _;
use mail_builder::headers::address::Address as MbAddress;
use mailroom_model::Address;

use super::{JsonAddress, OneOrMany, SendRequest};
use crate::ApiError;

pub const MAX_TAGS: usize = 20;
pub const MAX_METADATA_BYTES: usize = 2048;

/// Headers a caller may not set: trace and authentication headers are Mailroom's, and
/// the structural ones have their own fields.
pub(super) const RESERVED_HEADERS: &[&str] = &[
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

pub(super) fn parse_address(field: &str, text: &str) -> Result<Address, ApiError> {
    Address::parse(text.trim())
        .map_err(|e| ApiError::invalid(field, format!("not a valid address: {e}")))
}

pub(super) fn no_line_breaks(field: &str, text: &str) -> Result<(), ApiError> {
    if text.contains(['\r', '\n', '\0']) {
        return Err(ApiError::invalid(
            field,
            "must not contain CR, LF or NUL characters",
        ));
    }
    Ok(())
}

pub(super) fn json_address(
    field: &str,
    a: &JsonAddress,
) -> Result<(Address, Option<String>), ApiError> {
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

pub(super) fn header_address(a: &Address, name: Option<String>) -> MbAddress<'static> {
    MbAddress::new_address(name, a.to_string())
}

/// Parses a list field (`to`, `cc`, ...) into addresses with their field paths.
pub(super) fn address_list(
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

pub(super) fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
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

pub(super) fn meta(req: &SendRequest) -> Result<Option<serde_json::Value>, ApiError> {
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
