//! Unit tests of `compose`: field validation and the composed message.

use super::*;

fn req(json: serde_json::Value) -> SendRequest {
    serde_json::from_value(json).expect("request")
}

fn field_of(r: Result<Composed, ApiError>) -> String {
    r.expect_err("should fail").field.unwrap_or_default()
}

#[test]
fn structured_message_has_headers_parts_and_envelope() {
    let r = req(serde_json::json!({
        "from": {"address": "app@acme.test", "name": "Acme Ä"},
        "to": ["a@example.net", "b@example.net"],
        "cc": "c@example.net",
        "bcc": ["hidden@example.net", "a@example.net"],
        "subject": "Hello — world",
        "text": "plain\nbody",
        "html": "<p>hi</p>",
        "headers": {"X-Campaign": "spring"},
        "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content": "aGVsbG8="}],
        "tags": ["welcome"],
        "metadata": {"user": 42}
    }));
    let c = compose(&r, 50, "id1@mailroom.test").expect("compose");
    let text = String::from_utf8_lossy(&c.body);
    assert_eq!(c.mail_from.to_string(), "app@acme.test");
    let rcpts: Vec<String> = c.recipients.iter().map(|(a, _)| a.to_string()).collect();
    assert_eq!(
        rcpts,
        [
            "a@example.net",
            "b@example.net",
            "c@example.net",
            "hidden@example.net"
        ]
    );
    assert!(text.contains("X-Campaign: spring\r\n"), "{text}");
    assert!(text.contains("Message-ID: <id1@mailroom.test>"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("hidden@"),
        "Bcc leaked: {text}"
    );
    assert!(text.contains("multipart/mixed"), "{text}");
    assert!(text.contains("a.txt"));
    assert!(!text.contains("\n\n") && !text.replace("\r\n", "").contains('\n'));
    assert_eq!(c.meta.unwrap()["tags"][0], "welcome");
}

#[test]
fn each_bad_field_is_named() {
    let base = serde_json::json!({"from": "a@acme.test", "to": ["x@example.net"], "subject": "s", "text": "t"});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        req(b)
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        req(b)
    };
    assert_eq!(field_of(compose(&without("from"), 50, "m")), "from");
    assert_eq!(
        field_of(compose(&with("from", "nope".into()), 50, "m")),
        "from"
    );
    assert_eq!(
        field_of(compose(
            &with("to", serde_json::json!(["ok@x.test", "bad"])),
            50,
            "m"
        )),
        "to[1]"
    );
    assert_eq!(
        field_of(compose(
            &with("cc", serde_json::json!({"address": "x"})),
            50,
            "m"
        )),
        "cc.address"
    );
    assert_eq!(field_of(compose(&without("subject"), 50, "m")), "subject");
    assert_eq!(
        field_of(compose(&with("subject", "a\r\nBcc: x@y".into()), 50, "m")),
        "subject"
    );
    assert_eq!(field_of(compose(&without("text"), 50, "m")), "text");
    assert_eq!(
        field_of(compose(
            &with("headers", serde_json::json!({"X-A": "v\r\nBcc: e@x"})),
            50,
            "m"
        )),
        "headers.X-A"
    );
    assert_eq!(
        field_of(compose(
            &with("headers", serde_json::json!({"DKIM-Signature": "v=1"})),
            50,
            "m"
        )),
        "headers.DKIM-Signature"
    );
    assert_eq!(
        field_of(compose(
            &with("headers", serde_json::json!({"Received": "x"})),
            50,
            "m"
        )),
        "headers.Received"
    );
    assert_eq!(
        field_of(compose(
            &with(
                "attachments",
                serde_json::json!([{"filename": "a", "content": "!!"}])
            ),
            50,
            "m"
        )),
        "attachments[0].content"
    );
    assert_eq!(
        field_of(compose(
            &with(
                "attachments",
                serde_json::json!([{"filename": "a", "content": "", "content_type": "pdf"}])
            ),
            50,
            "m"
        )),
        "attachments[0].content_type"
    );
    assert_eq!(
        field_of(compose(
            &with("tags", serde_json::json!(["ok", "no spaces"])),
            50,
            "m"
        )),
        "tags[1]"
    );
    let many: Vec<String> = (0..51).map(|i| format!("r{i}@example.net")).collect();
    assert_eq!(
        field_of(compose(&with("to", serde_json::json!(many)), 50, "m")),
        "to"
    );
    assert_eq!(
        field_of(compose(&with("raw", "aGk=".into()), 50, "m")),
        "from"
    );
}

#[test]
fn raw_needs_an_envelope_and_is_normalised() {
    let r = req(serde_json::json!({"raw": "RnJvbTogYUBhY21lLnRlc3QKU3ViamVjdDogeAoKYm9keQo="}));
    assert_eq!(field_of(compose(&r, 50, "m")), "envelope");
    let r = req(serde_json::json!({
        "raw": "RnJvbTogYUBhY21lLnRlc3QKU3ViamVjdDogeAoKYm9keQo=",
        "envelope": {"from": "a@acme.test", "to": ["x@example.net", "bad"]}
    }));
    assert_eq!(field_of(compose(&r, 50, "m")), "envelope.to[1]");
    let r = req(serde_json::json!({
        "raw": "RnJvbTogYUBhY21lLnRlc3QKU3ViamVjdDogeAoKYm9keQo=",
        "envelope": {"from": "a@acme.test", "to": ["x@example.net"]}
    }));
    let c = compose(&r, 50, "m").expect("raw");
    assert_eq!(c.body, b"From: a@acme.test\r\nSubject: x\r\n\r\nbody\r\n");
}

#[test]
fn crlf_normalisation() {
    assert_eq!(to_crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd");
}

/// Found by the `compose` fuzz target (a 30-minute run): a text/* attachment whose
/// content holds a NUL went out as 7bit with the NUL in it. Refused, naming the field;
/// the same bytes as application/octet-stream are base64-encoded and accepted.
#[test]
fn a_text_attachment_with_a_nul_is_refused_and_binary_is_encoded() {
    let with = |content_type: &str| {
        req(serde_json::json!({
            "from": "a@acme.test", "to": ["b@example.net"], "subject": "s", "text": "t",
            "attachments": [{"filename": "a.txt", "content": "AGVsbG8=", "content_type": content_type}]
        }))
    };
    for t in ["text/img1", "TEXT/plain"] {
        assert_eq!(
            field_of(compose(&with(t), 50, "m")),
            "attachments[0].content",
            "{t}"
        );
    }
    let c = compose(&with("application/octet-stream"), 50, "m").expect("binary attachment");
    assert!(!c.body.contains(&0), "NUL in the composed message");
    assert!(String::from_utf8_lossy(&c.body).contains("AGVsbG8="));
}
