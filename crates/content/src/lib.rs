//! Outbound content: the open/click tracking rewrite (lol_html over each HTML part,
//! signed tokens), the content rule engine (URL blocklist, attachments by name, type,
//! magic bytes and inside zip archives, scored heuristics) and a clamd INSTREAM client.
//!
//! Everything here except `clamd` is pure: bytes in, bytes or findings out. Ingest
//! decides when to run it and what a finding means for the submission; the API serves
//! the tracking endpoints with `token`.

pub mod clamd;
pub mod html;
pub mod machine;
pub mod mime;
pub mod rules;
pub mod sniff;
pub mod token;
pub mod tracking;
pub mod zip;

pub use rules::{Finding, Inspection, RuleSet};
pub use token::{Key, Kind, Token};
