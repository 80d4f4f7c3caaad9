//! The JSON body of `POST /v1/messages` as serde reads it: addresses, lists,
//! attachments, the raw envelope and the per-message tracking choice. Only shapes
//! here; what each field must hold is checked in `fields`.

use serde::Deserialize;

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
    pub(super) fn items(&self) -> Vec<&JsonAddress> {
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
    /// REQUIRETLS (RFC 8689): deliver only over TLS validated by MTA-STS or DANE to
    /// exchangers that offer REQUIRETLS; otherwise bounce (5.7.30).
    #[serde(default)]
    pub require_tls: bool,
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
    pub(super) fn header_line(self) -> String {
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
