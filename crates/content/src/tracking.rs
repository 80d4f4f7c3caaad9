//! Rewriting a whole message for open and click tracking: every HTML leaf part (not
//! attachments) is decoded from its transfer encoding, rewritten by `html::rewrite`, and
//! re-encoded with the same encoding; the new bytes replace exactly that part's body,
//! so the multipart structure, boundaries, other parts and headers stay byte-identical.
//! Plain-text parts are never touched. Also the small header edits tracking needs
//! (removing the opt-out header, adding `List-Unsubscribe`).

use crate::html::{self, is_web_url};
use crate::mime::{self, Leaf};
use crate::token::{Key, Kind, MAX_URL, Token};

/// What to do to one message.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    pub key: &'a Key,
    /// Scheme, host and optional port (no trailing slash) of the tracking endpoints.
    pub base_url: &'a str,
    pub message_id: &'a str,
    /// Recipient index, only when the message has one recipient.
    pub recipient: Option<u16>,
    pub opens: bool,
    pub clicks: bool,
}

impl Plan<'_> {
    fn url(&self, kind: Kind, target: Option<&str>) -> Option<String> {
        let token = Token {
            kind,
            message_id: self.message_id.to_string(),
            recipient: self.recipient,
            url: target.map(str::to_string),
        }
        .sign(self.key)?;
        Some(format!("{}/t/{}/{}", self.base_url, kind.segment(), token))
    }

    /// The one-click unsubscribe URL (RFC 8058).
    pub fn unsubscribe_url(&self) -> Option<String> {
        self.url(Kind::Unsubscribe, None)
    }

    /// Whether `url` is one of our tracking links; returns its target if it is a click.
    pub fn unwrap_click(&self, url: &str) -> Option<String> {
        let prefix = format!("{}/t/c/", self.base_url);
        let token = url.strip_prefix(&prefix)?;
        Token::verify(self.key, Kind::Click, token)?.url
    }
}

/// The outcome of `rewrite_message`.
#[derive(Debug, Default)]
pub struct Rewritten {
    pub body: Vec<u8>,
    /// Links replaced by tracking URLs.
    pub links: usize,
    /// HTML parts that carry the open pixel.
    pub pixels: usize,
    /// HTML parts left as they were (too large, unknown charset, unrewritable).
    pub skipped: usize,
}

/// Longest line SMTP allows (without CRLF); a 7bit/8bit part whose rewrite would make a
/// longer line is left untracked rather than broken.
const MAX_LINE: usize = 998;

pub fn rewrite_message(message: &[u8], plan: &Plan<'_>) -> Rewritten {
    let mut result = Rewritten::default();
    let html_leaves: Vec<Leaf> = mime::leaves(message)
        .into_iter()
        .filter(Leaf::is_html)
        .collect();
    let mut body = message.to_vec();
    // Back to front, so earlier byte ranges stay valid after each splice.
    for leaf in html_leaves.iter().rev() {
        match rewrite_leaf(message, leaf, plan) {
            Some((bytes, links, pixel)) => {
                body.splice(leaf.body.clone(), bytes);
                result.links += links;
                result.pixels += usize::from(pixel);
            }
            None => result.skipped += 1,
        }
    }
    result.body = body;
    result
}

fn rewrite_leaf(message: &[u8], leaf: &Leaf, plan: &Plan<'_>) -> Option<(Vec<u8>, usize, bool)> {
    let decoded = leaf.decode(message);
    let count = std::cell::Cell::new(0usize);
    let track = |target: &str| {
        if !plan.clicks || target.len() > MAX_URL || !is_web_url(target) {
            return None;
        }
        let url = plan.url(Kind::Click, Some(target))?;
        count.set(count.get() + 1);
        Some(url)
    };
    let pixel = if plan.opens {
        plan.url(Kind::Open, None).map(|u| {
            format!(
                "<img src=\"{u}\" width=\"1\" height=\"1\" alt=\"\" style=\"border:0;width:1px;height:1px\">"
            )
        })
    } else {
        None
    };
    let html = html::rewrite(&decoded, leaf.charset.as_deref(), &track, pixel.as_deref()).ok()?;
    let raw = &message[leaf.body.clone()];
    let mut encoded = match leaf.encoding.as_str() {
        "base64" => mime::encode_base64(&html),
        "quoted-printable" => mime::encode_qp(&html),
        _ => {
            if html.split(|b| *b == b'\n').any(|l| l.len() > MAX_LINE + 1) {
                return None;
            }
            html
        }
    };
    if !raw.ends_with(b"\n") && encoded.ends_with(b"\r\n") {
        encoded.truncate(encoded.len() - 2);
    }
    Some((encoded, count.get(), pixel.is_some()))
}

/// Removes every header field called `name` (case-insensitive) from the message's
/// header section; returns the message and the removed values (unfolded).
pub fn take_header(message: &[u8], name: &str) -> (Vec<u8>, Vec<String>) {
    let (section, body_at) = mime::split_entity(message);
    let mut kept = Vec::with_capacity(message.len());
    let mut values = Vec::new();
    let mut dropping = false;
    let lines = section.split_inclusive(|b| *b == b'\n').peekable();
    for line in lines {
        let continuation = line.starts_with(b" ") || line.starts_with(b"\t");
        if !continuation {
            let field = line.iter().position(|b| *b == b':').map(|p| &line[..p]);
            dropping = field.is_some_and(|f| f.trim_ascii().eq_ignore_ascii_case(name.as_bytes()));
            if dropping {
                values.push(
                    String::from_utf8_lossy(
                        &line[line.iter().position(|b| *b == b':').unwrap_or(0) + 1..],
                    )
                    .trim()
                    .to_string(),
                );
            }
        } else if dropping && let Some(v) = values.last_mut() {
            v.push(' ');
            v.push_str(String::from_utf8_lossy(line).trim());
        }
        if !dropping {
            kept.extend_from_slice(line);
        }
    }
    kept.extend_from_slice(&message[section.len()..body_at.max(section.len())]);
    kept.extend_from_slice(&message[body_at.min(message.len())..]);
    (kept, values)
}

#[cfg(test)]
mod tests;
