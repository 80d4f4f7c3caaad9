"""Schemathesis hooks for tests/e2e/test_openapi_contract.py (loaded through
`SCHEMATHESIS_HOOKS=schemathesis_hooks`).

With the operator token, the suppression routes and `POST /v1/webhooks` need the tenant
named (the document says so: `tenant` / `tenant_id` are "required with the operator
token"). OpenAPI cannot make a parameter required for one credential only, so for the
operator run (`MAILROOM_ST_TENANT` set) this hook fills in the test tenant just before
each call, in every phase, where the request left it out (absent, null, or an empty
`?tenant=`, all of which mean "not given"). Values schemathesis generated are left alone,
so negative data stays negative.
"""

from __future__ import annotations

import os

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    tenant = os.environ.get("MAILROOM_ST_TENANT")
    if not tenant:
        return
    path = case.operation.path
    method = case.method.upper()
    if path.startswith("/v1/suppressions") and method in ("GET", "DELETE"):
        query = dict(case.query or {})
        if query.get("tenant") in (None, ""):
            query["tenant"] = tenant
            case.query = query
    if method == "POST" and path in ("/v1/suppressions", "/v1/webhooks") \
            and isinstance(case.body, dict) and case.body.get("tenant_id") is None:
        case.body = {**case.body, "tenant_id": tenant}
