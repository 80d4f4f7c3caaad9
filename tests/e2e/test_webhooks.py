"""Webhooks end to end: a receiver in this test registers, gets a signed `ping`, then
the `accepted` event of a message submitted over SMTP. It answers 500 the first time
and 200 on the retry; every request's Mailroom-Signature is verified with hmac and a
timestamp tolerance, as the README's "Verifying webhook signatures" section shows.
Also: the event stream by cursor, and the SSRF refusal of internal URLs."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from fakes import WebhookReceiver
from mailroom_harness import MailroomServer, assert_queued, make_message, submit

TOLERANCE_SECS = 300


def verify_signature(secret: str, header: str, body: bytes, tolerance: int = TOLERANCE_SECS) -> bool:
    """The receiver's check: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def Receiver() -> WebhookReceiver:
    """The shared receiver (fakes.py), answering 500 to the first event delivery (not a
    ping) and 200 to everything else."""
    receiver: WebhookReceiver

    def respond(request: dict) -> int:
        with receiver.lock:
            events = [r for r in receiver.requests
                      if r["payload"]["events"][0]["type"] != "ping"]
            first_event = (request["payload"]["events"][0]["type"] != "ping"
                           and len(events) == 1)
        return 500 if first_event else 200

    receiver = WebhookReceiver(respond=respond)
    return receiver


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory):
    srv = MailroomServer(
        tmp_path_factory.mktemp("webhooks"),
        extra_config="[delivery]\nenabled = false\n\n[webhooks]\nallow_private = true\n"
                     "retry_schedule_secs = [1]\ntimeout_secs = 5\n",
    )
    try:
        srv.start()
    except RuntimeError as err:
        srv.kill()
        pytest.fail(str(err), pytrace=False)
    yield srv
    srv.stop()


def test_signed_webhook_with_retry(hook_server):
    server = hook_server
    tenant = server.create_tenant("hooks", domain="hooks.test")
    receiver = Receiver()
    try:
        r = server.api("POST", "/v1/webhooks", {"url": receiver.url}, token=tenant.api_key)
        assert r.status == 201, r
        secret = r.body["secret"]
        assert secret.startswith("whsec_"), r
        hook_id = r.body["id"]

        r = server.api("POST", f"/v1/webhooks/{hook_id}/test", token=tenant.api_key)
        assert r.status == 200 and r.body["delivered"] is True and r.body["status"] == 200, r

        client = server.smtp_starttls()
        try:
            tenant.login(client, "PLAIN")
            reply = submit(client, "app@hooks.test", ["you@example.net"],
                           make_message("app@hooks.test", to=["you@example.net"]))
            message_id = assert_queued(reply)
        finally:
            client.close()

        deadline = time.time() + 30
        while time.time() < deadline:
            with receiver.lock:
                events = [q for q in receiver.requests if q["payload"]["events"][0]["type"] == "accepted"]
            if len(events) >= 2:
                break
            time.sleep(0.2)
        assert len(events) >= 2, f"expected a 500 and a retry, got {receiver.requests}"

        with receiver.lock:
            all_requests = list(receiver.requests)
        for q in all_requests:
            assert q["content_type"] == "application/json"
            assert verify_signature(secret, q["signature"], q["body"]), q
            assert not verify_signature(secret, q["signature"], q["body"] + b" "), "tampered body passes"
            assert not verify_signature("whsec_wrong", q["signature"], q["body"])
            assert q["event_id"] == q["payload"]["events"][0]["id"]
        ping = all_requests[0]["payload"]["events"][0]
        assert ping["type"] == "ping"
        event = events[0]["payload"]["events"][0]
        assert events[0]["event_id"] == events[1]["event_id"], "a retry carries the same event id"
        assert event["message_id"] == message_id
        assert event["recipient"] == "you@example.net"
        assert event["tenant_id"] == tenant.id
        assert event["rfc_message_id"]

        # The retry was recorded as delivered.
        deadline = time.time() + 10
        while time.time() < deadline:
            r = server.api("GET", f"/v1/webhooks/{hook_id}/deliveries", token=tenant.api_key)
            rows = r.body["deliveries"]
            if rows and rows[0]["state"] == "delivered":
                break
            time.sleep(0.2)
        assert rows and rows[0]["state"] == "delivered" and rows[0]["attempts"] == 2, r

        # The same event in the pull API, and the cursor moves on.
        r = server.api("GET", "/v1/events?type=accepted", token=tenant.api_key)
        assert r.status == 200, r
        assert [e["id"] for e in r.body["events"]] == [event["id"]], r
        r = server.api("GET", f"/v1/events?after={r.body['next_cursor']}", token=tenant.api_key)
        assert r.status == 200 and r.body["events"] == [], r
    finally:
        receiver.close()


def test_internal_urls_refused_without_allow_private(server, tenant):
    """The shared server runs with the default webhooks.allow_private = false."""
    for url in ("http://127.0.0.1:9/", "http://[::1]/", "http://2130706433/",
                "http://169.254.169.254/", "http://localhost/"):
        r = server.api("POST", "/v1/webhooks", {"url": url}, token=tenant.api_key)
        assert r.status == 422 and r.body.get("field") == "url", r
