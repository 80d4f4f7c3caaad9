"""Events as a receiver sees them, and the numbers around them, on one server that
delivers to the scripted sink (sink.py) on 127.0.0.1:

- webhook events of one message and recipient arrive in stream order (`accepted` before
  `delivered`),
  also when the receiver refuses the first try of every `accepted` event and delivery
  runs meanwhile; every event carries its `seq`;
- every metric in the README's catalogue appears in `/metrics` after a workload (send,
  deliver, defer, bounce, suppress, refuse, webhook), and `promtool check metrics` passes;
- the same `Idempotency-Key` with the same JSON in another key order is a replay.
"""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
import subprocess
import threading
import time
import uuid

import pytest

from fakes import WebhookReceiver
from mailroom_harness import REPO_ROOT, poll_until, start_server
from test_delivery import delivery_config

WAIT = 20.0
MESSAGES = 24


class OrderReceiver:
    """Records the events it acknowledged (2xx), in arrival order. Refuses (500) the first
    try of every `accepted` event and answers after a random short delay, so that
    retries and concurrent posts could overtake each other. The HTTP side is the shared
    `fakes.WebhookReceiver`; this class is the answering policy."""

    def __init__(self):
        self.acked: list[dict] = []
        self.refused: set[str] = set()
        self.lock = threading.Lock()
        self.http = WebhookReceiver(respond=self._respond)
        self.url = self.http.url

    def _respond(self, request: dict) -> int:
        events = request["payload"]["events"]
        time.sleep(random.uniform(0, 0.03))
        with self.lock:
            first = events[0]
            if first["type"] == "accepted" and first["id"] not in self.refused:
                self.refused.add(first["id"])
                return 500
            self.acked.extend(events)
        return 200

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.acked)

    def close(self):
        self.http.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, sink):
    srv = start_server(tmp_path_factory.mktemp("mailroom-order"),
                       extra_config=delivery_config(sink.port)
                       + "\n[webhooks]\nallow_private = true\nretry_schedule_secs = [1]\n")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tenant(server):
    return server.create_tenant("order", domain="order.test")


def send(server, tenant, to, **extra):
    body = {"from": "app@order.test", "to": to, "subject": "order", "text": "hello\n"}
    body.update(extra)
    return server.api("POST", "/v1/messages", body, token=tenant.api_key)


def test_webhook_events_arrive_in_stream_order_per_message(server, tenant, sink):
    receiver = OrderReceiver()
    try:
        r = server.api("POST", "/v1/webhooks",
                       {"url": receiver.url, "event_types": ["accepted", "delivered"]},
                       token=tenant.api_key)
        assert r.status == 201, r
        ids = []
        for i in range(MESSAGES):
            r = send(server, tenant, [f"ok-{i}-{uuid.uuid4().hex[:6]}@example.net"])
            assert r.status == 202, r
            ids.append(r.body["id"])

        def all_delivered():
            got = {e["message_id"] for e in receiver.snapshot() if e["type"] == "delivered"}
            return set(ids) <= got

        poll_until(all_delivered, timeout=60, interval=0.2,
                   what=f"a delivered webhook for each of {MESSAGES} messages")
        acked = receiver.snapshot()
        assert all(isinstance(e.get("seq"), int) and e["seq"] > 0 for e in acked), acked[:3]
        # At least one `accepted` was refused once and retried, while delivery ran.
        assert len(receiver.refused) >= MESSAGES, receiver.refused
        for mid in ids:
            seen = [e for e in acked if e["message_id"] == mid]
            kinds = [e["type"] for e in seen]
            assert kinds[:2] == ["accepted", "delivered"], (mid, kinds)
            seqs = [e["seq"] for e in seen]
            assert seqs == sorted(seqs), (mid, seqs)
        # The pull API shows the same seq for the same event.
        r = server.api("GET", f"/v1/events?message_id={ids[0]}", token=tenant.api_key)
        assert r.status == 200, r
        pulled = {e["id"]: e["seq"] for e in r.body["events"]}
        for e in acked:
            if e["message_id"] == ids[0]:
                assert pulled[e["id"]] == e["seq"], (e, pulled)
    finally:
        receiver.close()


def catalogue() -> list[str]:
    """The metric names in the README's `## Metrics` table."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        if line.startswith("| `mailroom_"):
            first_cell = line.split("|")[1]
            names += re.findall(r"`(mailroom_[a-z_]+)`", first_cell)
    return names


def test_every_catalogued_metric_is_exported(server, tenant, sink):
    names = catalogue()
    assert len(names) >= 10, names
    receiver = OrderReceiver()
    try:
        r = server.api("POST", "/v1/webhooks", {"url": receiver.url}, token=tenant.api_key)
        assert r.status == 201, r
        ok, later, bad = (f"{k}-{uuid.uuid4().hex[:8]}@example.net" for k in ("ok", "later", "bad"))
        assert send(server, tenant, [ok, later, bad]).status == 202
        sink.wait_for_rcpt(ok, timeout=WAIT)
        sink.wait_for_rcpt(later, timeout=WAIT)
        # The bounced address is suppressed now: the next send records it as such.
        poll_until(lambda: server.api("GET", f"/v1/suppressions/{bad}",
                                      token=tenant.api_key).status == 200,
                   timeout=WAIT, what="the bounce suppressed the address")
        r = send(server, tenant, [bad])
        assert r.status == 202 and r.body["recipients"][0]["status"] == "suppressed", r
        # A submission the ingest pipeline refuses (From header of a foreign domain)
        # and a refused SMTP command.
        raw = base64.b64encode(b"From: x@elsewhere.test\r\nSubject: s\r\n\r\nbody\r\n").decode()
        r = server.api("POST", "/v1/messages", {
            "raw": raw, "envelope": {"from": "app@order.test", "to": ["ok@example.net"]}},
            token=tenant.api_key)
        assert r.status == 403 and r.body.get("field") == "raw", r
        client = server.smtp()
        try:
            client.ehlo()
            code, _ = client.mail("app@order.test")
            assert code >= 500, code
        finally:
            client.close()
        poll_until(lambda: any(e["type"] == "delivered" for e in receiver.snapshot()),
                   timeout=WAIT, what="a webhook delivery")

        def scrape():
            r = server.api("GET", "/metrics", token=None)
            assert r.status == 200, r
            text = r.raw.decode()
            present = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
                       if line and not line.startswith("#")}
            missing = [n for n in names if not ({n, n + "_bucket", n + "_count"} & present)]
            return (r, missing) if not missing else None

        try:
            r, _ = poll_until(scrape, timeout=WAIT, what="every catalogued metric")
        except AssertionError:
            r = server.api("GET", "/metrics", token=None)
            present = sorted({line.split("{")[0].split(" ")[0] for line in r.raw.decode().splitlines()
                              if line and not line.startswith("#")})
            raise AssertionError(f"catalogue {names}\nexported {present}")
        text = r.raw.decode()
        assert re.search(r'^mailroom_webhook_deliveries\{state="pending"\} \d', text, re.M), text
        assert re.search(r'^mailroom_webhook_deliveries\{state="failed"\} \d', text, re.M), text
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.fail("promtool is not installed (scripts/install-test-deps.sh installs it)")
        check = subprocess.run([promtool, "check", "metrics"], input=r.raw, capture_output=True,
                               timeout=30)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    finally:
        receiver.close()


def test_idempotency_key_compares_canonical_json(server, tenant):
    key = f"order-{uuid.uuid4().hex}"
    to = f"ok-{uuid.uuid4().hex[:8]}@example.net"
    headers = {"Idempotency-Key": key}
    first = {"from": "app@order.test", "to": [to], "subject": "idem", "text": "x\n",
             "metadata": {"a": 1, "b": "two"}}
    r1 = server.api("POST", "/v1/messages", first, token=tenant.api_key, headers=headers)
    assert r1.status == 202, r1
    # Same content: keys in reverse order (also inside metadata), other whitespace.
    reordered = json.dumps({"metadata": {"b": "two", "a": 1}, "text": "x\n", "subject": "idem",
                            "to": [to], "from": "app@order.test"}, indent=3).encode()
    r2 = server.api("POST", "/v1/messages", raw_body=reordered, token=tenant.api_key,
                    headers=headers)
    assert r2.status == 202, r2
    assert r2.body["id"] == r1.body["id"], (r1, r2)
    assert r2.headers.get("idempotent-replayed") == "true", r2.headers
    # Different content under the same key is still refused.
    changed = dict(first, subject="idem, changed")
    r3 = server.api("POST", "/v1/messages", changed, token=tenant.api_key, headers=headers)
    assert r3.status == 422 and r3.body.get("field") == "Idempotency-Key", r3
