//! One test per content rule.

use super::*;
use crate::zip::tests::build as build_zip;

fn rules() -> RuleSet {
    RuleSet {
        blocked_domains: RuleSet::parse_blocklist(
            "# bad\nevil.example\n\nPhish.Example.  # trailing dot\n",
        ),
        blocked_extensions: RuleSet::default_extensions(),
    }
}

fn none(_: &str) -> Option<String> {
    None
}

fn with_attachment(name: &str, ctype: &str, data: &[u8]) -> Vec<u8> {
    let b64 = crate::mime::encode_base64(data);
    let mut m = format!(
        "From: a@shop.example\r\nSubject: files\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: {ctype}\r\n\
Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(&b64);
    m.extend_from_slice(b"--b--\r\n");
    m
}

fn attachment_findings(m: &[u8]) -> Vec<String> {
    inspect(m, &rules(), &none)
        .blocked("attachment")
        .iter()
        .map(|f| f.detail.clone())
        .collect()
}

#[test]
fn blocklist_file_parses() {
    let r = rules();
    assert!(r.blocked_domains.contains("evil.example"));
    assert!(r.blocked_domains.contains("phish.example"));
    assert_eq!(r.blocked_domains.len(), 2);
}

#[test]
fn url_blocklist_in_text_and_html_and_subdomains() {
    let r = rules();
    let text = b"From: a@shop.example\r\n\r\nGo to https://login.EVIL.example./x now\r\n";
    let i = inspect(text, &r, &none);
    assert_eq!(i.blocked("url_blocklist").len(), 1);
    let html = b"From: a@shop.example\r\nContent-Type: text/html\r\n\r\n<a href=\"https://user@a.phish.example:8443/p\">x</a>";
    assert_eq!(inspect(html, &r, &none).blocked("url_blocklist").len(), 1);
    let ok = b"From: a@shop.example\r\nContent-Type: text/html\r\n\r\n<a href=\"https://notevil.example/\">x</a> https://evil.example.org/";
    assert!(inspect(ok, &r, &none).blocked("url_blocklist").is_empty());
}

#[test]
fn url_blocklist_sees_through_tracking_links() {
    let html = b"From: a@shop.example\r\nContent-Type: text/html\r\n\r\n<a href=\"https://t.example/t/c/TOKEN\">x</a>";
    let unwrap =
        |u: &str| (u == "https://t.example/t/c/TOKEN").then(|| "https://evil.example/".to_string());
    assert_eq!(
        inspect(html, &rules(), &unwrap)
            .blocked("url_blocklist")
            .len(),
        1
    );
}

#[test]
fn attachment_by_extension() {
    let f = attachment_findings(&with_attachment(
        "invoice.PDF.exe",
        "application/pdf",
        b"%PDF",
    ));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains(".exe"));
    assert!(
        attachment_findings(&with_attachment(
            "report.pdf",
            "application/pdf",
            b"%PDF-1.7"
        ))
        .is_empty()
    );
    assert_eq!(
        attachment_findings(&with_attachment(
            "budget.xlsm",
            "application/octet-stream",
            b"x"
        ))
        .len(),
        1
    );
}

#[test]
fn attachment_by_declared_type() {
    let f = attachment_findings(&with_attachment(
        "run",
        "application/x-msdownload",
        b"hello",
    ));
    assert_eq!(f.len(), 1);
    assert!(f[0].contains("blocked type"));
}

#[test]
fn attachment_whose_declared_type_lies() {
    for (data, kind) in [
        (&b"MZ\x90\x00\x03"[..], "pe-executable"),
        (b"\x7fELF\x02\x01", "elf-executable"),
        (b"#!/bin/sh\ncurl x | sh\n", "script"),
    ] {
        let f = attachment_findings(&with_attachment("photo.png", "image/png", data));
        assert_eq!(f.len(), 1, "{kind}");
        assert!(f[0].contains(kind), "{f:?}");
    }
    let mut ole = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1".to_vec();
    ole.extend(std::iter::repeat_n(0u8, 64));
    ole.extend("_VBA_PROJECT".encode_utf16().flat_map(u16::to_le_bytes));
    let f = attachment_findings(&with_attachment("letter.doc", "application/msword", &ole));
    assert!(f[0].contains("ole2-macro-document"));
}

#[test]
fn attachment_inside_zip_and_nested_zip() {
    let inner = build_zip(&[("readme.txt", b"hi"), ("setup.exe", b"MZ")], true);
    let f = attachment_findings(&with_attachment("files.zip", "application/zip", &inner));
    assert!(f[0].contains("setup.exe"), "{f:?}");
    let disguised = build_zip(&[("notes.txt", b"\x7fELF\x02")], false);
    let outer = build_zip(&[("docs/inner.zip", &disguised)], true);
    let f = attachment_findings(&with_attachment("docs.zip", "application/zip", &outer));
    assert!(f[0].contains("inner.zip") && f[0].contains("elf"), "{f:?}");
    let docm = build_zip(
        &[
            ("[Content_Types].xml", b"<x/>"),
            ("word/vbaProject.bin", b"\0"),
        ],
        true,
    );
    let f = attachment_findings(&with_attachment(
        "letter.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        &docm,
    ));
    assert!(f[0].contains("ooxml-macro"), "{f:?}");
    let clean = build_zip(&[("a.txt", b"just text"), ("b.csv", b"1,2")], true);
    assert!(
        attachment_findings(&with_attachment("data.zip", "application/zip", &clean)).is_empty()
    );
}

#[test]
fn heuristic_display_name_spoof() {
    let m = b"From: \"paypal.com Support\" <help@evil-mailer.example>\r\n\r\nhello\r\n";
    let i = inspect(m, &rules(), &none);
    assert_eq!(i.heuristics().next().unwrap().rule, "display_name_spoof");
    assert_eq!(i.score, 5);
    let ok = b"From: \"Shop.example Team\" <news@mail.shop.example>\r\n\r\nhello\r\n";
    assert_eq!(inspect(ok, &rules(), &none).score, 0);
    let plain = b"From: Jane Doe <jane@shop.example>\r\n\r\nhello\r\n";
    assert_eq!(inspect(plain, &rules(), &none).score, 0);
}

#[test]
fn heuristic_link_text_mismatch() {
    let m = b"From: a@shop.example\r\nContent-Type: text/html\r\n\r\n<a href=\"https://collector.example/login\">https://www.bank.example/login</a>";
    let i = inspect(m, &rules(), &none);
    assert_eq!(
        i.heuristics().map(|f| f.rule).collect::<Vec<_>>(),
        ["link_text_mismatch"]
    );
    let ok = b"From: a@shop.example\r\nContent-Type: text/html\r\n\r\n<a href=\"https://www.bank.example/a\">bank.example</a> <a href=\"https://x.example/\">Click here</a>";
    assert_eq!(inspect(ok, &rules(), &none).score, 0);
}

#[test]
fn heuristic_ip_address_link_and_phrases() {
    let m = b"From: a@shop.example\r\nSubject: Urgent action required\r\n\r\nPlease verify your account at http://192.0.2.7/login\r\n";
    let i = inspect(m, &rules(), &none);
    let names: Vec<&str> = i.heuristics().map(|f| f.rule).collect();
    assert_eq!(
        names,
        ["ip_address_link", "suspicious_phrase", "suspicious_phrase"]
    );
    assert_eq!(i.score, 7);
}

#[test]
fn heuristics_read_folded_from_and_subject_below_trace_fields() {
    let m = b"Received: from client.example (client.example [192.0.2.1])\r\n\tby relay.example with ESMTPS id 01ABC; Mon, 7 Dec 2026 18:00:00 +0000\r\nReceived: from x\r\n by y\r\nfrom: \"paypal.com\r\n Support\" <help@evil-mailer.example>\r\nX-Subject-Note: verify your account\r\nSUBJECT: Notice:\r\n urgent action required\r\n\r\nhello\r\n";
    let i = inspect(m, &rules(), &none);
    let found: Vec<String> = i.heuristics().map(|f| f.detail.clone()).collect();
    assert_eq!(
        found,
        [
            "display name shows paypal.com, address is at evil-mailer.example",
            "contains \"urgent action required\"",
        ]
    );
}

#[test]
fn at_most_three_phrases_count_in_the_list_s_order() {
    let text = SUSPICIOUS_PHRASES
        .iter()
        .rev()
        .map(|p| p.to_uppercase())
        .collect::<Vec<_>>()
        .join(" / ");
    let m = format!("From: a@shop.example\r\nSubject: hi\r\n\r\n{text}\r\n");
    let i = inspect(m.as_bytes(), &rules(), &none);
    let found: Vec<String> = i.heuristics().map(|f| f.detail.clone()).collect();
    let expected: Vec<String> = SUSPICIOUS_PHRASES[..3]
        .iter()
        .map(|p| format!("contains \"{p}\""))
        .collect();
    assert_eq!(found, expected);
    assert_eq!(i.score, 6);
}
