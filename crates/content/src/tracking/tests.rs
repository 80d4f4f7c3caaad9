//! Rewrite vectors on real-world-shaped messages.

use super::*;
use crate::mime;

const ID: &str = "01JZ0000000000000000000000";

fn plan(key: &Key) -> Plan<'_> {
    Plan {
        key,
        base_url: "https://t.mailroom.example",
        message_id: ID,
        recipient: Some(0),
        opens: true,
        clicks: true,
    }
}

const NEWSLETTER: &str = r##"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>News &amp; offers</title></head>
<body style="margin:0">
<table width="100%" cellpadding="0"><tr><td>
  <table class="inner"><tr><td><a href="https://shop.example/item?id=7&amp;ref=mail">Caf&eacute; &mdash; 20% off</a></td></tr>
  <tr><td><img src="https://cdn.example/logo.png" alt="Logo"></td></tr>
  <tr><td><a href="mailto:help@shop.example">Write to us</a> | <a href="#top">Top</a> | <a href="/relative/path">Relative</a></td></tr>
  <tr><td><a HREF='http://Shop.Example/Deals'>Deals</a></td></tr></table>
</td></tr></table>
</body></html>"##;

fn html_message(cte: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "From: News <news@shop.example>\r\nTo: a@b.example\r\nSubject: Hi\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nSee https://shop.example/plain and mailto:x@y.example\r\n--alt\r\n\
Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(body);
    m.extend_from_slice(
        b"\r\n--alt--\r\n\r\n--mix\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
JVBERi0xLjcK\r\n--mix--\r\n",
    );
    m
}

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

fn check(out: &[u8], original: &[u8], key: &Key) {
    let before = mime::leaves(original);
    let after = mime::leaves(out);
    assert_eq!(before.len(), after.len(), "structure survives");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.content_type, a.content_type);
        assert_eq!(b.encoding, a.encoding);
        if !b.is_html() {
            assert_eq!(
                original[b.body.clone()],
                out[a.body.clone()],
                "other parts untouched"
            );
        }
    }
    let html_leaf = after.iter().find(|l| l.is_html()).unwrap();
    let html = String::from_utf8(html_leaf.decode(out)).unwrap();
    let links = crate::html::links(html.as_bytes(), None).unwrap();
    let hrefs: Vec<&str> = links.iter().map(|l| l.href.as_str()).collect();
    // http(s) links are tracked; mailto, anchors and relative links are not.
    assert!(hrefs[0].starts_with("https://t.mailroom.example/t/c/"));
    assert_eq!(hrefs[1], "mailto:help@shop.example");
    assert_eq!(hrefs[2], "#top");
    assert_eq!(hrefs[3], "/relative/path");
    assert!(hrefs[4].starts_with("https://t.mailroom.example/t/c/"));
    let p = plan(key);
    // The target is the decoded URL (entities resolved).
    assert_eq!(
        p.unwrap_click(hrefs[0]).as_deref(),
        Some("https://shop.example/item?id=7&ref=mail")
    );
    assert_eq!(
        p.unwrap_click(hrefs[4]).as_deref(),
        Some("http://Shop.Example/Deals")
    );
    // Existing images and entities in text are kept; one pixel before </body>.
    assert!(html.contains(r#"<img src="https://cdn.example/logo.png" alt="Logo">"#));
    assert!(html.contains("Caf&eacute; &mdash; 20% off"));
    assert_eq!(html.matches("/t/o/").count(), 1);
    let pixel_at = html.find("/t/o/").unwrap();
    assert!(pixel_at < html.find("</body>").unwrap());
    // Plain text keeps its URL.
    let text = after.iter().find(|l| l.is_text()).unwrap();
    assert!(
        String::from_utf8_lossy(&out[text.body.clone()]).contains("https://shop.example/plain")
    );
}

#[test]
fn rewrites_7bit_html_in_alternative_in_mixed() {
    let key = Key::new(b"k");
    let m = html_message("7bit", crlf(NEWSLETTER).as_bytes());
    let r = rewrite_message(&m, &plan(&key));
    assert_eq!((r.links, r.pixels, r.skipped), (2, 1, 0));
    check(&r.body, &m, &key);
}

#[test]
fn rewrites_quoted_printable_html() {
    let key = Key::new(b"k");
    let qp = mime::encode_qp(crlf(NEWSLETTER).as_bytes());
    let m = html_message("quoted-printable", &qp);
    let r = rewrite_message(&m, &plan(&key));
    assert_eq!(r.links, 2);
    check(&r.body, &m, &key);
    let html = mime::leaves(&r.body)
        .into_iter()
        .find(|l| l.is_html())
        .unwrap();
    assert!(
        r.body[html.body.clone()]
            .split(|b| *b == b'\n')
            .all(|l| l.len() <= 77)
    );
}

#[test]
fn rewrites_base64_html() {
    let key = Key::new(b"k");
    let b64 = mime::encode_base64(crlf(NEWSLETTER).as_bytes());
    let m = html_message("base64", &b64[..b64.len() - 2]);
    let r = rewrite_message(&m, &plan(&key));
    assert_eq!(r.links, 2);
    check(&r.body, &m, &key);
}

#[test]
fn opt_outs_leave_the_part_alone() {
    let key = Key::new(b"k");
    let m = html_message("7bit", crlf(NEWSLETTER).as_bytes());
    let p = Plan {
        opens: false,
        clicks: false,
        ..plan(&key)
    };
    assert_eq!(rewrite_message(&m, &p).body, m);
    let p = Plan {
        opens: false,
        ..plan(&key)
    };
    let r = rewrite_message(&m, &p);
    assert_eq!((r.links, r.pixels), (2, 0));
}

#[test]
fn plain_text_only_message_is_unchanged() {
    let key = Key::new(b"k");
    let m = b"From: a@b.example\r\nSubject: x\r\n\r\nVisit https://a.example/\r\n".to_vec();
    assert_eq!(rewrite_message(&m, &plan(&key)).body, m);
}

#[test]
fn single_part_html_message() {
    let key = Key::new(b"k");
    let m = b"From: a@b.example\r\nContent-Type: text/html\r\n\r\n<p><a href=\"https://a.example/\">x</a></p>\r\n".to_vec();
    let r = rewrite_message(&m, &plan(&key));
    assert_eq!((r.links, r.pixels), (1, 1));
    assert!(r.body.ends_with(b"height:1px\">"));
    assert!(r.body.starts_with(b"From: a@b.example\r\nContent-Type: text/html\r\n\r\n<p><a href=\"https://t.mailroom.example/t/c/"));
}

#[test]
fn takes_headers_out() {
    let m = b"From: a@b.example\r\nX-Mailroom-Track: none\r\nX-Mailroom-track: opens,\r\n clicks\r\nSubject: s\r\n\r\nX-Mailroom-Track: body\r\n";
    let (out, values) = take_header(m, "x-mailroom-track");
    assert_eq!(
        values,
        vec!["none".to_string(), "opens, clicks".to_string()]
    );
    assert_eq!(
        out,
        b"From: a@b.example\r\nSubject: s\r\n\r\nX-Mailroom-Track: body\r\n"
    );
}
