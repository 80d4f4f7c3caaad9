"""Per-domain shaping overrides hold for domains reached through a static route (issue
17): the route `*` points at a plain sink (`tls = "none"`, no STARTTLS offered).

- `secure.test` has `tls = "required"`: its mail is deferred with a TLS reason and never
  reaches the sink in plain text, while another domain on the same route is delivered.
- `slow.test` has `messages_per_minute = 60` and `messages_per_connection = 1`: its three
  messages take at least two seconds (one a second after a burst of one) and each goes on
  a connection of its own; `GET /v1/queue/destinations` lists its own queue on the route
  (`route:127.0.0.1:PORT/slow.test`).
Runs on SQLite and PostgreSQL (MAILROOM_TEST_BACKEND).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from mailroom_harness import start_server
from test_delivery import delivery_config, get_message, send, wait_states


@pytest.fixture
def server(tmp_path, sink):
    extra = delivery_config(sink.port) + (
        "\n[shaping]\n"
        "enabled = true\n"
        '[shaping.domains."secure.test"]\n'
        'tls = "required"\n'
        '[shaping.domains."slow.test"]\n'
        "messages_per_minute = 60\n"
        "messages_per_connection = 1\n"
    )
    srv = start_server(tmp_path, extra_config=extra)
    yield srv
    srv.stop()


def test_domain_overrides_apply_through_a_static_route(server, sink):
    tenant = server.create_tenant("routes", domain="routes-sender.test")
    secure = f"ok-{uuid.uuid4().hex[:8]}@secure.test"
    other = f"ok-{uuid.uuid4().hex[:8]}@other.test"
    ms, _ = send(server, tenant, [secure])
    mo, _ = send(server, tenant, [other])
    wait_states(server, mo, {other: "delivered"})
    recs = wait_states(server, ms, {secure: "deferred"})
    text = json.dumps(recs[secure])
    assert "TLS" in text, text
    assert not sink.messages_for(secure)

    started = time.monotonic()
    slow = {}
    for i in range(3):
        to = f"ok-{i}-{uuid.uuid4().hex[:6]}@slow.test"
        slow[to] = send(server, tenant, [to])[0]
    for to, msg_id in slow.items():
        wait_states(server, msg_id, {to: "delivered"})
    took = time.monotonic() - started
    assert took >= 1.9, took
    # One message per connection: each came on a connection of its own.
    conns = {m.conn_id for to in slow for m in sink.messages_for(to)}
    assert len(conns) == 3, conns
    r = server.api("GET", "/v1/queue/destinations")
    assert r.status == 200, r
    dests = [d for s in r.body["sites"] for d in s.get("destinations", [])]
    assert f"route:127.0.0.1:{sink.port}/slow.test" in dests, r.body
    assert get_message(server, ms)["recipients"][0]["state"] == "deferred"
