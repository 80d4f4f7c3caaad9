//! What a parsed report says, as types: a bounce with its failed (or delayed)
//! recipients, or a complaint, each with what identifies the original message.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    Bounce(BounceReport),
    Complaint(ComplaintReport),
}

/// Which shape the bounce came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceFormat {
    /// RFC 3464 `multipart/report; report-type=delivery-status`.
    Dsn,
    /// "Hi. This is the qmail-send program ..."
    Qmail,
    /// "This message was created automatically by mail delivery software."
    Exim,
    /// Old sendmail: "The following addresses had permanent fatal errors".
    Sendmail,
}

impl BounceFormat {
    /// As the `bounced` event records it (`detail.format`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dsn => "dsn",
            Self::Qmail => "qmail",
            Self::Exim => "exim",
            Self::Sendmail => "sendmail",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BounceReport {
    pub format: BounceFormat,
    pub reporting_mta: Option<String>,
    pub recipients: Vec<ReportedRecipient>,
    pub original: OriginalRef,
}

/// RFC 3464 `Action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
}

impl Action {
    pub fn parse(text: &str) -> Option<Self> {
        let word = text.split_whitespace().next()?.to_ascii_lowercase();
        match word.as_str() {
            "failed" => Some(Self::Failed),
            "delayed" => Some(Self::Delayed),
            "delivered" => Some(Self::Delivered),
            "relayed" => Some(Self::Relayed),
            "expanded" => Some(Self::Expanded),
            _ => None,
        }
    }
}

/// One recipient's fate as the report gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportedRecipient {
    /// Final-Recipient (or Original-Recipient), bare.
    pub address: Option<String>,
    pub action: Action,
    /// RFC 3463 status (`Status:` or found in the diagnostic).
    pub status: Option<(u8, u16, u16)>,
    /// The remote server's basic reply code, when the diagnostic has one.
    pub code: Option<u16>,
    /// The remote diagnostic (or the bounce text about this recipient).
    pub diagnostic: String,
    pub remote_mta: Option<String>,
}

/// An RFC 5965 feedback report.
#[derive(Clone, Debug, PartialEq)]
pub struct ComplaintReport {
    /// `abuse`, `fraud`, `virus`, `other`, `not-spam` (lowercased).
    pub feedback_type: String,
    pub user_agent: Option<String>,
    pub reporting_mta: Option<String>,
    pub source_ip: Option<String>,
    pub arrival_date: Option<String>,
    /// Original-Mail-From: often the VERP return path.
    pub original_mail_from: Option<String>,
    /// Original-Rcpt-To (bare); many loops redact it.
    pub original_rcpt_to: Option<String>,
    pub original: OriginalRef,
}

/// What the copy (or headers) of the original message says about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginalRef {
    /// `Return-Path:` (bare), added by the receiving system: the VERP address.
    pub return_path: Option<String>,
    /// `X-Mailroom-Id:`, added by ingest.
    pub mailroom_id: Option<String>,
    /// The id in a Mailroom `Received:` header (`by … (Mailroom) with … id <id>`).
    pub received_id: Option<String>,
    pub message_id: Option<String>,
    /// Bare addresses of `To:`, for a redacted report's best guess.
    pub to: Vec<String>,
}
