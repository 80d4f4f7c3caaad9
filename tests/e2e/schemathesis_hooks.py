"""Schemathesis hooks for tests/e2e/test_openapi_contract.py (loaded through
`SCHEMATHESIS_HOOKS=schemathesis_hooks`).

With the operator token, the suppression routes and `POST /v1/webhooks` need the tenant
named (the document says so: `tenant` / `tenant_id` are "required with the operator
token"). OpenAPI cannot make a parameter required for one credential only, so for the
operator run (`MAILROOM_ST_TENANT` set) these hooks fill in the test tenant where the
generated request left it out. Values schemathesis did generate are left alone.
"""

from __future__ import annotations

import os

import schemathesis

_TENANT_QUERY = ("/v1/suppressions",)


def _tenant() -> str | None:
    return os.environ.get("MAILROOM_ST_TENANT") or None


@schemathesis.hook
def map_query(context, query):
    tenant = _tenant()
    path = getattr(context.operation, "path", "")
    if tenant and path.startswith(_TENANT_QUERY):
        query = dict(query or {})
        query.setdefault("tenant", tenant)
    return query


@schemathesis.hook
def map_body(context, body):
    tenant = _tenant()
    path = getattr(context.operation, "path", "")
    method = getattr(context.operation, "method", "").upper()
    if tenant and method == "POST" and path in ("/v1/suppressions", "/v1/webhooks") \
            and isinstance(body, dict):
        body = dict(body)
        body.setdefault("tenant_id", tenant)
    return body
