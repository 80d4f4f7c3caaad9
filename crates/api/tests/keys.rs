//! Named API keys through the API (in memory, real SQLite): create with a scope, list
//! with last use, revoke (401 on the very next request), rotate with an overlap that
//! ends by itself, tenant isolation, problem responses naming the field, and the
//! operator token's rotation.

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, OPERATOR};
use mailroom_model::ApiKeyId;
use mailroom_policy::secrets;
use mailroom_store::prelude::*;
use serde_json::{Value, json};
use std::time::Duration;

fn message() -> Value {
    json!({
        "from": "app@acme.test",
        "to": "someone@example.net",
        "subject": "hello",
        "text": "hi"
    })
}

async fn create(api: &Api, token: &str, name: &str, scope: &str) -> (String, String) {
    let r = api
        .post("/v1/keys", token, json!({ "name": name, "scope": scope }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    (
        r.json["id"].as_str().unwrap().to_string(),
        r.json["api_key"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn keys_are_created_listed_scoped_and_revoked_at_once() {
    let api = Api::new().await;
    let (tenant, default_key) = api.tenant("acme", "acme.test").await;

    // The key made with the tenant is a named key "default" with scope full.
    let r = api.get("/v1/keys", &default_key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let keys = r.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["name"], "default");
    assert_eq!(keys[0]["scope"], "full");
    assert_eq!(keys[0]["tenant_id"], tenant.as_str());

    let r = api
        .post(
            "/v1/keys",
            &default_key,
            json!({"name": "ci", "scope": "send"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let send_id = r.json["id"].as_str().unwrap().to_string();
    let send_key = r.json["api_key"].as_str().unwrap().to_string();
    assert!(send_key.starts_with("mrk_"), "{}", r.json);
    assert_eq!(r.json["scope"], "send");
    assert_eq!(r.json["last_used_at"], Value::Null);
    let (read_id, read_key) = create(&api, &default_key, "dashboard", "read").await;

    // The secret is shown once: never in a listing or a show.
    let r = api.get("/v1/keys", &default_key).await;
    let text = r.json.to_string();
    assert!(
        !text.contains(&send_key) && !text.contains("api_key"),
        "{text}"
    );
    assert_eq!(r.json["keys"].as_array().unwrap().len(), 3);
    let r = api.get(&format!("/v1/keys/{send_id}"), &read_key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["name"], "ci");
    assert!(r.json.get("api_key").is_none());

    // send: submits mail, nothing else.
    let r = api.post("/v1/messages", &send_key, message()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let r = api.get("/v1/keys", &send_key).await;
    r.assert_problem(StatusCode::FORBIDDEN, None);
    assert!(r.json["detail"].as_str().unwrap().contains("scope 'send'"));
    // read: GET only.
    let r = api.post("/v1/messages", &read_key, message()).await;
    r.assert_problem(StatusCode::FORBIDDEN, None);
    let r = api
        .post("/v1/keys", &read_key, json!({"name": "x", "scope": "full"}))
        .await;
    r.assert_problem(StatusCode::FORBIDDEN, None);

    // Revoked: the very next request is 401, on every route.
    let r = api
        .delete(&format!("/v1/keys/{send_id}"), &default_key)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    let r = api.post("/v1/messages", &send_key, message()).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, None);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = api.get(&format!("/v1/keys/{send_id}"), &default_key).await;
    r.assert_problem(StatusCode::NOT_FOUND, None);
    let r = api
        .delete(&format!("/v1/keys/{send_id}"), &default_key)
        .await;
    r.assert_problem(StatusCode::NOT_FOUND, None);

    // A key can be revoked with itself; the default key too.
    let r = api.delete(&format!("/v1/keys/{read_id}"), &read_key).await;
    r.assert_problem(StatusCode::FORBIDDEN, None);
    let default_id = keys[0]["id"].as_str().unwrap();
    let r = api
        .delete(&format!("/v1/keys/{default_id}"), &default_key)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    api.get("/v1/keys", &default_key)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, None);
    // The read key still works: revocation is per key.
    assert_eq!(api.get("/v1/keys", &read_key).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_until_its_expiry() {
    let api = Api::new().await;
    let (_, admin) = api.tenant("acme", "acme.test").await;
    let (id, old) = create(&api, &admin, "app", "full").await;

    let r = api
        .post(
            &format!("/v1/keys/{id}/rotate"),
            &admin,
            json!({"grace_seconds": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let new = r.json["api_key"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(r.json["id"], id.as_str(), "the key keeps its id");
    let expires = r.json["previous_secret_expires_at"].as_i64().unwrap();
    assert!(r.json["rotated_at"].as_i64().unwrap() <= expires);

    // Both work during the overlap...
    assert_eq!(api.get("/v1/keys", &old).await.status, StatusCode::OK);
    assert_eq!(api.get("/v1/keys", &new).await.status, StatusCode::OK);
    // ...and the old one stops by itself at the expiry (no reload, no restart).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    api.get("/v1/keys", &old)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, None);
    assert_eq!(api.get("/v1/keys", &new).await.status, StatusCode::OK);
    let r = api.get(&format!("/v1/keys/{id}"), &new).await;
    assert_eq!(
        r.json["previous_secret_expires_at"],
        Value::Null,
        "{}",
        r.json
    );

    // Grace 0: the old secret is refused at once. No body: the default grace (24 h).
    let r = api
        .post(
            &format!("/v1/keys/{id}/rotate"),
            &new,
            json!({"grace_seconds": 0}),
        )
        .await;
    let newer = r.json["api_key"].as_str().unwrap().to_string();
    api.get("/v1/keys", &new)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, None);
    let r = api
        .call(
            Method::POST,
            &format!("/v1/keys/{id}/rotate"),
            Some(&newer),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let grace = r.json["previous_secret_expires_at"].as_i64().unwrap()
        - r.json["rotated_at"].as_i64().unwrap();
    assert!((86_399_000..=86_401_000).contains(&grace), "{grace}");
    assert_eq!(api.get("/v1/keys", &newer).await.status, StatusCode::OK);

    // Revoking a key in its overlap refuses every secret it has.
    let newest = r.json["api_key"].as_str().unwrap().to_string();
    let r = api.delete(&format!("/v1/keys/{id}"), &admin).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for secret in [&newer, &newest] {
        api.get("/v1/keys", secret)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, None);
    }
}

#[tokio::test]
async fn bad_requests_name_the_field_and_tenants_are_isolated() {
    let api = Api::new().await;
    let (acme, admin) = api.tenant("acme", "acme.test").await;
    let (_, other) = api.tenant("globex", "globex.test").await;
    let (id, _) = create(&api, &admin, "ci", "send").await;

    for (body, field, status) in [
        (
            json!({"name": "", "scope": "send"}),
            Some("name"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "a\u{7}b", "scope": "send"}),
            Some("name"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x".repeat(65), "scope": "send"}),
            Some("name"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "y", "scope": "admin"}),
            Some("scope"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"name": "y"}), Some("scope"), StatusCode::BAD_REQUEST),
        (
            json!({"name": "y", "scope": "read", "colour": 1}),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "ci", "scope": "read"}),
            Some("name"),
            StatusCode::CONFLICT,
        ),
    ] {
        let r = api.post("/v1/keys", &admin, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.json);
        if status != StatusCode::BAD_REQUEST || field.is_some() {
            r.assert_problem(status, field);
        }
    }
    let r = api
        .post(
            &format!("/v1/keys/{id}/rotate"),
            &admin,
            json!({"grace_seconds": 40 * 86400}),
        )
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("grace_seconds"));

    // Another tenant's key id looks missing, whatever the verb.
    api.get(&format!("/v1/keys/{id}"), &other)
        .await
        .assert_problem(StatusCode::NOT_FOUND, None);
    api.delete(&format!("/v1/keys/{id}"), &other)
        .await
        .assert_problem(StatusCode::NOT_FOUND, None);
    api.post(&format!("/v1/keys/{id}/rotate"), &other, json!({}))
        .await
        .assert_problem(StatusCode::NOT_FOUND, None);
    let r = api.get("/v1/keys", &other).await;
    assert_eq!(r.json["keys"].as_array().unwrap().len(), 1);
    // A tenant cannot create a key for another tenant.
    let r = api
        .post(
            "/v1/keys",
            &other,
            json!({"name": "z", "scope": "full", "tenant_id": acme}),
        )
        .await;
    r.assert_problem(StatusCode::NOT_FOUND, None);

    // The operator names the tenant, like for webhooks.
    let r = api
        .post(
            "/v1/keys",
            OPERATOR,
            json!({"name": "ops", "scope": "read"}),
        )
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("tenant_id"));
    let r = api
        .post(
            "/v1/keys",
            OPERATOR,
            json!({"name": "ops", "scope": "read", "tenant_id": acme}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["tenant_id"], acme.as_str());
    let r = api.get(&format!("/v1/keys?tenant={acme}"), OPERATOR).await;
    assert_eq!(r.json["keys"].as_array().unwrap().len(), 3, "{}", r.json);
    let r = api.get("/v1/keys", OPERATOR).await;
    assert_eq!(r.json["keys"].as_array().unwrap().len(), 4, "{}", r.json);
    api.get("/v1/keys?tenant=nope", OPERATOR)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("tenant"));
    api.get("/v1/keys?colour=red", &admin)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("colour"));
}

#[tokio::test]
async fn last_use_is_shown_at_once_and_stored_at_most_once_a_minute() {
    let api = Api::new().await;
    let (_, admin) = api.tenant("acme", "acme.test").await;
    let (id, key) = create(&api, &admin, "reader", "read").await;
    let key_id = ApiKeyId::parse(&id).unwrap();

    let before = mailroom_model::now_millis();
    assert_eq!(api.get("/v1/keys", &key).await.status, StatusCode::OK);
    // The write goes through the store's writer in the background.
    let mut stored = None;
    for _ in 0..50 {
        stored = api
            .store
            .get_api_key(&key_id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at;
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = stored.expect("last_used_at stored after the first use");
    assert!(stored >= before);

    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = api.get(&format!("/v1/keys/{id}"), &key).await;
    let shown = r.json["last_used_at"].as_i64().unwrap();
    assert!(
        shown > stored,
        "the listing shows the latest use ({shown} vs {stored})"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = api.store.get_api_key(&key_id).await.unwrap().unwrap();
    assert_eq!(
        again.last_used_at,
        Some(stored),
        "a second use within a minute is not written"
    );
}

#[tokio::test]
async fn the_operator_token_rotates_and_only_its_digest_is_stored() {
    let api = Api::new().await;
    let (_, tenant_key) = api.tenant("acme", "acme.test").await;
    api.post("/v1/operator-token/rotate", &tenant_key, json!({}))
        .await
        .assert_problem(StatusCode::FORBIDDEN, None);

    let r = api
        .post("/v1/operator-token/rotate", OPERATOR, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let new = r.json["token"].as_str().unwrap().to_string();
    assert!(new.starts_with("mro_") && new != OPERATOR);
    api.get("/v1/tenants", OPERATOR)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, None);
    assert_eq!(api.get("/v1/tenants", &new).await.status, StatusCode::OK);
    assert_eq!(
        api.store.operator_token_hash().await.unwrap(),
        Some(secrets::hash_api_key(&new))
    );
}
