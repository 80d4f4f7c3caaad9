//! HTML through lol_html (a streaming rewriter; never regular expressions over HTML):
//! rewriting `http(s)` links to tracking URLs and appending the open pixel, and
//! reading every link with its visible text for the content rules.
//!
//! The HTML is processed in the part's own charset (ASCII-compatible ones; others are
//! left untouched), so bytes that are not links are written back as they came.

use lol_html::html_content::ContentType;
use lol_html::{
    AsciiCompatibleEncoding, HtmlRewriter, MemorySettings, Settings, element, end, text,
};
use std::cell::RefCell;
use std::rc::Rc;

/// Largest HTML part that is rewritten or read; larger ones are left as they are.
pub const MAX_HTML: usize = 8 * 1024 * 1024;
/// Parser memory allowed for one part.
const MAX_PARSER_MEMORY: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("HTML part too large to process")]
    TooLarge,
    #[error("charset {0} is not ASCII-compatible")]
    Charset(String),
    #[error("HTML rewriting failed: {0}")]
    Rewrite(String),
}

/// A link as written in the HTML.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// The `href` with character references decoded.
    pub href: String,
    /// The visible text inside the element (whitespace collapsed), for link-text rules.
    pub text: String,
}

/// Whether `url` is an absolute http or https URL that may be tracked or redirected to:
/// no whitespace or control characters anywhere (so nothing can reach a header).
pub fn is_web_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        && !rest.is_empty()
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn encoding_for(charset: Option<&str>) -> Result<AsciiCompatibleEncoding, HtmlError> {
    let label = charset.unwrap_or("utf-8");
    encoding_rs::Encoding::for_label(label.as_bytes())
        .and_then(AsciiCompatibleEncoding::new)
        .ok_or_else(|| HtmlError::Charset(label.to_string()))
}

fn settings<'h>(enc: AsciiCompatibleEncoding) -> Settings<'h, 'static> {
    Settings::new()
        .with_encoding(enc)
        .with_adjust_charset_on_meta_tag(false)
        .with_memory_settings(
            MemorySettings::new().with_max_allowed_memory_usage(MAX_PARSER_MEMORY),
        )
}

/// Rewrites each `a[href]`/`area[href]` whose decoded target is an http(s) URL through
/// `track` (which returns the replacement URL, or `None` to leave the link), and appends
/// `pixel` (an `<img>` tag) at the end of `<body>`, or of the document without one.
pub fn rewrite(
    html: &[u8],
    charset: Option<&str>,
    track: &dyn Fn(&str) -> Option<String>,
    pixel: Option<&str>,
) -> Result<Vec<u8>, HtmlError> {
    if html.len() > MAX_HTML {
        return Err(HtmlError::TooLarge);
    }
    let enc = encoding_for(charset)?;
    let mut out = Vec::with_capacity(html.len() + 512);
    let pixel_done = Rc::new(RefCell::new(pixel.is_none()));
    let done_body = pixel_done.clone();
    let done_end = pixel_done.clone();
    let pixel_body = pixel.map(str::to_string);
    let pixel_end = pixel_body.clone();
    let link = move |el: &mut lol_html::html_content::Element| {
        if let Some(raw) = el.get_attribute("href") {
            let href = decode_entities(raw.trim());
            if is_web_url(&href)
                && let Some(new) = track(&href)
            {
                el.set_attribute("href", &new)?;
            }
        }
        Ok(())
    };
    let s = settings(enc)
        .append_element_content_handler(element!("a[href], area[href]", link))
        .append_element_content_handler(element!("body", move |el| {
            if let Some(p) = &pixel_body
                && !*done_body.borrow()
            {
                el.append(p, ContentType::Html);
                *done_body.borrow_mut() = true;
            }
            Ok(())
        }))
        .append_document_content_handler(end!(move |end| {
            if let Some(p) = &pixel_end
                && !*done_end.borrow()
            {
                end.append(p, ContentType::Html);
            }
            Ok(())
        }));
    let mut rw = HtmlRewriter::new(s, |c: &[u8]| out.extend_from_slice(c));
    rw.write(html)
        .map_err(|e| HtmlError::Rewrite(e.to_string()))?;
    rw.end().map_err(|e| HtmlError::Rewrite(e.to_string()))?;
    Ok(out)
}

/// Every `a[href]`/`area[href]` with its decoded target and visible text.
pub fn links(html: &[u8], charset: Option<&str>) -> Result<Vec<Link>, HtmlError> {
    if html.len() > MAX_HTML {
        return Err(HtmlError::TooLarge);
    }
    let enc = encoding_for(charset)?;
    let found: Rc<RefCell<Vec<Link>>> = Rc::default();
    let in_link = Rc::new(RefCell::new(false));
    let (f1, f2) = (found.clone(), found.clone());
    let (l1, l2) = (in_link.clone(), in_link.clone());
    let s = settings(enc)
        .append_element_content_handler(element!("a[href], area[href]", move |el| {
            let href = el.get_attribute("href").unwrap_or_default();
            f1.borrow_mut().push(Link {
                href: decode_entities(href.trim()),
                text: String::new(),
            });
            *l1.borrow_mut() = true;
            let l = l1.clone();
            if el.can_have_content() {
                el.on_end_tag(lol_html::end_tag!(move |_| {
                    *l.borrow_mut() = false;
                    Ok(())
                }))?;
            } else {
                *l1.borrow_mut() = false;
            }
            Ok(())
        }))
        .append_element_content_handler(text!("a *, a", move |t| {
            if *l2.borrow()
                && let Some(last) = f2.borrow_mut().last_mut()
                && last.text.len() < 1024
            {
                last.text.push_str(&decode_entities(t.as_str()));
            }
            Ok(())
        }));
    let mut rw = HtmlRewriter::new(s, |_: &[u8]| {});
    rw.write(html)
        .map_err(|e| HtmlError::Rewrite(e.to_string()))?;
    rw.end().map_err(|e| HtmlError::Rewrite(e.to_string()))?;
    let mut links = found.take();
    for l in &mut links {
        l.text = l.text.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    Ok(links)
}

/// Decodes numeric character references and the few named ones that occur in URLs
/// and link texts; anything else is kept as written.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest[1..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '#')
            .map(|e| e + 1)
            .unwrap_or(rest.len());
        let name = &rest[1..end];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => name.strip_prefix('#').and_then(|n| {
                let v = match n.strip_prefix(['x', 'X']) {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => n.parse().ok(),
                };
                v.and_then(char::from_u32)
            }),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                let skip = if rest[end..].starts_with(';') {
                    end + 1
                } else {
                    end
                };
                rest = &rest[skip..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(url: &str) -> Option<String> {
        Some(format!("https://t.example/c/{}", url.len()))
    }

    #[test]
    fn decodes_entities() {
        assert_eq!(
            decode_entities("a&amp;b&#38;c&#x26;d&bogus;e&"),
            "a&b&c&d&bogus;e&"
        );
        assert_eq!(decode_entities("&#99999999;"), "&#99999999;");
    }

    #[test]
    fn web_urls() {
        assert!(is_web_url("https://a.example/x"));
        assert!(is_web_url("HTTP://A.EXAMPLE"));
        assert!(!is_web_url("mailto:a@b.example"));
        assert!(!is_web_url("#top"));
        assert!(!is_web_url("/relative"));
        assert!(!is_web_url("javascript:alert(1)"));
        assert!(!is_web_url("https://a.example/\r\nSet-Cookie: x"));
        assert!(!is_web_url("https://"));
    }

    #[test]
    fn pixel_goes_to_document_end_without_body() {
        let out = rewrite(b"<p>hi</p>", None, &tracker, Some("<img src=\"x\">")).unwrap();
        assert_eq!(out, b"<p>hi</p><img src=\"x\">");
    }

    #[test]
    fn rewrites_latin1_without_touching_other_bytes() {
        let html = b"<p>caf\xe9</p><a href=\"http://a.example/\">x</a>";
        let out = rewrite(html, Some("iso-8859-1"), &tracker, None).unwrap();
        assert_eq!(
            out,
            b"<p>caf\xe9</p><a href=\"https://t.example/c/17\">x</a>".to_vec()
        );
    }

    #[test]
    fn link_texts() {
        let l = links(
            b"<a href=\"https://evil.example/?a=1&amp;b=2\"><b>www.bank.example</b></a> <a href=x>y</a>",
            None,
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].href, "https://evil.example/?a=1&b=2");
        assert_eq!(l[0].text, "www.bank.example");
        assert_eq!(l[1].text, "y");
    }
}
