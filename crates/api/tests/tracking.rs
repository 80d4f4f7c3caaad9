//! Tracking and content protection through the API: a tracked message's click and open
//! links produce events (a tampered token gets 404), one-click unsubscribe suppresses,
//! per-message opt-out, and one test per content verdict (reject, quarantine → release
//! or delete).

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, OPERATOR};
use mailroom_content::mime;
use mailroom_content::{Key, RuleSet};
use mailroom_ingest::{Actions, ContentConfig, TrackingConfig};
use mailroom_model::MessageId;
use mailroom_store::prelude::*;
use serde_json::{Value, json};

const BASE: &str = "https://t.mailroom.test";

async fn api() -> Api {
    let key = Key::new(b"tracking test secret");
    let content = ContentConfig {
        tracking: Some(TrackingConfig {
            key: key.clone(),
            base_url: BASE.into(),
        }),
        rules: RuleSet {
            blocked_domains: RuleSet::parse_blocklist("evil.example\n"),
            blocked_extensions: RuleSet::default_extensions(),
        },
        actions: Actions::default(),
        score_threshold: 5,
        clamd: None,
        clamd_fail_open: false,
    };
    Api::with_content(content, key).await
}

async fn tracked_tenant(api: &Api) -> (String, String) {
    let (id, key) = api.tenant("acme", "acme.example").await;
    let r = api
        .patch(
            &format!("/v1/tenants/{id}"),
            &key,
            json!({ "track_opens": true, "track_clicks": true, "list_unsubscribe": true }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["track_clicks"], true);
    (id, key)
}

async fn send(api: &Api, key: &str, extra: Value) -> common::Response {
    let mut body = json!({
        "from": "news@acme.example",
        "to": ["reader@example.net"],
        "subject": "Spring offers",
        "text": "Offers at https://shop.example/spring",
        "html": "<table><tr><td><a href=\"https://shop.example/spring?a=1&amp;b=2\">Spring</a> \
                 <a href=\"mailto:help@acme.example\">Help</a></td></tr></table>",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    api.post("/v1/messages", key, body).await
}

async fn stored_body(api: &Api, id: &str) -> Vec<u8> {
    api.store
        .load_body(&MessageId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap()
}

fn html_links(body: &[u8]) -> Vec<String> {
    let leaf = mime::leaves(body)
        .into_iter()
        .find(|l| l.is_html())
        .unwrap();
    let html = leaf.decode(body);
    let mut out: Vec<String> = mailroom_content::html::links(&html, None)
        .unwrap()
        .into_iter()
        .map(|l| l.href)
        .collect();
    // The pixel is an <img>, found by its path.
    let text = String::from_utf8_lossy(&html);
    if let Some(at) = text.find("/t/o/") {
        let end = text[at..].find('"').unwrap() + at;
        out.push(format!("{BASE}{}", &text[at..end]));
    }
    out
}

async fn events(api: &Api, key: &str, id: &str, kind: &str) -> Vec<Value> {
    let r = api
        .get(&format!("/v1/events?message_id={id}&type={kind}"), key)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    r.json["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn clicks_and_opens_are_recorded_and_tampered_links_are_404() {
    let api = api().await;
    let (_, key) = tracked_tenant(&api).await;
    let r = send(&api, &key, json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let id = r.json["id"].as_str().unwrap().to_string();
    let body = stored_body(&api, &id).await;
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("X-Mailroom-Track"));
    assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    let links = html_links(&body);
    assert_eq!(links[1], "mailto:help@acme.example", "mailto untouched");
    let click = links[0].strip_prefix(BASE).unwrap().to_string();
    assert!(click.starts_with("/t/c/"));
    let open = links[2].strip_prefix(BASE).unwrap().to_string();
    assert!(open.starts_with("/t/o/"));

    let ua = [(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
    )];
    let r = api.call(Method::GET, &click, None, None, &ua).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(
        r.header("location"),
        Some("https://shop.example/spring?a=1&b=2")
    );
    let r = api
        .call(
            Method::GET,
            &open,
            None,
            None,
            &[("user-agent", "Mozilla/5.0")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("image/gif"));

    // Tampering with any part of the token, or using it on another endpoint: 404.
    let mut bad = click.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let r = api.call(Method::GET, &bad, None, None, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.header("location").is_none());
    let swapped = click.replacen("/t/c/", "/t/o/", 1);
    assert_eq!(
        api.call(Method::GET, &swapped, None, None, &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(Method::GET, "/t/c/AAAA", None, None, &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let clicked = events(&api, &key, &id, "clicked").await;
    assert_eq!(clicked.len(), 1, "the tampered click recorded nothing");
    assert_eq!(
        clicked[0]["detail"]["url"],
        "https://shop.example/spring?a=1&b=2"
    );
    assert_eq!(clicked[0]["recipient"], "reader@example.net");
    assert!(
        clicked[0]["detail"]["user_agent"]
            .as_str()
            .unwrap()
            .contains("Firefox")
    );
    assert_eq!(clicked[0]["detail"]["machine"], Value::Null);
    let opened = events(&api, &key, &id, "opened").await;
    assert_eq!(opened.len(), 1);
    assert_eq!(
        opened[0]["detail"]["machine"], "apple-privacy-proxy",
        "flagged, not dropped"
    );
}

#[tokio::test]
async fn one_click_unsubscribe_suppresses_the_recipient() {
    let api = api().await;
    let (_, key) = tracked_tenant(&api).await;
    let id = send(&api, &key, json!({})).await.json["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = String::from_utf8(stored_body(&api, &id).await).unwrap();
    let line = body
        .lines()
        .find(|l| l.starts_with("List-Unsubscribe: <"))
        .unwrap();
    let url = line
        .trim_start_matches("List-Unsubscribe: <")
        .trim_end_matches('>');
    let path = url.strip_prefix(BASE).unwrap();
    // GET only shows the form; nothing changes.
    let r = api.call(Method::GET, path, None, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        api.get("/v1/suppressions/reader@example.net", &key)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = api.call(Method::POST, path, None, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let s = api.get("/v1/suppressions/reader@example.net", &key).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.json);
    assert_eq!(s.json["reason"], "unsubscribe");
    let e = events(&api, &key, &id, "unsubscribed").await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["recipient"], "reader@example.net");
    // Another last character (a fixed "x" is the token's own 1 time in 64).
    let other = if path.ends_with('x') { 'y' } else { 'x' };
    let tampered = format!("{}{other}", &path[..path.len() - 1]);
    assert_eq!(
        api.call(Method::POST, &tampered, None, None, &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn per_message_opt_out_and_tenant_default_off() {
    let api = api().await;
    let (_, key) = tracked_tenant(&api).await;
    let r = send(
        &api,
        &key,
        json!({ "tracking": { "opens": false, "clicks": false } }),
    )
    .await;
    let body = stored_body(&api, r.json["id"].as_str().unwrap()).await;
    let links = html_links(&body);
    assert_eq!(links[0], "https://shop.example/spring?a=1&b=2");
    assert_eq!(links.len(), 2, "no pixel");
    assert!(!String::from_utf8_lossy(&body).contains("X-Mailroom-Track"));
    // Only clicks off: the pixel stays.
    let r = send(&api, &key, json!({ "tracking": { "clicks": false } })).await;
    let links = html_links(&stored_body(&api, r.json["id"].as_str().unwrap()).await);
    assert_eq!(links[0], "https://shop.example/spring?a=1&b=2");
    assert!(links[2].contains("/t/o/"));
    // A tenant that did not enable tracking gets nothing rewritten.
    let (_, other) = api.tenant("plain", "plain.example").await;
    let r = api
        .post(
            "/v1/messages",
            &other,
            json!({ "from": "a@plain.example", "to": ["b@example.net"], "subject": "s",
                    "html": "<a href=\"https://x.example/\">x</a>" }),
        )
        .await;
    let body = stored_body(&api, r.json["id"].as_str().unwrap()).await;
    assert_eq!(html_links(&body), vec!["https://x.example/".to_string()]);
    assert!(!String::from_utf8_lossy(&body).contains("List-Unsubscribe"));
}

#[tokio::test]
async fn blocklisted_link_is_rejected_with_the_rule() {
    let api = api().await;
    let (_, key) = tracked_tenant(&api).await;
    let r = send(
        &api,
        &key,
        json!({ "html": "<a href=\"https://login.evil.example/\">x</a>" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(r.json["rule"], "url_blocklist");
    // Also in plain text.
    let r = send(
        &api,
        &key,
        json!({ "text": "go to https://evil.example/x" }),
    )
    .await;
    assert_eq!(r.json["rule"], "url_blocklist");
}

#[tokio::test]
async fn executable_attachment_is_rejected() {
    let api = api().await;
    let (_, key) = tracked_tenant(&api).await;
    use base64::Engine;
    let exe = base64::engine::general_purpose::STANDARD.encode(b"MZ\x90\x00\x03\x00\x00\x00");
    let r = send(
        &api,
        &key,
        json!({ "attachments": [{ "filename": "cat.jpg", "content_type": "image/jpeg", "content": exe }] }),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(r.json["rule"], "attachment");
    assert!(r.json["detail"].as_str().unwrap().contains("pe-executable"));
}

#[tokio::test]
async fn heuristics_quarantine_then_release_or_delete() {
    let api = api().await;
    let (_, key) = tracked_tenant(&api).await;
    let phish = json!({
        "subject": "Urgent action required",
        "text": "Please verify your account today.",
        "html": "<p>Please verify your account: <a href=\"https://collector.example/\">https://www.bank.example/login</a></p>",
    });
    let r = send(&api, &key, phish.clone()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    assert_eq!(r.json["recipients"][0]["status"], "quarantined");
    let id = r.json["id"].as_str().unwrap().to_string();
    let q = api.get("/v1/quarantine", &key).await;
    assert_eq!(q.status, StatusCode::OK, "{}", q.json);
    assert_eq!(q.json["messages"][0]["id"], id.as_str());
    assert_eq!(q.json["messages"][0]["recipients"][0], "reader@example.net");
    assert_eq!(
        q.json["messages"][0]["filter"]["rules"][0]["rule"],
        "heuristics"
    );
    let m = api.get(&format!("/v1/messages/{id}"), &key).await;
    assert_eq!(m.json["recipients"][0]["state"], "quarantined");
    assert_eq!(events(&api, &key, &id, "filtered").await.len(), 1);
    // Another tenant cannot see or release it.
    let (_, other) = api.tenant("other", "other.example").await;
    assert_eq!(
        api.get("/v1/quarantine", &other).await.json["messages"],
        json!([])
    );
    let r = api
        .post(&format!("/v1/messages/{id}/release"), &other, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api
        .post(&format!("/v1/messages/{id}/release"), &key, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["released"], 1);
    let m = api.get(&format!("/v1/messages/{id}"), &key).await;
    assert_eq!(m.json["recipients"][0]["state"], "queued");
    assert_eq!(events(&api, &key, &id, "released").await.len(), 1);
    assert_eq!(
        api.get("/v1/quarantine", OPERATOR).await.json["messages"],
        json!([])
    );
    // A second one is deleted instead.
    let id2 = send(&api, &key, phish).await.json["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api.delete(&format!("/v1/messages/{id2}"), &key).await;
    assert_eq!(r.json["cancelled"], 1);
    let m = api.get(&format!("/v1/messages/{id2}"), &key).await;
    assert_eq!(m.json["recipients"][0]["state"], "cancelled");
}

#[tokio::test]
async fn content_threshold_is_operator_only() {
    let api = api().await;
    let (id, key) = tracked_tenant(&api).await;
    let r = api
        .patch(
            &format!("/v1/tenants/{id}"),
            &key,
            json!({ "content_score_threshold": 100 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .patch(
            &format!("/v1/tenants/{id}"),
            OPERATOR,
            json!({ "content_score_threshold": 100 }),
        )
        .await;
    assert_eq!(r.json["content_score_threshold"], 100);
}
