"""Schemathesis hooks for tests/e2e/test_openapi_contract.py (loaded through
`SCHEMATHESIS_HOOKS=schemathesis_hooks`).

With the operator token, the suppression routes and `POST /v1/webhooks` need the tenant
named (the document says so: `tenant` / `tenant_id` are "required with the operator
token"). OpenAPI cannot make a parameter required for one credential only, so for the
operator run (`MAILROOM_ST_TENANT` set) this hook fills in the test tenant just before
each call, in every phase, where the request left it out (absent, null, or an empty
`?tenant=`, all of which mean "not given"). Values schemathesis generated are left alone,
so negative data stays negative.

Webhook URLs: the server runs with `webhooks.allowed_hosts = ["127.0.0.1"]`, so any other
host is refused before a DNS lookup. A schema-valid URL with a random host would be
refused too, so in positive cases (only) the hook points `url` at the test's loopback
receiver (`MAILROOM_ST_WEBHOOK_URL`); negative cases keep their generated URL and must be
refused.

Keys: the tenant run authenticates with the tenant's key, whose id is in
`MAILROOM_ST_PROTECTED_KEYS`. A generated `DELETE /v1/keys/{id}` or
`POST /v1/keys/{id}/rotate` aimed at it (the stateful phase follows links from
`GET /v1/keys`) is pointed at an id that does not exist instead, so the run cannot lock
itself out; revocation and rotation are tested in tests/e2e/test_api_keys.py and
crates/api/tests/key_scopes.rs. Likewise a `DELETE /v1/tenants/{id}` aimed at the test
tenant (`MAILROOM_ST_TENANT`) is pointed at a tenant that does not exist (tenant
deletion is tested in tests/e2e/test_deletion.py and crates/api/tests/deletion.rs).
"""

from __future__ import annotations

import os

import schemathesis


def _positive(case) -> bool:
    meta = getattr(case, "meta", None)
    mode = getattr(getattr(meta, "generation", None), "mode", None)
    return bool(mode is not None and mode.is_positive)


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    method = case.method.upper()
    receiver = os.environ.get("MAILROOM_ST_WEBHOOK_URL")
    if receiver and path.startswith("/v1/webhooks") and method in ("POST", "PATCH") \
            and isinstance(case.body, dict) and isinstance(case.body.get("url"), str) \
            and _positive(case):
        case.body = {**case.body, "url": receiver}
    protected = set(filter(None, os.environ.get("MAILROOM_ST_PROTECTED_KEYS", "").split(",")))
    if path.startswith("/v1/keys/{id}") and isinstance(case.path_parameters, dict) \
            and case.path_parameters.get("id") in protected \
            and (method == "DELETE" or path.endswith("/rotate")):
        case.path_parameters = {**case.path_parameters, "id": "01JZZZZZZZZZZZZZZZZZZZZZZZ"}
    tenant = os.environ.get("MAILROOM_ST_TENANT")
    if not tenant:
        return
    if path == "/v1/tenants/{id}" and method == "DELETE" \
            and isinstance(case.path_parameters, dict) \
            and case.path_parameters.get("id") == tenant:
        case.path_parameters = {**case.path_parameters, "id": "01JZZZZZZZZZZZZZZZZZZZZZZZ"}
    if path.startswith("/v1/suppressions") and method in ("GET", "DELETE"):
        query = dict(case.query or {})
        if query.get("tenant") in (None, ""):
            query["tenant"] = tenant
            case.query = query
    if method == "POST" and path in ("/v1/suppressions", "/v1/webhooks") \
            and isinstance(case.body, dict) and case.body.get("tenant_id") is None:
        case.body = {**case.body, "tenant_id": tenant}
