//! A small MIME walker over the raw message bytes: it finds every leaf part (its byte
//! range in the message, type, charset, transfer encoding, file name) so that callers
//! can decode a part, or replace one part's bytes and leave every other byte exactly
//! as it was. Also the transfer-encoding codecs (base64, quoted-printable) both ways.
//!
//! It does not build a tree or decode headers beyond what the content rules need, and it
//! never fails: input it cannot make sense of is one opaque leaf. Depth and part count
//! are capped so hostile nesting costs bounded work.

use std::ops::Range;

/// Deepest multipart nesting followed; deeper parts are treated as opaque leaves.
const MAX_DEPTH: usize = 12;
/// Most leaf parts looked at in one message.
const MAX_PARTS: usize = 1000;

/// One leaf part of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Byte range of the part's body (after its header section) in the whole message.
    pub body: Range<usize>,
    /// Lowercased `type/subtype`; `text/plain` when absent (RFC 2045 default).
    pub content_type: String,
    /// Lowercased charset parameter, if any.
    pub charset: Option<String>,
    /// Lowercased `Content-Transfer-Encoding`; `7bit` when absent.
    pub encoding: String,
    /// File name from `Content-Disposition: ...; filename=` or `Content-Type: ...; name=`.
    pub filename: Option<String>,
    /// `Content-Disposition: attachment`.
    pub attachment: bool,
}

impl Leaf {
    pub fn is_html(&self) -> bool {
        self.content_type == "text/html" && !self.attachment
    }

    pub fn is_text(&self) -> bool {
        self.content_type == "text/plain" && !self.attachment
    }

    /// Not a body text: has a file name, is an attachment, or is not text at all.
    pub fn is_file(&self) -> bool {
        self.attachment || self.filename.is_some() || !self.content_type.starts_with("text/")
    }

    /// The part's body with its transfer encoding undone.
    pub fn decode(&self, message: &[u8]) -> Vec<u8> {
        let raw = message.get(self.body.clone()).unwrap_or_default();
        match self.encoding.as_str() {
            "base64" => decode_base64(raw),
            "quoted-printable" => decode_qp(raw),
            _ => raw.to_vec(),
        }
    }

    /// The decoded body as UTF-8 text (charset converted; unknown charsets as UTF-8).
    pub fn text(&self, message: &[u8]) -> String {
        let bytes = self.decode(message);
        let enc = self
            .charset
            .as_deref()
            .and_then(|c| encoding_rs::Encoding::for_label(c.as_bytes()))
            .unwrap_or(encoding_rs::UTF_8);
        enc.decode(&bytes).0.into_owned()
    }
}

/// Every leaf part of the message, in order. A message without MIME structure is one
/// `text/plain` leaf.
pub fn leaves(message: &[u8]) -> Vec<Leaf> {
    let mut out = Vec::new();
    walk(message, 0..message.len(), 0, &mut out);
    out
}

/// The header section of an entity and the offset where its body starts.
pub fn split_entity(data: &[u8]) -> (&[u8], usize) {
    if data.starts_with(b"\r\n") {
        return (&data[..0], 2);
    }
    if data.starts_with(b"\n") {
        return (&data[..0], 1);
    }
    if let Some(p) = find(data, b"\r\n\r\n") {
        return (&data[..p + 2], p + 4);
    }
    if let Some(p) = find(data, b"\n\n") {
        return (&data[..p + 1], p + 2);
    }
    (data, data.len())
}

/// Unfolded `(lowercased name, value)` pairs of a header section.
pub fn header_fields(section: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(section);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    fields
}

fn walk(message: &[u8], range: Range<usize>, depth: usize, out: &mut Vec<Leaf>) {
    if out.len() >= MAX_PARTS {
        return;
    }
    let data = &message[range.clone()];
    let (section, body_at) = split_entity(data);
    let fields = header_fields(section);
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let (ctype, cparams) = parse_value(get("content-type").unwrap_or("text/plain"));
    let (disposition, dparams) = parse_value(get("content-disposition").unwrap_or(""));
    let param = |params: &[(String, String)], name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = range.start + body_at.min(data.len())..range.end;
    if ctype.starts_with("multipart/")
        && depth < MAX_DEPTH
        && let Some(boundary) = param(&cparams, "boundary").filter(|b| !b.is_empty())
    {
        for part in split_multipart(message, body.clone(), boundary.as_bytes()) {
            walk(message, part, depth + 1, out);
        }
        return;
    }
    let encoding = get("content-transfer-encoding")
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "7bit".into());
    if ctype == "message/rfc822"
        && depth < MAX_DEPTH
        && !matches!(&*encoding, "base64" | "quoted-printable")
    {
        walk(message, body, depth + 1, out);
        return;
    }
    let filename = param(&dparams, "filename").or_else(|| param(&cparams, "name"));
    out.push(Leaf {
        body,
        content_type: if ctype.is_empty() {
            "text/plain".into()
        } else {
            ctype
        },
        charset: param(&cparams, "charset").map(|c| c.to_ascii_lowercase()),
        encoding,
        filename,
        attachment: disposition == "attachment",
    });
}

/// Byte ranges of the body parts between `--boundary` delimiter lines.
fn split_multipart(message: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let data = &message[body.clone()];
    let mut delimiters = Vec::new(); // (line start, line end incl. newline, closing)
    let mut pos = 0;
    while pos <= data.len() {
        let line_end = find(&data[pos..], b"\n")
            .map(|p| pos + p + 1)
            .unwrap_or(data.len());
        let line = &data[pos..line_end];
        if line.len() >= 2 + boundary.len()
            && line.starts_with(b"--")
            && line[2..].starts_with(boundary)
        {
            let rest = &line[2 + boundary.len()..];
            let closing = rest.starts_with(b"--");
            let rest = if closing { &rest[2..] } else { rest };
            if rest.iter().all(|b| b.is_ascii_whitespace()) {
                delimiters.push((pos, line_end, closing));
                if closing {
                    break;
                }
            }
        }
        if line_end == data.len() {
            break;
        }
        pos = line_end;
    }
    let mut parts = Vec::new();
    for pair in delimiters.windows(2) {
        let (_, start, closing) = pair[0];
        if closing {
            break;
        }
        let mut end = pair[1].0;
        // The CRLF before a delimiter belongs to the delimiter (RFC 2046).
        if end > start && data[end - 1] == b'\n' {
            end -= 1;
            if end > start && data[end - 1] == b'\r' {
                end -= 1;
            }
        }
        parts.push(body.start + start..body.start + end);
    }
    parts
}

/// `value; name=param; ...` → (lowercased value, [(lowercased name, param)]).
/// Handles quoted strings and the simple RFC 2231 form `name*=charset''text`.
pub fn parse_value(v: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in v.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ';' && !quoted {
            pieces.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    pieces.push(cur);
    let value = pieces[0].trim().to_ascii_lowercase();
    let mut params = Vec::new();
    for p in &pieces[1..] {
        let Some((name, val)) = p.split_once('=') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let val = val.trim().to_string();
        match name.strip_suffix('*') {
            Some(base) => {
                let text = val.splitn(3, '\'').nth(2).unwrap_or(&val);
                params.push((base.to_string(), percent_decode(text)));
            }
            None => params.push((name, val)),
        }
    }
    (value, params)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Base64, tolerant: characters outside the alphabet (line breaks) are skipped.
pub fn decode_base64(raw: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let clean: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    // A dangling sixth-bit group cannot be decoded; drop it rather than fail.
    let usable = clean.len() - if clean.len() % 4 == 1 { 1 } else { 0 };
    engine.decode(&clean[..usable]).unwrap_or_default()
}

/// Base64 in CRLF-terminated lines of 76 characters.
pub fn encode_base64(data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(text.len() + text.len() / 38 + 2);
    for line in text.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7); malformed escapes are kept literally.
pub fn decode_qp(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c == b'=' {
            // Soft line break: "=" then optional whitespace, then (CR)LF.
            let mut j = i + 1;
            while j < raw.len() && (raw[j] == b' ' || raw[j] == b'\t') {
                j += 1;
            }
            if j < raw.len() && raw[j] == b'\n' {
                i = j + 1;
                continue;
            }
            if j + 1 < raw.len() && raw[j] == b'\r' && raw[j + 1] == b'\n' {
                i = j + 2;
                continue;
            }
            if j == raw.len() {
                break;
            }
            if let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Quoted-printable with CRLF hard line breaks and soft breaks before 76 columns.
pub fn encode_qp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 20);
    let mut col = 0;
    let mut i = 0;
    while i < data.len() {
        let c = data[i];
        if c == b'\r' && data.get(i + 1) == Some(&b'\n') || c == b'\n' {
            out.extend_from_slice(b"\r\n");
            col = 0;
            i += if c == b'\r' { 2 } else { 1 };
            continue;
        }
        let at_line_end = matches!(data.get(i + 1), None | Some(b'\r') | Some(b'\n'));
        let literal =
            (c == b' ' || c == b'\t') && !at_line_end || (33..=126).contains(&c) && c != b'=';
        let width = if literal { 1 } else { 3 };
        if col + width > 75 {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if literal {
            out.push(c);
        } else {
            out.extend_from_slice(format!("={c:02X}").as_bytes());
        }
        col += width;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_nested_multipart() {
        let m = b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
preamble\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n\
--inner\r\nContent-Type: text/plain\r\n\r\nhello\r\n--inner\r\n\
Content-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
<p>hi=3D</p>\r\n--inner--\r\n\r\n--outer\r\n\
Content-Type: application/octet-stream; name=\"x.exe\"\r\n\
Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nTVqQAA==\r\n--outer--\r\nepilogue\r\n";
        let l = leaves(m);
        assert_eq!(l.len(), 3);
        assert_eq!(&m[l[0].body.clone()], b"hello");
        assert!(l[1].is_html());
        assert_eq!(l[1].decode(m), b"<p>hi=</p>");
        assert_eq!(l[2].filename.as_deref(), Some("résumé.pdf"));
        assert!(l[2].attachment);
        assert_eq!(l[2].decode(m), b"MZ\x90\x00");
    }

    #[test]
    fn plain_message_is_one_leaf() {
        let m = b"From: a@b.example\r\n\r\nbody\r\n";
        let l = leaves(m);
        assert_eq!(l.len(), 1);
        assert!(l[0].is_text());
        assert_eq!(&m[l[0].body.clone()], b"body\r\n");
    }

    /// Damaged and hostile structure: each has one defined result (no panic is not
    /// enough), and the work stays bounded by MAX_DEPTH and MAX_PARTS.
    #[test]
    fn hostile_input_has_a_defined_bounded_result() {
        // Empty: one empty text/plain leaf.
        let l = leaves(b"");
        assert_eq!(l.len(), 1);
        assert!(l[0].is_text());
        assert_eq!(l[0].body, 0..0);
        assert_eq!(l[0].decode(b""), b"");
        // An empty boundary is no boundary: the multipart is one opaque, empty leaf.
        let m = b"Content-Type: multipart/mixed; boundary=";
        let l = leaves(m);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].content_type, "multipart/mixed");
        assert_eq!(l[0].body, m.len()..m.len());
        // An opening delimiter and nothing after it: no complete part, no leaf.
        assert_eq!(
            leaves(b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x"),
            vec![]
        );
        // Opening then closing delimiter: one empty part, read as text/plain.
        let m = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x--";
        let l = leaves(m);
        assert_eq!(l.len(), 1);
        assert!(l[0].is_text());
        assert!(l[0].body.is_empty(), "{:?}", l[0].body);
        // Base64 that is all padding and one dangling character decodes to nothing.
        let m = b"Content-Transfer-Encoding: base64\r\n\r\n====A";
        let l = leaves(m);
        assert_eq!((l.len(), l[0].encoding.as_str()), (1, "base64"));
        assert_eq!(l[0].decode(m), b"");
        // Malformed quoted-printable escapes are kept literally; a trailing "=" is a
        // soft break at the end of input.
        assert_eq!(decode_qp(b"abc="), b"abc");
        assert_eq!(decode_qp(b"abc=4"), b"abc=4");
        assert_eq!(decode_qp(b"=ZZ=\r"), b"=ZZ=\r");

        // Nesting far deeper than MAX_DEPTH: the walk stops at the cap, and what lies
        // below it is one opaque leaf.
        let mut deep = String::from("Content-Type: text/plain\r\n\r\nbottom");
        for i in 0..500 {
            deep = format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n{deep}\r\n--b{i}--\r\n"
            );
        }
        let l = leaves(deep.as_bytes());
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(l[0].content_type, "multipart/mixed");
        // Far more parts than MAX_PARTS: exactly MAX_PARTS leaves are looked at.
        let mut many = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n".to_vec();
        for i in 0..MAX_PARTS * 3 {
            many.extend_from_slice(format!("--p\r\n\r\npart {i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"--p--\r\n");
        let l = leaves(&many);
        assert_eq!(l.len(), MAX_PARTS);
        assert_eq!(&many[l[0].body.clone()], b"part 0");
        assert_eq!(
            l[MAX_PARTS - 1].text(&many),
            format!("part {}", MAX_PARTS - 1)
        );
    }

    #[test]
    fn qp_round_trips() {
        let text = "caf\u{e9} = cost \t\r\nline two with trailing space \r\n".repeat(5);
        let enc = encode_qp(text.as_bytes());
        assert!(enc.split(|b| *b == b'\n').all(|l| l.len() <= 77));
        assert_eq!(decode_qp(&enc), text.as_bytes());
        let long = "x".repeat(300);
        assert_eq!(decode_qp(&encode_qp(long.as_bytes())), long.as_bytes());
    }

    #[test]
    fn base64_round_trips() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        assert_eq!(decode_base64(&encode_base64(&data)), data);
    }
}
