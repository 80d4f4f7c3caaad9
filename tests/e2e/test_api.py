"""HTTP API: tenants, credentials, message status, authorization and problem responses."""

from __future__ import annotations

import uuid

from mailroom_harness import assert_message_queued, assert_queued, assert_reply, make_message, submit


def assert_problem(r, statuses, field: str | None = None):
    """RFC 7807 problem response: JSON with type/title/status(/detail), status matching HTTP."""
    if isinstance(statuses, int):
        statuses = (statuses,)
    assert r.status in statuses, f"expected HTTP {statuses}, got {r}"
    ctype = r.headers.get("content-type", "")
    assert "json" in ctype, f"problem response content-type is {ctype!r}: {r}"
    assert isinstance(r.body, dict), f"problem response is not a JSON object: {r}"
    for key in ("type", "title", "status"):
        assert key in r.body, f"problem response lacks {key!r}: {r}"
    assert r.body["status"] == r.status, f"problem 'status' differs from HTTP status: {r}"
    if field is not None:
        assert r.body.get("field") == field, f"problem should name field {field!r}: {r}"


def test_create_and_list_tenants(server):
    name = f"listme-{uuid.uuid4().hex[:8]}"
    r = server.api("POST", "/v1/tenants", {"name": name})
    assert r.status == 201, r
    for key in ("id", "name", "api_key"):
        assert r.body.get(key), f"tenant response lacks {key!r}: {r}"
    assert r.body["name"] == name
    tid = str(r.body["id"])

    r = server.api("GET", "/v1/tenants")
    assert r.status == 200, r
    tenants = r.body["tenants"]
    assert isinstance(tenants, list)
    mine = [t for t in tenants if str(t["id"]) == tid]
    assert len(mine) == 1 and mine[0]["name"] == name, r
    # Listing never shows secrets.
    assert all(not t.get("api_key") for t in tenants), f"GET /v1/tenants exposes api keys: {r}"


def test_missing_or_wrong_token_401(server):
    for token in (None, "wrong-token", server.operator_token + "x", ""):
        r = server.api("GET", "/v1/tenants", token=token)
        assert_problem(r, 401)
        r = server.api("POST", "/v1/tenants", {"name": f"nope-{uuid.uuid4().hex[:6]}"}, token=token)
        assert_problem(r, 401)
    # Nothing was created by the refused requests.
    r = server.api("GET", "/v1/tenants")
    assert r.status == 200
    assert not any(t["name"].startswith("nope-") for t in r.body["tenants"]), r


def test_tenant_key_cannot_act_as_operator(server, tenant, other_tenant):
    r = server.api("POST", "/v1/tenants", {"name": f"byt-{uuid.uuid4().hex[:6]}"},
                   token=tenant.api_key)
    assert r.status in (401, 403), f"tenant key created a tenant: {r}"
    r = server.api("GET", "/v1/tenants", token=tenant.api_key)
    if r.status == 200:
        ids = {str(t["id"]) for t in r.body["tenants"]}
        assert ids <= {tenant.id}, f"tenant key lists other tenants: {r}"
    else:
        assert r.status in (401, 403), r
    r = server.api("POST", f"/v1/tenants/{other_tenant.id}/smtp-credentials", {},
                   token=tenant.api_key)
    assert r.status in (401, 403, 404), f"tenant key made a credential for another tenant: {r}"


def test_validation_error_names_field(server):
    r = server.api("POST", "/v1/tenants", {})
    assert_problem(r, (400, 422), field="name")
    r = server.api("POST", "/v1/tenants", {"name": ""})
    assert_problem(r, (400, 422), field="name")
    r = server.api("POST", "/v1/tenants", {"name": 42})
    assert_problem(r, (400, 422), field="name")


def test_malformed_json_400(server):
    r = server.api("POST", "/v1/tenants", raw_body=b'{"name": ')
    assert_problem(r, (400, 422))


def test_invalid_domain_names_field(server, tenant):
    r = server.api("POST", f"/v1/tenants/{tenant.id}/domains", {"name": "not a domain!", "verified": True})
    assert_problem(r, (400, 422), field="name")


def test_unknown_tenant_404(server):
    r = server.api("POST", f"/v1/tenants/{uuid.uuid4().hex}/smtp-credentials", {})
    assert_problem(r, 404)


def test_unknown_message_404(server, tenant):
    fake = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    for token in (server.operator_token, tenant.api_key):
        assert_problem(server.api("GET", f"/v1/messages/{fake}", token=token), 404)


def test_credentials_list_hides_passwords(server, tenant):
    r = server.api("GET", f"/v1/tenants/{tenant.id}/smtp-credentials")
    assert r.status == 200, r
    creds = r.body["credentials"]
    mine = [c for c in creds if str(c["id"]) == tenant.cred_id]
    assert len(mine) == 1 and mine[0]["username"] == tenant.username, r
    assert tenant.password not in r.raw.decode(errors="replace"), "credential list leaks a password"
    assert all(not c.get("password") for c in creds), r


def test_message_visibility_by_tenant_key(server, tenant, other_tenant):
    client = server.smtp_starttls()
    try:
        assert_reply(tenant.login(client), 235, "2.7.0", what="AUTH")
        rcpts = ["visible@example.net"]
        msg_id = assert_queued(submit(client, tenant.sender, rcpts,
                                      make_message(tenant.sender, rcpts)))
    finally:
        client.close()
    # Operator and owning tenant see it.
    assert_message_queued(server, msg_id, tenant=tenant, rcpts=rcpts)
    assert_message_queued(server, msg_id, tenant=tenant, rcpts=rcpts, token=tenant.api_key)
    # Another tenant gets 404 (not 403: existence is not disclosed).
    assert_problem(server.api("GET", f"/v1/messages/{msg_id}", token=other_tenant.api_key), 404)
    # No or a bad token: 401.
    assert_problem(server.api("GET", f"/v1/messages/{msg_id}", token=None), 401)
    assert_problem(server.api("GET", f"/v1/messages/{msg_id}", token="bogus"), 401)


def test_allowed_ips_validation(server, tenant):
    r = server.api("PUT", f"/v1/tenants/{tenant.id}/allowed-ips",
                   {"cidrs": ["not-a-cidr"], "require_tls": False})
    assert_problem(r, (400, 422))
    assert r.body.get("field", "").startswith("cidrs"), f"problem should name 'cidrs': {r}"
