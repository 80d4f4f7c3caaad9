"""The managed domain end to end: with `managed_domain.zone` and `dns_listen`, a new
tenant gets `<short-id>.<zone>` with DKIM keys, and Mailroom itself answers DNS for the
zone. The server's own resolver points at that listener, so `GET /v1/domains/{name}`
finds every record correct through real DNS; a message sent from the managed domain is
delivered to the sink and dkimpy verifies both signatures with keys fetched over DNS
(dnspython) from Mailroom's listener; SPF from the same listener passes with pyspf.
"""

from __future__ import annotations

import socket
import uuid

import dkim
import dns.message
import dns.query
import dns.rdatatype
import pytest
import spf

from mailroom_harness import poll_until, start_server
from test_delivery import delivery_config

ZONE = "mail.mailroom.test"


def free_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")



@pytest.fixture(scope="module")
def managed(tmp_path_factory, sink):
    port = free_port()
    extra = delivery_config(sink.port) + (
        f'\n[managed_domain]\nzone = "{ZONE}"\ndns_listen = "127.0.0.1:{port}"\n'
        f'\n[dns]\nnameservers = ["127.0.0.1:{port}"]\ntimeout_secs = 2\n'
        '\n[domains]\negress_ips = ["127.0.0.1"]\n'
    )
    srv = start_server(tmp_path_factory.mktemp("mailroom-managed"), extra_config=extra)
    yield srv, port
    srv.stop()


def query(port: int, name: str, rtype: str) -> list[str]:
    # EDNS with a large payload, as real resolvers ask (an RSA-2048 DKIM key does not
    # fit the classic 512 octets); TCP if the answer is truncated anyway.
    q = dns.message.make_query(name, rtype, use_edns=0, payload=4096)
    r, _ = dns.query.udp_with_fallback(q, "127.0.0.1", port=port, timeout=3)
    out = []
    for rrset in r.answer:
        for rd in rrset:
            if rd.rdtype == dns.rdatatype.TXT:
                out.append(b"".join(rd.strings).decode())
            else:
                out.append(rd.to_text())
    return out


def test_managed_domain_is_served_by_mailroom_and_signs_verifiably(managed, sink):
    server, port = managed
    r = server.api("POST", "/v1/tenants", {"name": f"managed-{uuid.uuid4().hex[:8]}"})
    assert r.status == 201, r
    tenant_key, domain = r.body["api_key"], r.body["managed_domain"]
    assert domain and domain.endswith("." + ZONE), r.body

    # The listener republishes within seconds (it rebuilds the zone every 5 s). Ask it
    # directly first, so the server's resolver does not cache a negative answer.
    poll_until(lambda: query(port, f"_mailroom.{domain}", "TXT"), timeout=20,
               what="the managed domain published by Mailroom's DNS listener")

    def all_correct():
        shown = server.api("GET", f"/v1/domains/{domain}")
        assert shown.status == 200, shown
        # A return-path MX with nothing behind it (no intake listener here) is listed
        # with its problem but not published; everything else is.
        states = {(x["kind"], x["name"]): x["state"] for x in shown.body["records"]
                  if x.get("required", True)
                  and not (x["kind"] == "return_path_mx" and not x["deliverable"])}
        return states if states and all(s == "correct" for s in states.values()) else None

    states = poll_until(all_correct, timeout=20, what="managed records correct via own DNS")
    assert any(kind == "dkim" for kind, _ in states), states
    assert any(kind == "return_path_spf" for kind, _ in states), states
    shown = server.api("GET", f"/v1/domains/{domain}").body["records"]
    mx = [x for x in shown if x["kind"] == "return_path_mx"]
    assert len(mx) == 1 and mx[0]["deliverable"] is False and mx[0]["state"] == "missing", mx
    assert query(port, f"bounces.{domain}", "MX") == []
    assert query(port, "nothing-here." + ZONE, "TXT") == []

    to = f"ok-{uuid.uuid4().hex[:8]}@example.net"
    sent = server.api("POST", "/v1/messages", {"from": f"app@{domain}", "to": [to],
                      "subject": "managed", "text": "signed by a managed domain"},
                      token=tenant_key)
    assert sent.status == 202, sent
    got = sink.wait_for_rcpt(to, timeout=20)
    data = got.data

    def dnsfunc(name, timeout=5):
        key = name.decode() if isinstance(name, bytes) else name
        texts = query(port, key, "TXT")
        return texts[0].encode() if texts else None

    d = dkim.DKIM(data)
    assert data.count(b"DKIM-Signature:") == 2
    for idx in range(2):
        assert d.verify(idx=idx, dnsfunc=dnsfunc), f"signature {idx} did not verify"

    # SPF for the envelope sender's domain (the VERP return path), from our listener.
    rp_domain = got.mail_from.rsplit("@", 1)[1]
    assert rp_domain.endswith(domain), got.mail_from

    def spf_lookup(name, qtype, strict=True, timeout=None, level=0):
        texts = query(port, name, "TXT") if qtype == "TXT" else []
        return [((name, "TXT"), [t.encode()]) for t in texts]

    original = spf.DNSLookup
    spf.DNSLookup = spf_lookup
    try:
        result, _ = spf.check2(i="127.0.0.1", s=got.mail_from, h="relay.test")
    finally:
        spf.DNSLookup = original
    assert result == "pass", result
