//! The console's API: sign-in for the operator and a tenant (cookie flags, the session
//! body), every route through the cookie with the same scoping as a bearer token,
//! CSRF (missing or wrong token, foreign Origin: 403; bearer requests unaffected),
//! sign-out, the session ending with its key, the failed sign-in limit, and the
//! search, stats and queue routes the console reads.

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, OPERATOR, Response};
use serde_json::{Value, json};

/// Signs in with `token`; returns (cookie header value, csrf token, response).
async fn sign_in(api: &Api, token: &str) -> (String, String, Response) {
    let r = api
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "token": token })),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let set = r.header("set-cookie").expect("Set-Cookie").to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let csrf = r.json["csrf_token"].as_str().unwrap().to_string();
    (cookie, csrf, r)
}

/// A request authenticated by the cookie only.
async fn with_cookie(
    api: &Api,
    method: Method,
    uri: &str,
    cookie: &str,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> Response {
    let mut headers = vec![("cookie", cookie)];
    headers.extend_from_slice(extra);
    api.call(method, uri, None, body, &headers).await
}

fn send_body(to: &str, subject: &str) -> Value {
    json!({
        "from": {"address": "app@acme.test"},
        "to": to,
        "subject": subject,
        "text": "hello",
        "tags": ["console"],
    })
}

#[tokio::test]
async fn operator_and_tenant_sessions_with_cookie_flags_and_scoping() {
    let api = Api::new().await;
    let (acme, acme_key) = api.tenant("acme", "acme.test").await;
    let (_, other_key) = api.tenant("other", "other.test").await;

    // Operator: the cookie's flags and the body.
    let (op_cookie, _, r) = sign_in(&api, OPERATOR).await;
    let set = r.header("set-cookie").unwrap();
    assert!(set.starts_with("mailroom_session="), "{set}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains("Secure"), "not configured for TLS: {set}");
    assert_eq!(r.json["role"], "operator");
    assert_eq!(r.json["tenant"], Value::Null);
    assert!(r.json["expires_at"].as_str().unwrap().ends_with('Z'));
    let r = with_cookie(&api, Method::GET, "/v1/session", &op_cookie, None, &[]).await;
    assert_eq!(
        (r.status, r.json["role"].clone()),
        (StatusCode::OK, json!("operator"))
    );
    let r = with_cookie(&api, Method::GET, "/v1/tenants", &op_cookie, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    // Tenants send; a tenant session sees its own message, another's is a 404.
    let r = api
        .post(
            "/v1/messages",
            &acme_key,
            send_body("x@dest.test", "Acme hello"),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let acme_msg = r.json["id"].as_str().unwrap().to_string();
    let mut other_body = send_body("y@dest.test", "Other hello");
    other_body["from"] = json!({"address": "app@other.test"});
    let r = api.post("/v1/messages", &other_key, other_body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let other_msg = r.json["id"].as_str().unwrap().to_string();

    let (cookie, csrf, r) = sign_in(&api, &acme_key).await;
    assert_eq!(r.json["role"], "tenant");
    assert_eq!(r.json["tenant"], acme.as_str());
    assert_eq!(r.json["scope"], "full");
    let get = |uri: String| {
        let cookie = cookie.clone();
        let api = &api;
        async move { with_cookie(api, Method::GET, &uri, &cookie, None, &[]).await }
    };
    assert_eq!(
        get(format!("/v1/messages/{acme_msg}")).await.status,
        StatusCode::OK
    );
    get(format!("/v1/messages/{other_msg}"))
        .await
        .assert_problem(StatusCode::NOT_FOUND, None);
    get("/v1/tenants".into())
        .await
        .assert_problem(StatusCode::FORBIDDEN, None);
    // Search and stats are scoped to the tenant.
    let r = get("/v1/messages".into()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let items = r.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", r.json);
    assert_eq!(items[0]["id"], acme_msg.as_str());
    assert_eq!(items[0]["subject"], "Acme hello");
    assert_eq!(items[0]["tags"], json!(["console"]));
    assert_eq!(items[0]["to"], json!(["x@dest.test"]));
    let r = get("/v1/messages?subject=hello&recipient=X@dest.test".into()).await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1, "{}", r.json);
    let r = get("/v1/stats?period=minute".into()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["totals"]["accepted"], 1, "only its own: {}", r.json);
    assert_eq!(r.json["buckets"].as_array().unwrap().len(), 60);
    let r = get("/v1/stats?group_by=domain".into()).await;
    assert_eq!(r.json["groups"][0]["group"], "dest.test", "{}", r.json);
    let r = with_cookie(
        &api,
        Method::GET,
        "/v1/stats?tenant=01ARZ3NDEKTSV4RRFFQ69G5FAV",
        &cookie,
        None,
        &[],
    )
    .await;
    r.assert_problem(StatusCode::NOT_FOUND, None);
    // The operator sees both, and can split by tenant.
    let r = with_cookie(
        &api,
        Method::GET,
        "/v1/stats?group_by=tenant",
        &op_cookie,
        None,
        &[],
    )
    .await;
    assert_eq!(r.json["totals"]["accepted"], 2, "{}", r.json);
    assert_eq!(r.json["groups"].as_array().unwrap().len(), 2, "{}", r.json);
    let r = with_cookie(
        &api,
        Method::GET,
        "/v1/messages?limit=1",
        &op_cookie,
        None,
        &[],
    )
    .await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1);
    let cursor = r.json["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let r = with_cookie(
        &api,
        Method::GET,
        &format!("/v1/messages?limit=1&cursor={cursor}"),
        &op_cookie,
        None,
        &[],
    )
    .await;
    assert_eq!(r.json["items"][0]["id"], acme_msg.as_str(), "{}", r.json);
    assert_eq!(r.json["next_cursor"], Value::Null);
    let r = with_cookie(
        &api,
        Method::GET,
        "/v1/queue/summary",
        &op_cookie,
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json["destinations"].is_array(), "{}", r.json);

    // A state-changing request through the cookie needs the CSRF token...
    let post = |csrf: Option<&str>, origin: Option<&str>| {
        let mut extra: Vec<(&str, &str)> = vec![("host", "console.test")];
        if let Some(c) = csrf {
            extra.push(("x-csrf-token", c));
        }
        if let Some(o) = origin {
            extra.push(("origin", o));
        }
        let cookie = cookie.clone();
        let extra: Vec<(String, String)> = extra
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let api = &api;
        async move {
            let extra: Vec<(&str, &str)> = extra
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            with_cookie(
                api,
                Method::POST,
                "/v1/messages",
                &cookie,
                Some(send_body("z@dest.test", "via console")),
                &extra,
            )
            .await
        }
    };
    post(None, None)
        .await
        .assert_problem(StatusCode::FORBIDDEN, Some("X-CSRF-Token"));
    post(Some("wrong"), None)
        .await
        .assert_problem(StatusCode::FORBIDDEN, Some("X-CSRF-Token"));
    // ... and a same-host Origin when it has one.
    post(Some(&csrf), Some("http://evil.test"))
        .await
        .assert_problem(StatusCode::FORBIDDEN, Some("Origin"));
    let r = post(Some(&csrf), Some("http://console.test")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let r = post(Some(&csrf), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    // Bearer requests need no CSRF token.
    let r = api
        .post(
            "/v1/messages",
            &acme_key,
            send_body("w@dest.test", "bearer"),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);

    // Sign-out: CSRF needed, then the session is gone and the cookie cleared.
    let r = with_cookie(&api, Method::DELETE, "/v1/session", &cookie, None, &[]).await;
    r.assert_problem(StatusCode::FORBIDDEN, Some("X-CSRF-Token"));
    let r = with_cookie(
        &api,
        Method::DELETE,
        "/v1/session",
        &cookie,
        None,
        &[("x-csrf-token", &csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let r = get(format!("/v1/messages/{acme_msg}")).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, None);
    let r = with_cookie(&api, Method::GET, "/v1/session", &cookie, None, &[]).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, None);
    let r = api.call(Method::GET, "/v1/session", None, None, &[]).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, None);
}

#[tokio::test]
async fn a_session_ends_with_its_key_and_follows_the_key_scope() {
    let api = Api::new().await;
    let (acme, _) = api.tenant("acme", "acme.test").await;
    let r = api
        .post(
            "/v1/keys",
            OPERATOR,
            json!({ "tenant_id": acme, "name": "viewer", "scope": "read" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let key_id = r.json["id"].as_str().unwrap().to_string();
    let secret = r.json["secret"]
        .as_str()
        .or(r.json["api_key"].as_str())
        .expect("secret")
        .to_string();
    let (cookie, csrf, r) = sign_in(&api, &secret).await;
    assert_eq!(r.json["scope"], "read");
    let r = with_cookie(&api, Method::GET, "/v1/messages", &cookie, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // A read key's session cannot send, CSRF token or not.
    let r = with_cookie(
        &api,
        Method::POST,
        "/v1/messages",
        &cookie,
        Some(send_body("a@dest.test", "x")),
        &[("x-csrf-token", &csrf)],
    )
    .await;
    r.assert_problem(StatusCode::FORBIDDEN, None);
    // A session opened on this node works on another node sharing the store.
    let node_b = api.another_node(None).await;
    let r = with_cookie(&node_b, Method::GET, "/v1/session", &cookie, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // Revoking the key ends the session.
    let r = api.delete(&format!("/v1/keys/{key_id}"), OPERATOR).await;
    assert!(r.status.is_success(), "{}", r.json);
    let r = with_cookie(&api, Method::GET, "/v1/messages", &cookie, None, &[]).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, None);
}

#[tokio::test]
async fn bad_sign_ins_are_problems_and_rate_limited() {
    let api = Api::new().await;
    let r = api
        .call(Method::POST, "/v1/session", None, Some(json!({})), &[])
        .await;
    r.assert_problem(StatusCode::BAD_REQUEST, Some("token"));
    let r = api
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "token": "" })),
            &[],
        )
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("token"));
    let r = api
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "token": OPERATOR })),
            &[("host", "a.test"), ("origin", "http://b.test")],
        )
        .await;
    r.assert_problem(StatusCode::FORBIDDEN, Some("Origin"));
    // Ten failures per minute per address (the default), then 429 even for a good token.
    for i in 0..10 {
        let r = api
            .call(
                Method::POST,
                "/v1/session",
                None,
                Some(json!({ "token": format!("mrk_wrong{i}") })),
                &[],
            )
            .await;
        r.assert_problem(StatusCode::UNAUTHORIZED, Some("token"));
    }
    let r = api
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "token": OPERATOR })),
            &[],
        )
        .await;
    r.assert_problem(StatusCode::TOO_MANY_REQUESTS, None);
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // A garbage cookie is simply signed out.
    let r = with_cookie(
        &api,
        Method::GET,
        "/v1/tenants",
        "mailroom_session=nonsense",
        None,
        &[],
    )
    .await;
    r.assert_problem(StatusCode::UNAUTHORIZED, None);
    // Stats and search refuse bad parameters by name.
    for (uri, field) in [
        ("/v1/stats?period=week", "period"),
        ("/v1/stats?group_by=color", "group_by"),
        ("/v1/stats?from=yesterday", "from"),
        ("/v1/stats?period=minute&from=0", "from"),
        ("/v1/messages?state=lost", "state"),
        ("/v1/messages?cursor=zzz", "cursor"),
        ("/v1/messages?limit=0", "limit"),
    ] {
        let r = api.get(uri, OPERATOR).await;
        r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some(field));
    }
    // Minute and hour counters are pruned: a range older than what is kept is refused
    // (it would read as zeros); the newest kept bucket is still answered.
    let now = mailroom_model::now_millis();
    for (period, back, ok) in [
        ("minute", 3 * 3_600_000, false),
        ("minute", 3_600_000, true),
        ("hour", 3 * 86_400_000, false),
        ("hour", 86_400_000, true),
        ("day", 300 * 86_400_000, true),
    ] {
        let uri = format!("/v1/stats?period={period}&from={}", now - back);
        let r = api.get(&uri, OPERATOR).await;
        if ok {
            assert_eq!(r.status, StatusCode::OK, "{uri}");
        } else {
            r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, Some("from"));
        }
    }
}
