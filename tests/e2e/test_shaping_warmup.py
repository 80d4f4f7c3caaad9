"""IP warm-up across days, end to end (issue 17): one strict "provider" (Google MX name,
`fakes.ProviderSink`) behind the test DNS, an egress pool of 127.0.0.2 (warm) and
127.0.0.3 (warming) as every tenant's default pool, and a warm-up schedule of day 1 → 2
messages, day 2 → 5 messages per provider (warmed after day 2).

- Day 1: of 6 messages the warming address sends exactly 2, the other 4 overflow to the
  warmed address; `GET /v1/queue/destinations` shows 127.0.0.3 on day 1 with allowance 2
  and 2 sent, and the overflow is a `shaping.action` event.
- Restarted the same day, the warming address is still capped (its count reached the
  store when the server stopped): the next 2 messages leave from 127.0.0.2.
- The server is stopped and started again on the same store with the test-only
  `shaping.clock_offset_secs = 86400`: the shaper's clock is a day ahead, so it is day 2
  of the warm-up (the start day is in the store, not in the process). Of 8 messages the
  warming address now sends exactly 5 (the new, higher cap), the other 3 overflow.
Runs on SQLite and PostgreSQL (MAILROOM_TEST_BACKEND).
"""

from __future__ import annotations

import uuid

import pytest

from fakes import ProviderSink
from mailroom_harness import poll_until, start_server
from test_delivery import send, wait_states
from tls_fixtures import DnsServer

WAIT = 30.0
MX = "gmail-smtp-in.l.google.com"
DAY = 86400


@pytest.fixture(scope="module")
def google():
    p = ProviderSink("google", host="127.0.0.11", max_connections=8, per_minute=1000)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def dns_server(google):
    s = DnsServer()
    s.mx["warm.test"] = [f"10 {MX}"]
    s.a[MX] = [google.host]
    yield s
    s.stop()


def config(google, dns_server) -> str:
    return (
        "[delivery]\n"
        "allow_private = true\n"
        f"mx_port = {google.port}\n"
        "retry_schedule_secs = [1]\n"
        "retry_jitter = 0.0\n"
        "\n[dns]\n"
        f'nameservers = ["127.0.0.1:{dns_server.port}"]\n'
        "timeout_secs = 2\n"
        "\n[shaping]\n"
        "enabled = true\n"
        "refresh_secs = 1\n"
        "clock_offset_secs = 0\n"
        "[shaping.warmup]\n"
        "schedule = [[1, 2], [2, 5]]\n"
        "\n[egress]\n"
        'default_pool = "main"\n'
        "[[egress.pools]]\n"
        'name = "main"\n'
        "addresses = [\n"
        '  { ip = "127.0.0.2", ehlo = "out2.mailroom.test" },\n'
        '  { ip = "127.0.0.3", ehlo = "out3.mailroom.test", warmup = true },\n'
        "]\n"
    )


def set_offset(srv, secs: int) -> None:
    text = srv.config_path.read_text()
    start = text.index("clock_offset_secs = ")
    end = text.index("\n", start)
    srv.config_path.write_text(text[:start] + f"clock_offset_secs = {secs}" + text[end:])


def send_day(srv, google, tenant, n: int) -> dict[str, int]:
    """Sends n messages to warm.test, waits for every delivery, and counts them by the
    source address the provider saw."""
    sent = {}
    for _ in range(n):
        to = f"w-{uuid.uuid4().hex[:10]}@warm.test"
        sent[to] = send(srv, tenant, [to])[0]
    for to, msg_id in sent.items():
        wait_states(srv, msg_id, {to: "delivered"}, timeout=WAIT)
    by_source: dict[str, int] = {}
    for to in sent:
        (ip, _, _, _), = google.accepted_for(to)
        by_source[ip] = by_source.get(ip, 0) + 1
    return by_source


def warming_position(srv, provider: str = "google"):
    """127.0.0.3's warm-up row toward `provider`, once the API shows it."""
    def row():
        r = srv.api("GET", "/v1/queue/destinations")
        assert r.status == 200, r
        rows = [w for s in r.body["sites"] for w in s.get("warmup", [])]
        return [w for w in rows
                if w["address"] == "127.0.0.3" and w["provider"] == provider]
    return poll_until(row, 10, what="warm-up position of 127.0.0.3")[0]


def test_warmup_cap_rises_with_the_day_and_overflows_to_the_warm_address(
        tmp_path, google, dns_server):
    srv = start_server(tmp_path, extra_config=config(google, dns_server))
    try:
        tenant = srv.create_tenant("warm", domain="warm-sender.test")

        # Day 1: cap 2.
        assert send_day(srv, google, tenant, 6) == {"127.0.0.3": 2, "127.0.0.2": 4}
        pos = warming_position(srv)
        assert (pos["day"], pos["allowance"], pos["sent_today"]) == (1, 2, 2), pos
        r = srv.api("GET", "/v1/events?type=shaping.action&limit=1000")
        assert r.status == 200, r
        assert any(e["detail"].get("kind") == "warmup_overflow"
                   and e["detail"].get("address") == "127.0.0.3"
                   and e["detail"].get("day") is not None
                   for e in r.body["events"]), r.body

        # Restarted the same day: the counts were flushed to the store when it
        # stopped, so the warming address stays capped.
        srv.stop()
        srv.start()
        assert send_day(srv, google, tenant, 2) == {"127.0.0.2": 2}

        # Day 2: the same store, the shaper's clock a day ahead: cap 5.
        srv.stop()
        set_offset(srv, DAY)
        srv.start()
        assert send_day(srv, google, tenant, 8) == {"127.0.0.3": 5, "127.0.0.2": 3}
        pos = warming_position(srv)
        assert (pos["day"], pos["allowance"], pos["sent_today"]) == (2, 5, 5), pos
    finally:
        srv.stop()
