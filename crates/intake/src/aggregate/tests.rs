//! Unit tests of the report parsers: Google-style zip and Microsoft-style gzip DMARC
//! reports, a TLS-RPT report, and what is refused (bombs, malformed XML/JSON, another
//! domain's report, a message with no report).

use super::*;
use flate2::{Compression, write::GzEncoder};
use std::io::Write;

const GOOGLE_XML: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>
    <report_id>1234567890123456789</report_id>
    <date_range><begin>1796428800</begin><end>1796515199</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>acme.test</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct>
  </policy_published>
  <record>
    <row>
      <source_ip>192.0.2.10</source_ip><count>7</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated>
    </row>
    <identifiers><header_from>acme.test</header_from></identifiers>
    <auth_results>
      <dkim><domain>acme.test</domain><result>pass</result><selector>mr202612e</selector></dkim>
      <spf><domain>bounces.acme.test</domain><result>pass</result></spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>203.0.113.66</source_ip><count>2</count>
      <policy_evaluated><disposition>none</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated>
    </row>
    <identifiers><header_from>acme.test</header_from></identifiers>
    <auth_results>
      <spf><domain>acme.test</domain><result>softfail</result></spf>
    </auth_results>
  </record>
</feedback>
"#;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zip_of(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(name, options).unwrap();
    w.write_all(bytes).unwrap();
    w.finish().unwrap().into_inner()
}

fn b64(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Google: the whole body is the zip.
fn single_part(ctype: &str, name: &str, payload: &[u8]) -> Vec<u8> {
    format!(
        "From: noreply-dmarc-support@google.com\r\nTo: dmarc@bounces.acme.test\r\n\
         Subject: Report domain: acme.test Submitter: google.com\r\nMIME-Version: 1.0\r\n\
         Content-Type: {ctype}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        b64(payload)
    )
    .into_bytes()
}

/// Microsoft: a text part and a gzip attachment.
fn multipart(ctype: &str, name: &str, payload: &[u8]) -> Vec<u8> {
    format!(
        "From: dmarcreport@microsoft.com\r\nTo: dmarc@bounces.acme.test\r\n\
         Subject: [Preview] Report Domain: acme.test Submitter: protection.outlook.com\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"MM\"\r\n\r\n\
         --MM\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is a DMARC aggregate report.\r\n\
         --MM\r\nContent-Type: {ctype}; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {}\r\n--MM--\r\n",
        b64(payload)
    )
    .into_bytes()
}

#[test]
fn google_zip_report_sums_per_source() {
    let raw = single_part(
        "application/zip",
        "google.com!acme.test!1796515200!1796601599.zip",
        &zip_of(
            "google.com!acme.test!1796515200!1796601599.xml",
            GOOGLE_XML.as_bytes(),
        ),
    );
    let r = parse_aggregate(&raw, "acme.test").unwrap();
    assert_eq!((r.kind, r.org.as_str()), (ReportKind::Dmarc, "google.com"));
    assert_eq!(r.report_id, "1234567890123456789");
    let rows: Vec<_> = r
        .dmarc
        .iter()
        .map(|x| {
            (
                x.day.as_str(),
                x.source_ip.as_str(),
                x.messages,
                x.spf_pass,
                x.spf_fail,
                x.dkim_pass,
                x.dkim_fail,
                x.dmarc_pass,
                x.dmarc_fail,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("2026-12-05", "192.0.2.10", 7, 7, 0, 7, 0, 7, 0),
            ("2026-12-05", "203.0.113.66", 2, 0, 2, 0, 2, 0, 2),
        ]
    );
}

#[test]
fn microsoft_gzip_attachment_is_found() {
    let xml = GOOGLE_XML.replace("google.com", "Outlook.com");
    let raw = multipart(
        "application/gzip",
        "protection.outlook.com!acme.test!1796515200!1796601600.xml.gz",
        &gzip(xml.as_bytes()),
    );
    let r = parse_aggregate(&raw, "acme.test").unwrap();
    assert_eq!(r.org, "Outlook.com");
    assert_eq!(r.dmarc.iter().map(|x| x.messages).sum::<i64>(), 9);
}

#[test]
fn tlsrpt_report_counts_by_result() {
    let json = r#"{
      "organization-name": "Google Inc.",
      "date-range": {"start-datetime": "2026-12-05T00:00:00Z", "end-datetime": "2026-12-05T23:59:59Z"},
      "contact-info": "smtp-tls-reporting@google.com",
      "report-id": "2026-12-05T00:00:00Z_acme.test",
      "policies": [{
        "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: enforce"],
                   "policy-domain": "acme.test", "mx-host": ["mx.acme.test"]},
        "summary": {"total-successful-session-count": 120, "total-failure-session-count": 5},
        "failure-details": [{"result-type": "certificate-expired", "sending-mta-ip": "198.51.100.1",
                             "receiving-mx-hostname": "mx.acme.test", "failed-session-count": 3}]
      }]
    }"#;
    let raw = multipart(
        "application/tlsrpt+gzip",
        "google.com!acme.test!1796515200!1796601599.json.gz",
        &gzip(json.as_bytes()),
    );
    let r = parse_aggregate(&raw, "acme.test").unwrap();
    assert_eq!(
        (r.kind, r.org.as_str()),
        (ReportKind::TlsRpt, "Google Inc.")
    );
    let rows: Vec<_> = r
        .tls
        .iter()
        .map(|t| {
            (
                t.day.as_str(),
                t.policy_type.as_str(),
                t.result_type.as_str(),
                t.count,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("2026-12-05", "sts", "certificate-expired", 3),
            ("2026-12-05", "sts", "success", 120),
            ("2026-12-05", "sts", "unspecified", 2),
        ]
    );
}

#[test]
fn bombs_are_refused_at_the_limit() {
    let zeros = vec![b' '; MAX_UNPACKED + 1024];
    let gz = gzip(&zeros);
    assert!(gz.len() < 100_000, "{}", gz.len());
    let raw = single_part("application/gzip", "bomb.xml.gz", &gz);
    assert_eq!(
        parse_aggregate(&raw, "acme.test"),
        Err(AggregateError::TooLarge)
    );
    let raw = single_part("application/zip", "bomb.zip", &zip_of("bomb.xml", &zeros));
    assert_eq!(
        parse_aggregate(&raw, "acme.test"),
        Err(AggregateError::TooLarge)
    );
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let broken = GOOGLE_XML.replace("</feedback>", "");
    let raw = single_part("application/gzip", "r.xml.gz", &gzip(broken.as_bytes()));
    assert!(
        matches!(
            parse_aggregate(&raw, "acme.test"),
            Err(AggregateError::MalformedDmarc(_))
        ),
        "{:?}",
        parse_aggregate(&raw, "acme.test")
    );
    let raw = single_part("application/zip", "r.zip", b"PK\x03\x04 not really a zip");
    assert_eq!(
        parse_aggregate(&raw, "acme.test"),
        Err(AggregateError::BadArchive("zip archive"))
    );
    let raw = single_part("application/gzip", "r.xml.gz", &gzip(GOOGLE_XML.as_bytes()));
    assert_eq!(
        parse_aggregate(&raw, "other.test"),
        Err(AggregateError::WrongDomain {
            found: "acme.test".into(),
            expected: "other.test".into()
        })
    );
    let plain = b"From: a@b.test\r\nTo: dmarc@bounces.acme.test\r\nSubject: hi\r\n\r\nhello\r\n";
    assert_eq!(
        parse_aggregate(plain, "acme.test"),
        Err(AggregateError::NoReport)
    );
    let bad_json = single_part(
        "application/tlsrpt+gzip",
        "r.json.gz",
        &gzip(b"{\"organization-name\": 3}"),
    );
    assert!(matches!(
        parse_aggregate(&bad_json, "acme.test"),
        Err(AggregateError::MalformedTlsRpt(_))
    ));
    // Every refusal reads as one printable line.
    for e in [
        parse_aggregate(&raw, "other.test"),
        parse_aggregate(&bad_json, "acme.test"),
    ] {
        let text = e.unwrap_err().to_string();
        assert!(
            text.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{text}"
        );
    }
}
