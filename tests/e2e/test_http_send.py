"""The HTTP send API end to end: POST /v1/messages -> Mailroom -> the scripted sink
(sink.py), hard bounce -> suppression -> next send reported `suppressed` with nothing
reaching the sink, quotas over HTTP and SMTP, and /metrics checked by `promtool`.

Servers use one static route to a sink on 127.0.0.1 (see test_delivery.py); every wait
is a bounded poll.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import subprocess
import time
import uuid

import pytest

from mailroom_harness import poll_until, start_server
from test_delivery import delivery_config
from test_webhooks import Receiver, verify_signature

WAIT = 20.0


def uniq(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}@example.net"



@pytest.fixture(scope="module")
def server(tmp_path_factory, sink):
    srv = start_server(tmp_path_factory.mktemp("mailroom-http"),
                         extra_config=delivery_config(sink.port)
                         + "\n[webhooks]\nallow_private = true\nretry_schedule_secs = [1]\n")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tenant(server):
    return server.create_tenant("http", domain="acme.test")


def send(server, tenant, to, **extra):
    body = {"from": {"address": "app@acme.test", "name": "Acme App"}, "to": to,
            "subject": "HTTP e2e", "text": "plain body\n", "html": "<p>html body</p>"}
    body.update(extra)
    return server.api("POST", "/v1/messages", body, token=tenant.api_key)


def state_of(server, msg_id, address):
    r = server.api("GET", f"/v1/messages/{msg_id}")
    assert r.status == 200, r
    for rec in r.body["recipients"]:
        if rec["address"].lower() == address.lower():
            return rec["state"]
    return None


def test_http_message_is_delivered_with_its_parts(server, tenant, sink):
    to = uniq("ok")
    r = send(server, tenant, [to], tags=["welcome"], metadata={"user": "42"},
             attachments=[{"filename": "hello.txt", "content_type": "text/plain",
                           "content": "aGVsbG8gd29ybGQ="}])
    assert r.status == 202, r
    assert r.body["recipients"] == [{"address": to, "status": "queued"}]
    got = sink.wait_for_rcpt(to, timeout=WAIT)
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert msg["Subject"] == "HTTP e2e"
    assert msg["From"].addresses[0].addr_spec == "app@acme.test"
    assert msg.get_body(("plain",)).get_content().strip() == "plain body"
    assert msg.get_body(("html",)).get_content().strip() == "<p>html body</p>"
    names = [p.get_filename() for p in msg.iter_attachments()]
    assert names == ["hello.txt"]
    poll_until(lambda: state_of(server, r.body["id"], to) == "delivered", timeout=WAIT,
               what="delivered state")
    ev = server.api("GET", f"/v1/events?message_id={r.body['id']}", token=tenant.api_key)
    assert ev.status == 200, ev
    kinds = [e["type"] for e in ev.body["events"]]
    assert kinds == ["accepted", "delivered"], kinds
    for e in ev.body["events"]:
        assert e["tags"] == ["welcome"] and e["metadata"] == {"user": "42"}, e
        assert e["rfc_message_id"] and e["recipient"] == to
    assert ev.body["events"][1]["detail"]["reply"]["code"] == 250


def test_hard_bounce_suppresses_the_address(server, tenant, sink):
    bad = uniq("bad")
    r = send(server, tenant, [bad])
    assert r.status == 202, r
    poll_until(lambda: state_of(server, r.body["id"], bad) == "bounced", timeout=WAIT,
               what="bounced state")
    s = poll_until(lambda: (lambda x: x if x.status == 200 else None)(
        server.api("GET", f"/v1/suppressions/{bad.upper()}", token=tenant.api_key)),
        timeout=WAIT, what="suppression entry")
    assert s.body["reason"] == "bounce"
    assert s.body["detail"]["reply"]["code"] == 550
    seen = len(sink.messages_for(bad))
    ok = uniq("ok")
    r2 = send(server, tenant, [bad, ok])
    assert r2.status == 202, r2
    assert r2.body["recipients"] == [{"address": bad, "status": "suppressed"},
                                     {"address": ok, "status": "queued"}]
    sink.wait_for_rcpt(ok, timeout=WAIT)
    time.sleep(0.5)
    assert len(sink.messages_for(bad)) == seen, "a suppressed address reached the sink"
    assert state_of(server, r2.body["id"], bad) == "suppressed"


def test_idempotent_retry_sends_once(server, tenant, sink):
    to = uniq("ok")
    body = {"from": "app@acme.test", "to": [to], "subject": "once", "text": "x"}
    first = server.api("POST", "/v1/messages", body, token=tenant.api_key,
                                    headers={"Idempotency-Key": "k-" + to})
    again = server.api("POST", "/v1/messages", body, token=tenant.api_key,
                                    headers={"Idempotency-Key": "k-" + to})
    assert first.status == again.status == 202, (first, again)
    assert first.body["id"] == again.body["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    sink.wait_for_rcpt(to, timeout=WAIT)
    time.sleep(0.5)
    assert len(sink.messages_for(to)) == 1


def test_quota_answers_429_and_smtp_451(server, sink):
    t = server.create_tenant("quota", domain="quota.test")
    r = server.api("PATCH", f"/v1/tenants/{t.id}", {"messages_per_day": 1})
    assert r.status == 200, r
    body = {"from": "app@quota.test", "to": [uniq("ok")], "subject": "q", "text": "x"}
    assert server.api("POST", "/v1/messages", body, token=t.api_key).status == 202
    over = server.api("POST", "/v1/messages", body, token=t.api_key)
    assert over.status == 429, over
    assert int(over.headers["retry-after"]) >= 1
    client = server.smtp_starttls()
    try:
        code, _ = t.login(client)
        assert code == 235
        code, msg = client.mail("app@quota.test")
        assert code == 451 and msg.startswith(b"4.7.1"), (code, msg)
    finally:
        client.close()


def test_metrics_pass_promtool(server, tenant, sink):
    to = uniq("ok")
    assert send(server, tenant, [to]).status == 202
    sink.wait_for_rcpt(to, timeout=WAIT)
    server.smtp().quit()
    r = poll_until(lambda: (lambda x: x if b"mailroom_recipient_outcomes_total" in x.raw else None)(
        server.api("GET", "/metrics", token=None)), timeout=WAIT, what="outcome metrics")
    assert r.status == 200, r
    text = r.raw.decode()
    assert "mailroom_messages_accepted_total" in text
    assert "mailroom_queue_recipients{state=\"delivered\"}" in text
    assert "mailroom_smtp_sessions_total" in text
    assert "mailroom_delivery_latency_seconds_bucket" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (scripts/install-test-deps.sh installs it)")
    check = subprocess.run([promtool, "check", "metrics"], input=r.raw, capture_output=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    for path in ("/healthz", "/readyz"):
        assert server.api("GET", path, token=None).status == 200


def test_delivered_event_reaches_a_webhook_after_a_failed_first_try(server, sink):
    t = server.create_tenant("hook", domain="hook.test")
    receiver = Receiver()
    try:
        r = server.api("POST", "/v1/webhooks", {"url": receiver.url, "event_types": ["delivered"]},
                       token=t.api_key)
        assert r.status == 201, r
        secret = r.body["secret"]
        to = uniq("ok")
        sent = server.api("POST", "/v1/messages", {"from": "app@hook.test", "to": [to],
                          "subject": "hook", "text": "x", "tags": ["t1"]}, token=t.api_key)
        assert sent.status == 202, sent
        sink.wait_for_rcpt(to, timeout=WAIT)

        def delivered_posts():
            with receiver.lock:
                got = [q for q in receiver.requests
                       if q["payload"]["events"][0]["type"] == "delivered"]
            return got if len(got) >= 2 else None

        posts = poll_until(delivered_posts, timeout=WAIT, what="a 500 then a retried delivered event")
        for q in posts:
            assert verify_signature(secret, q["signature"], q["body"]), q
        event = posts[0]["payload"]["events"][0]
        assert posts[1]["event_id"] == event["id"]
        assert event["message_id"] == sent.body["id"] and event["recipient"] == to
        assert event["tags"] == ["t1"]
        assert event["detail"]["reply"]["code"] == 250
        # Only the subscribed type was posted.
        with receiver.lock:
            kinds = {q["payload"]["events"][0]["type"] for q in receiver.requests}
        assert kinds == {"delivered"}, kinds
    finally:
        receiver.close()
