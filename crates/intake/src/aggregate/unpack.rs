//! Finding the report in a received message and unpacking it: the first part that is
//! a zip, gzip, XML or JSON document (by content type, file name or magic bytes), its
//! transfer encoding undone by mail-parser, then decompressed by the `zip` crate or
//! flate2 with a hard limit on the bytes produced — a zip bomb stops at the limit.

use super::AggregateError;
use flate2::read::GzDecoder;
use mail_parser::{MessageParser, MessagePart, PartKind};
use std::io::{Cursor, Read};

/// Most bytes a report may unpack to (XML or JSON).
pub const MAX_UNPACKED: usize = 16 * 1024 * 1024;
/// Entries looked at in a zip archive.
const MAX_ENTRIES: usize = 16;

const GZIP_MAGIC: &[u8] = b"\x1f\x8b";
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// The report document (XML or JSON bytes) carried by the message `raw`.
pub fn unpack(raw: &[u8]) -> Result<Vec<u8>, AggregateError> {
    if raw.len() > crate::MAX_INPUT {
        return Err(AggregateError::TooLarge);
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(AggregateError::NotAMessage)?;
    let root = message.root();
    let part = root
        .parts()
        .find(|p| is_report_part(p))
        .ok_or(AggregateError::NoReport)?;
    let body = part.decoded();
    decompress(&body)
}

fn is_report_part(part: &MessagePart<'_>) -> bool {
    if matches!(part.kind(), PartKind::Multipart | PartKind::Message(_)) {
        return false;
    }
    let name = part.attachment_name().unwrap_or("").to_ascii_lowercase();
    let by_name = [".zip", ".gz", ".gzip", ".xml", ".json"]
        .iter()
        .any(|ext| name.ends_with(ext));
    let by_type = part.content_type().is_some_and(|ct| {
        let t = ct.ctype().to_ascii_lowercase();
        let s = ct.subtype().unwrap_or("").to_ascii_lowercase();
        matches!(
            (t.as_str(), s.as_str()),
            (
                "application",
                "zip" | "x-zip-compressed" | "gzip" | "x-gzip" | "xml"
            ) | ("application", "tlsrpt+gzip" | "tlsrpt+json" | "json")
                | ("text", "xml")
        )
    });
    // A body that is itself an archive (some reporters send no type worth reading).
    let by_magic = !matches!(part.kind(), PartKind::Text | PartKind::Html) && {
        let d = part.decoded();
        d.starts_with(GZIP_MAGIC) || d.starts_with(ZIP_MAGIC)
    };
    by_name || by_type || by_magic
}

/// Undoes gzip or zip (by magic bytes); anything else is taken as the document.
fn decompress(body: &[u8]) -> Result<Vec<u8>, AggregateError> {
    if body.starts_with(GZIP_MAGIC) {
        read_limited(GzDecoder::new(body))
            .map_err(|e| e.unwrap_or(AggregateError::BadArchive("gzip file")))
    } else if body.starts_with(ZIP_MAGIC) {
        unzip(body)
    } else if body.len() > MAX_UNPACKED {
        Err(AggregateError::TooLarge)
    } else {
        Ok(body.to_vec())
    }
}

/// The first XML or JSON entry (else the first file) of a zip archive.
fn unzip(body: &[u8]) -> Result<Vec<u8>, AggregateError> {
    let bad = || AggregateError::BadArchive("zip archive");
    let mut archive = zip::ZipArchive::new(Cursor::new(body)).map_err(|_| bad())?;
    let count = archive.len().min(MAX_ENTRIES);
    let mut chosen = None;
    for i in 0..count {
        let Some(Ok(name)) = archive.name_for_index(i) else {
            return Err(bad());
        };
        let name = name.to_ascii_lowercase();
        if name.ends_with('/') {
            continue;
        }
        if name.ends_with(".xml") || name.ends_with(".json") {
            chosen = Some(i);
            break;
        }
        chosen.get_or_insert(i);
    }
    let index = chosen.ok_or_else(bad)?;
    let entry = archive.by_index(index).map_err(|_| bad())?;
    if entry.size() > MAX_UNPACKED as u64 {
        return Err(AggregateError::TooLarge);
    }
    read_limited(entry).map_err(|e| e.unwrap_or_else(bad))
}

/// Reads at most `MAX_UNPACKED` bytes; one more is `TooLarge`. A read error is
/// `Err(None)` (the caller names the archive kind).
fn read_limited(reader: impl Read) -> Result<Vec<u8>, Option<AggregateError>> {
    let mut out = Vec::new();
    reader
        .take(MAX_UNPACKED as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| None)?;
    if out.len() > MAX_UNPACKED {
        return Err(Some(AggregateError::TooLarge));
    }
    Ok(out)
}
