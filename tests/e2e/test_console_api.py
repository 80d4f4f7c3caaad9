"""The console's API against the real binary over real HTTP (urllib): sign-in as the
operator and as two tenants (the Set-Cookie flags, `Secure` from `console.secure_cookie`),
the cookie as the only credential, CSRF refusal (no token, wrong token, foreign Origin)
and acceptance, tenant A's message id typed by tenant B is a 404, the message sent now
shows in `GET /v1/stats` and `GET /v1/messages`, sign-out, and failed sign-ins answered
429 with Retry-After."""

from __future__ import annotations

import time

from mailroom_harness import start_server

CONFIG = """[delivery]
enabled = false

[console]
secure_cookie = true
session_ttl_secs = 3600
signin_failures_per_minute = 5
"""


def sign_in(srv, token: str) -> tuple[str, dict, str]:
    """Returns (Cookie header value, session body, Set-Cookie header)."""
    r = srv.api("POST", "/v1/session", {"token": token}, token=None)
    assert r.status == 200, r
    set_cookie = r.headers["set-cookie"]
    return set_cookie.split(";")[0], r.body, set_cookie


def as_cookie(srv, method: str, path: str, cookie: str, body=None, headers: dict | None = None):
    return srv.api(method, path, body, token=None, headers={"Cookie": cookie, **(headers or {})})


def message(domain: str, subject: str) -> dict:
    return {"from": f"app@{domain}", "to": "someone@example.net", "subject": subject,
            "text": "hi", "tags": ["console-e2e"]}


def test_sessions_csrf_scoping_and_stats(tmp_path):
    srv = start_server(tmp_path, extra_config=CONFIG)
    try:
        a = srv.create_tenant("cona", domain="cona.test", credential=False)
        b = srv.create_tenant("conb", domain="conb.test", credential=False)

        cookie_a, body, set_cookie = sign_in(srv, a.api_key)
        flags = [f.strip() for f in set_cookie.split(";")]
        for flag in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600", "Secure"):
            assert flag in flags, set_cookie
        assert body["role"] == "tenant" and body["tenant"] == a.id, body
        csrf_a = body["csrf_token"]
        assert as_cookie(srv, "GET", "/v1/session", cookie_a).body["tenant"] == a.id

        # Sending through the cookie: refused without the CSRF token, with a wrong one,
        # and from a foreign Origin; accepted with the token.
        host, port = srv.http_addr
        for headers, field in (({}, "X-CSRF-Token"),
                               ({"X-CSRF-Token": "nope"}, "X-CSRF-Token"),
                               ({"X-CSRF-Token": csrf_a, "Origin": "http://evil.example"}, "Origin")):
            r = as_cookie(srv, "POST", "/v1/messages", cookie_a, message("cona.test", "x"), headers)
            assert r.status == 403, r
            assert r.headers["content-type"].startswith("application/problem+json"), r
            assert r.body["field"] == field, r
        r = as_cookie(srv, "POST", "/v1/messages", cookie_a, message("cona.test", "Console e2e"),
                      {"X-CSRF-Token": csrf_a, "Origin": f"http://{host}:{port}"})
        assert r.status == 202, r
        msg_a = r.body["id"]

        # Tenant B, signed in, cannot open A's message.
        cookie_b, body_b, _ = sign_in(srv, b.api_key)
        assert body_b["tenant"] == b.id
        assert as_cookie(srv, "GET", f"/v1/messages/{msg_a}", cookie_b).status == 404
        assert as_cookie(srv, "GET", f"/v1/messages/{msg_a}", cookie_a).status == 200
        found = as_cookie(srv, "GET", "/v1/messages?subject=console", cookie_b).body
        assert found["items"] == [], found

        # The message shows in the stats and the search at once (counters are written
        # with the events).
        deadline = time.monotonic() + 5
        while True:
            stats = as_cookie(srv, "GET", "/v1/stats?period=minute", cookie_a).body
            if stats["totals"]["accepted"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert stats["totals"]["accepted"] == 1, stats
        assert len(stats["buckets"]) == 60, stats
        items = as_cookie(srv, "GET", "/v1/messages?subject=console&tag=console-e2e", cookie_a).body["items"]
        assert [i["id"] for i in items] == [msg_a], items
        assert items[0]["subject"] == "Console e2e" and items[0]["to"] == ["someone@example.net"], items

        # The operator's session sees both tenants' counters.
        cookie_op, body_op, _ = sign_in(srv, srv.operator_token)
        assert body_op["role"] == "operator" and body_op["tenant"] is None
        r = as_cookie(srv, "GET", "/v1/stats?group_by=tenant&period=minute", cookie_op)
        assert r.status == 200 and r.body["totals"]["accepted"] == 1, r
        assert as_cookie(srv, "GET", "/v1/queue/summary", cookie_op).status == 200

        # Sign-out ends the session on the server, not only in the browser.
        r = as_cookie(srv, "DELETE", "/v1/session", cookie_a, headers={"X-CSRF-Token": csrf_a})
        assert r.status == 204, r
        assert "Max-Age=0" in r.headers["set-cookie"], r.headers
        assert as_cookie(srv, "GET", f"/v1/messages/{msg_a}", cookie_a).status == 401

        # Failed sign-ins: five per minute per address, then 429 with Retry-After.
        for i in range(5):
            r = srv.api("POST", "/v1/session", {"token": f"mrk_wrong_{i}"}, token=None)
            assert r.status == 401 and r.body["field"] == "token", r
        r = srv.api("POST", "/v1/session", {"token": a.api_key}, token=None)
        assert r.status == 429, r
        assert 1 <= int(r.headers["retry-after"]) <= 60, r.headers
    finally:
        srv.stop()
