"""The `mailroom` CLI against the real server: where its credentials go, what a non-2xx
answer does to its exit status, and what `send --attach` says about a file's type.

`webhook add <URL>` once sent `POST <URL>/v1/webhooks` with the tenant key (or the
operator token) to the webhook receiver and registered nothing; here the receiver
records every request and must never see a credential, and the webhook must exist in
the API afterwards. Every other command's host and path is checked in the binary's own
tests (crates/mailroom/src/cli_tests/mod.rs). Loopback only; every wait is bounded.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import uuid

import pytest

from fakes import WebhookReceiver as Recorder
from mailroom_harness import mailroom_bin, poll_until, start_server
from test_delivery import delivery_config

WAIT = 20.0


@pytest.fixture(scope="module")
def server(tmp_path_factory, sink):
    srv = start_server(tmp_path_factory.mktemp("mailroom-cli"),
                       extra_config=delivery_config(sink.port)
                       + "\n[webhooks]\nallow_private = true\n")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tenant(server):
    return server.create_tenant("cli", domain="acme.test")


def cli(server, *args: str) -> subprocess.CompletedProcess:
    """`mailroom <args> --data-dir <server's>`: address and operator token from there
    unless `--url`/`--token` are given; nothing from this process's environment."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAILROOM_URL", "MAILROOM_TOKEN", "MAILROOM_DATA_DIR")}
    return subprocess.run([str(mailroom_bin()), *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=WAIT, env=env)


def assert_no_credential(receiver: Recorder, *secrets: str):
    for req in receiver.seen():
        assert "Authorization" not in req["headers"], req
        blob = json.dumps(req["headers"]) + req["path"] + req["body"].decode("latin-1")
        for s in secrets:
            assert s not in blob, f"a credential reached the receiver: {req}"
        assert not req["path"].endswith("/v1/webhooks"), req


@pytest.mark.parametrize("who", ["operator", "tenant"])
def test_webhook_add_registers_with_the_api_and_sends_nothing_to_the_receiver(
        server, tenant, who):
    receiver = Recorder()
    try:
        if who == "operator":
            out = cli(server, "webhook", "add", receiver.url, "--events", "delivered",
                      "--tenant", tenant.name)
        else:
            out = cli(server, "webhook", "add", receiver.url, "--events", "delivered",
                      "--token", tenant.api_key)
        assert out.returncode == 0, out.stderr
        created = json.loads(out.stdout)
        assert created["url"] == receiver.url and created["id"], created
        listed = server.api("GET", "/v1/webhooks", token=tenant.api_key)
        assert listed.status == 200, listed
        hooks = {h["id"]: h for h in listed.body["webhooks"]}
        assert hooks[created["id"]]["url"] == receiver.url, hooks
        assert_no_credential(receiver, server.operator_token, tenant.api_key)
        # The CLI's requests went to the API: the receiver saw none of them.
        assert receiver.seen() == [], receiver.seen()
    finally:
        receiver.close()


def test_a_problem_answer_exits_non_zero_with_its_detail(server, tenant):
    out = cli(server, "message", "show", "01AAAAAAAAAAAAAAAAAAAAAAAA", "--token", tenant.api_key)
    assert out.returncode == 1, out
    assert "404" in out.stderr and "GET /v1/messages/01AAAAAAAAAAAAAAAAAAAAAAAA" in out.stderr, \
        out.stderr
    out = cli(server, "suppression", "add", "not an address", "--token", tenant.api_key)
    assert out.returncode == 1, out
    assert "422" in out.stderr and "(field: address)" in out.stderr, out.stderr
    assert out.stdout == "", out.stdout


def test_send_attach_guesses_the_content_type(server, tenant, sink, tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n% e2e\n")
    csv = tmp_path / "numbers.csv"
    csv.write_text("a,b\n1,2\n")
    odd = tmp_path / "blob.unknownext"
    odd.write_bytes(b"\x00\x01")
    to = f"attach-{uuid.uuid4().hex[:8]}@example.net"
    out = cli(server, "send", "--token", tenant.api_key, "--from", "app@acme.test",
              "--to", to, "--subject", "attachments", "--text", "see attached",
              "--attach", str(pdf), "--attach", str(csv), "--attach", str(odd))
    assert out.returncode == 0, out.stderr
    got = sink.wait_for_rcpt(to, timeout=WAIT)
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    types = {p.get_filename(): p.get_content_type() for p in msg.iter_attachments()}
    assert types == {"report.pdf": "application/pdf", "numbers.csv": "text/csv",
                     "blob.unknownext": "application/octet-stream"}, types


def test_logs_print_optional_values_cleanly(server, tenant, sink):
    """`mx=127.0.0.1`, not `mx=Some("127.0.0.1")`; an absent value is left out."""
    r = server.api("PATCH", f"/v1/tenants/{tenant.id}", {"messages_per_day": 100000})
    assert r.status == 200, r
    to = f"logs-{uuid.uuid4().hex[:8]}@example.net"
    out = cli(server, "send", "--token", tenant.api_key, "--from", "app@acme.test", "--to", to)
    assert out.returncode == 0, out.stderr
    sink.wait_for_rcpt(to, timeout=WAIT)

    def attempt_lines():
        return [line for line in server.log_path.read_text().splitlines()
                if "delivery attempt" in line and to in line]

    poll_until(attempt_lines, timeout=WAIT, what="a delivery attempt log line")
    line = attempt_lines()[0]
    assert "mx=127.0.0.1" in line, line
    log = server.log_path.read_text()
    settings = [line for line in log.splitlines() if "tenant settings changed" in line]
    assert settings and "messages_per_day=100000" in settings[-1], settings
    assert "messages_per_second" not in settings[-1], settings[-1]
    for bad in ("Some(", "=None"):
        assert bad not in log, [line for line in log.splitlines() if bad in line]


def test_every_api_command_works_against_the_real_server(server):
    """The paths the CLI builds (checked against a recorder in cli_tests) are the real
    API's: each command succeeds against the server (no DNS: `domain verify` is left out,
    it queries the resolver)."""
    receiver = Recorder()
    name = f"clitour-{uuid.uuid4().hex[:6]}"
    domain = f"{name}.test"

    def ok(*args: str) -> str:
        out = cli(server, *args)
        assert out.returncode == 0, (args, out.stderr)
        return out.stdout

    try:
        created = json.loads(ok("tenant", "create", name))
        key = created["api_key"]
        assert name in ok("tenant", "list")
        ok("domain", "add", domain, "--tenant", name, "--verified")
        assert domain in ok("domain", "list", "--tenant", name)
        assert domain in ok("domain", "list")
        ok("domain", "show", domain)
        ok("domain", "show", domain, "--zone-file")
        ok("domain", "rotate", domain)
        cred = json.loads(ok("credential", "create", "--tenant", name))
        assert cred["id"] in ok("credential", "list", "--tenant", name)
        ok("credential", "revoke", "--tenant", name, cred["id"])
        ok("allowed-ips", "set", "--tenant", name, "192.0.2.0/24", "--require-tls")
        assert "192.0.2.0/24" in ok("allowed-ips", "show", "--tenant", created["id"])
        sent = json.loads(ok("send", "--token", key, "--from", f"app@{domain}",
                             "--to", f"tour@{domain}", "--idempotency-key", name))
        ok("message", "show", sent["id"])
        ok("queue")
        ok("queue", "show")
        ok("queue", "retry", sent["id"])
        ok("queue", "cancel", sent["id"])
        ok("send", "--token", key, "--from", f"app@{domain}", "--to", f"many@{domain}",
           "--count", "3", "--concurrency", "2")
        ok("suppression", "add", f"gone@{domain}", "--token", key)
        assert f"gone@{domain}" in ok("suppression", "list", "--tenant", name)
        ok("suppression", "remove", f"gone@{domain}", "--tenant", name)
        events = ok("events", "tail", "--token", key, "--limit", "3", "--type", "accepted")
        assert len(events.splitlines()) == 3, events
        hook = json.loads(ok("webhook", "add", receiver.url, "--token", key))
        assert hook["id"] in ok("webhook", "list", "--token", key)
        ok("webhook", "test", hook["id"], "--token", key)
        ok("webhook", "remove", hook["id"], "--token", key)
        assert_no_credential(receiver, server.operator_token, key)
        assert [r["method"] for r in receiver.seen()] == ["POST"], receiver.seen()  # the ping
    finally:
        receiver.close()
