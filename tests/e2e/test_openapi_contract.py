"""The API matches its OpenAPI document: schemathesis (`--checks all`) against the real
binary on loopback, once with the operator token and once with a tenant key, zero
failures allowed.

Bounded: `MAILROOM_ST_MAX_EXAMPLES` examples per operation (default 8) and a wall-clock
limit per run. Safe: the server runs with delivery off, DNS pointed at a loopback server
that answers NXDOMAIN, and `webhooks.allowed_hosts = ["127.0.0.1"]`, so no generated webhook URL can reach
anything but loopback (the server refuses other hosts before any DNS lookup). The served
document is used as is; schemathesis_hooks.py points schema-valid webhook URLs at this
test's loopback receiver and names the tenant where the operator must (see there).

Also here: the one rule for query parameters (undeclared or repeated: 422 problem naming
it) and that every error the framework answers (404, 405, 413, malformed JSON) is
`application/problem+json`.
"""

from __future__ import annotations

import json
import http.client
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fakes import WebhookReceiver
from mailroom_harness import TESTS_DIR, start_server

MAX_EXAMPLES = int(os.environ.get("MAILROOM_ST_MAX_EXAMPLES", "8"))
RUN_TIMEOUT = 600

# Two allowances, each a rule between values that OpenAPI 3.0 cannot state: a
# schema-valid message may still be refused with 422 when its recipients (to + cc + bcc
# together, duplicates counted once) exceed the recipient limit (the server's and the
# tenant's configuration), and a schema-valid `GET /v1/stats` when `from`/`to` span more
# than 1,500 buckets of the period or `from` is not before `to`. Every other check
# (negative data, response schemas, status codes, content types, 5xx) runs on them
# unchanged.
CONFIG = """
[[operations]]
include-path = "/v1/messages"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-path = "/v1/stats"
include-method = "GET"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


class NxDomain:
    """A DNS server on 127.0.0.1 (UDP) that answers NXDOMAIN to every query at once, so
    the domain routes' record checks are quick and never leave the machine."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.running = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.running:
            try:
                query, peer = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            if len(query) < 12:
                continue
            # Same id and question; QR=1, opcode and RD copied, RA=1, RCODE=3.
            flags = bytes([0x80 | (query[2] & 0x79), 0x83])
            self.sock.sendto(query[:2] + flags + query[4:6] + b"\0\0\0\0\0\0" + query[12:], peer)

    def stop(self):
        self.running = False
        self.sock.close()


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    receiver = WebhookReceiver(respond=lambda _request: 204)
    dns = NxDomain()
    srv = start_server(
        tmp_path_factory.mktemp("contract"),
        extra_config=(
            "[delivery]\nenabled = false\n"
            f'[dns]\nnameservers = ["127.0.0.1:{dns.port}"]\ntimeout_secs = 1\n'
            '[webhooks]\nallow_private = true\nallowed_hosts = ["127.0.0.1"]\n'
        ),
    )
    tenant = srv.create_tenant("contract", domain="contract.test", credential=False)
    keys = srv.api("GET", f"/v1/keys?tenant={tenant.id}")
    assert keys.status == 200 and keys.body["keys"], keys
    # The tenant run's own key: the runs must not revoke it (or rotate it with no grace)
    # under themselves, or every later request is a 401 (schemathesis_hooks.py).
    os.environ["MAILROOM_ST_PROTECTED_KEYS"] = ",".join(k["id"] for k in keys.body["keys"])
    yield srv, tenant, receiver
    os.environ.pop("MAILROOM_ST_PROTECTED_KEYS", None)
    srv.stop()
    receiver.stop()
    dns.stop()


def schemathesis_bin() -> str:
    path = shutil.which("schemathesis") or shutil.which("st")
    if path is None:
        msg = "schemathesis is not installed (pip install -r requirements-dev.txt)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def run_schemathesis(srv, token: str, receiver: WebhookReceiver, workdir: Path,
                     tenant_env: str | None):
    host, port = srv.http_addr
    env = dict(os.environ)
    env["PYTHONPATH"] = str(TESTS_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    env["SCHEMATHESIS_HOOKS"] = "schemathesis_hooks"
    env["MAILROOM_ST_WEBHOOK_URL"] = receiver.url
    env.pop("MAILROOM_ST_TENANT", None)
    if tenant_env:
        env["MAILROOM_ST_TENANT"] = tenant_env
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [
        schemathesis_bin(), "--config-file", str(config), "run", f"http://{host}:{port}/v1/openapi.json",
        "--url", f"http://{host}:{port}",
        "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1",
        "--generation-database", "none",
        "--header", f"Authorization: Bearer {token}",
        "--request-timeout", "30",
        "--no-color",
    ]
    if os.environ.get("MAILROOM_ST_SEED"):
        cmd += ["--seed", os.environ["MAILROOM_ST_SEED"]]
    # Rotating DKIM keys generates RSA keys: slow in a debug build and not a contract
    # question; the route is covered by tests/e2e/test_domains.py.
    cmd += ["--exclude-path", "/v1/domains/{name}/dkim/rotate"]
    # Rotating the operator token would lock the run out after its first success (every
    # later request 401); the route is covered by tests/e2e/test_api_keys.py and
    # crates/api/tests/key_scopes.rs.
    cmd += ["--exclude-path", "/v1/operator-token/rotate"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          env=env, cwd=str(workdir))
    return proc


@pytest.mark.parametrize("who", ["operator", "tenant"])
def test_schemathesis_finds_no_mismatch(contract, who, tmp_path):
    srv, tenant, receiver = contract
    token = srv.operator_token if who == "operator" else tenant.api_key
    proc = run_schemathesis(srv, token, receiver, tmp_path,
                            tenant.id if who == "operator" else None)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"schemathesis ({who}) found mismatches:\n{output[-20000:]}"
    assert "API Operations" in output, output[-4000:]
    assert srv.alive(), "the server died under schemathesis"


# -- the shared rules, checked directly ---------------------------------------------------


def assert_problem(r, status: int, field: str | None = None):
    assert r.status == status, r
    assert r.headers.get("content-type", "").startswith("application/problem+json"), r
    assert r.body and r.body.get("status") == status and r.body.get("title"), r
    if field is not None:
        assert r.body.get("field") == field, r


def test_undeclared_and_repeated_query_parameters_are_refused_alike(contract):
    srv, tenant, _ = contract
    for path in ("/v1/suppressions", "/v1/events", "/v1/queue", "/v1/tenants"):
        r = srv.api("GET", path + ("?tenant=" + tenant.id + "&" if "supp" in path else "?")
                    + "bogus=1")
        assert_problem(r, 422, "bogus")
    r = srv.api("GET", "/v1/events?limit=5&limit=6")
    assert_problem(r, 422, "limit")
    r = srv.api("GET", f"/v1/suppressions?tenant={tenant.id}&tenant={tenant.id}")
    assert_problem(r, 422, "tenant")
    # Declared parameters still work.
    r = srv.api("GET", "/v1/events?limit=5")
    assert r.status == 200, r


def post_oversized(srv, path: str, token: str, length: int):
    """POSTs a JSON body of `length` bytes in 64 KiB pieces and stops sending as soon as
    the server answers, then reads the answer. (Sending it all in one go races the
    server's early 413 and close: a broken pipe on the client, not an answer.)"""
    host, port = srv.http_addr
    body = b'{"address": "' + b"a" * (length - 16) + b'"}'
    with socket.create_connection((host, port), timeout=20) as s:
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                   f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode())
        for at in range(0, len(body), 1 << 16):
            if select.select([s], [], [], 0)[0]:
                break
            try:
                s.sendall(body[at:at + (1 << 16)])
            except (BrokenPipeError, ConnectionResetError):
                break
        resp = http.client.HTTPResponse(s)
        resp.begin()
        return resp.status, resp.getheader("content-type", ""), json.loads(resp.read() or b"{}")


def test_framework_errors_are_problems(contract):
    srv, tenant, _ = contract
    assert_problem(srv.api("GET", "/v1/no-such-route"), 404, "path")
    r = srv.api("PUT", "/v1/tenants")
    assert_problem(r, 405, "method")
    assert "GET" in r.headers.get("allow", "") and "POST" in r.headers.get("allow", ""), r
    r = srv.api("POST", "/v1/tenants", raw_body=b'{"name": ')
    assert_problem(r, 400)
    r = srv.api("POST", "/v1/tenants", {"name": "ok", "nickname": "x"})
    assert_problem(r, 400, "nickname")
    status, ctype, body = post_oversized(srv, "/v1/suppressions", tenant.api_key, 3 << 20)
    assert status == 413 and ctype.startswith("application/problem+json"), (status, ctype, body)
    assert body.get("status") == 413 and body.get("field") == "body", body
    r = srv.api("GET", "/v1/events?after=x")
    assert_problem(r, 422, "after")
    r = srv.api("GET", "/v1/suppressions")
    assert_problem(r, 422, "tenant")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
