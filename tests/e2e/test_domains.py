"""Sending domains end to end: a domain is added over the API, its records are published
in a DNS server run by this test (`fakes.DnsServer`, on loopback),
verified through DNS, used in an SMTP submission, delivered to the sink, and the
received message passes dkimpy against the published records. The envelope sender at
the sink is the VERP return-path address.

A tracked HTML message with one-click unsubscribe (RFC 8058) goes the same way: its
signatures cover `List-Unsubscribe` and `List-Unsubscribe-Post` (read from `h=` by
dkimpy) and verify.
"""

from __future__ import annotations

import re
import uuid

import dkim
import pytest

from fakes import DnsServer
from mailroom_harness import assert_queued, make_message, start_server, submit
from test_delivery import delivery_config


@pytest.fixture(scope="module")
def dns_server():
    s = DnsServer()
    yield s
    s.stop()



@pytest.fixture(scope="module")
def server(tmp_path_factory, sink, dns_server):
    extra = delivery_config(sink.port) + (
        dns_server.config()
    )
    srv = start_server(tmp_path_factory.mktemp("mailroom-domains"), extra_config=extra)
    yield srv
    srv.stop()


def publish(dns_server, records):
    """Publishes every record as the API lists it (TXT and MX)."""
    for rec in records:
        if rec["type"] == "TXT":
            dns_server.txt.setdefault(rec["name"], []).append(rec["value"])
        elif rec["type"] == "MX":
            dns_server.mx.setdefault(rec["name"], []).append(rec["value"])


def _lookup(dns_server, asked):
    """dkimpy's DNS hook, answering from the records this test published."""

    def lookup(name, timeout=5):
        key = (name.decode() if isinstance(name, bytes) else name).lower().rstrip(".")
        asked.append(key)
        texts = dns_server.txt.get(key)
        return texts[0].encode() if texts else None

    return lookup


def _verified_domain(server, dns_server, tenant):
    """A new domain of `tenant`, its TXT records published and verified through DNS."""
    domain = f"d{uuid.uuid4().hex[:8]}.test"
    r = server.api("POST", f"/v1/tenants/{tenant.id}/domains", {"name": domain})
    assert r.status == 201, r
    shown = server.api("GET", f"/v1/domains/{domain}")
    publish(dns_server, shown.body["records"])
    r = server.api("POST", f"/v1/domains/{domain}/verify")
    assert r.status == 200 and r.body["status"] == "verified", r
    return domain


def test_one_click_unsubscribe_headers_are_signed_on_tracked_mail(server, sink, dns_server):
    tenant = server.create_tenant("unsubscribe")
    domain = _verified_domain(server, dns_server, tenant)
    r = server.api("PATCH", f"/v1/tenants/{tenant.id}",
                   {"track_opens": True, "track_clicks": True, "list_unsubscribe": True},
                   token=tenant.api_key)
    assert r.status == 200, r
    rcpt = f"ok-{uuid.uuid4().hex[:8]}@example.net"
    r = server.api("POST", "/v1/messages", {
        "from": f"news@{domain}", "to": [rcpt], "subject": "Spring",
        "text": "See https://shop.example/spring",
        "html": "<p><a href=\"https://shop.example/spring\">Spring sale</a></p>",
    }, token=tenant.api_key)
    assert r.status == 202, r

    got = sink.wait_for_rcpt(rcpt)
    data = got.data if isinstance(got.data, bytes) else got.data.encode()
    headers, _ = dkim.rfc822_parse(data)
    names = [name.lower() for name, _ in headers]
    # It went through tracking: the link is rewritten and the one-click headers added.
    assert b"/t/c/" in data, data[:3000]
    assert b"list-unsubscribe" in names and b"list-unsubscribe-post" in names, names
    sigs = [dkim.util.parse_tag_value(value) for name, value in headers
            if name.lower() == b"dkim-signature"]
    assert len(sigs) == 2, names
    for sig in sigs:
        signed = [h.strip().lower() for h in sig[b"h"].split(b":")]
        # Covered, and over-signed: a second, added header would break the signature.
        assert signed.count(b"list-unsubscribe") == 2, signed
        assert signed.count(b"list-unsubscribe-post") == 2, signed
        assert b"message-id" in signed and b"date" in signed, signed
    asked = []
    d = dkim.DKIM(data)
    for idx in range(2):
        assert d.verify(idx=idx, dnsfunc=_lookup(dns_server, asked)), f"signature {idx} did not verify"
    assert len([a for a in asked if a.endswith(f"._domainkey.{domain}")]) >= 2, asked
    # A changed unsubscribe target does not verify.
    forged = re.sub(rb"List-Unsubscribe: <[^>]*>", b"List-Unsubscribe: <https://evil.example/u>", data)
    assert forged != data
    assert not dkim.DKIM(forged).verify(idx=0, dnsfunc=_lookup(dns_server, []))


def test_domain_verified_through_dns_signs_mail_that_dkimpy_verifies(server, sink, dns_server):
    domain = f"d{uuid.uuid4().hex[:8]}.test"
    tenant = server.create_tenant("domains")
    r = server.api("POST", f"/v1/tenants/{tenant.id}/domains", {"name": domain})
    assert r.status == 201, r
    assert r.body["status"] == "pending"
    assert "private" not in str(r.body).lower()

    r = server.api("POST", f"/v1/domains/{domain}/verify")
    assert r.status == 200, r
    assert r.body["status"] == "failed" and r.body["last_check"]["reason"] == "missing", r

    shown = server.api("GET", f"/v1/domains/{domain}")
    publish(dns_server, shown.body["records"])
    r = server.api("POST", f"/v1/domains/{domain}/verify")
    assert r.status == 200, r
    assert r.body["status"] == "verified", r
    states = {(rec["kind"], rec["name"]): rec["state"] for rec in r.body["records"]}
    assert all(s == "correct" for s in states.values()), states

    rcpt = f"ok-{uuid.uuid4().hex[:8]}@example.net"
    sender = f"app@{domain}"
    with server.smtp_starttls() as client:
        client.login(tenant.username, tenant.password)
        msg = make_message(mail_from=sender, to=[rcpt], subject="signed end to end")
        msg_id = assert_queued(submit(client, sender, [rcpt], msg))

    got = sink.wait_for_rcpt(rcpt)
    # VERP: the envelope sender names the message and recipient at the return path.
    assert re.fullmatch(rf"b\+{msg_id.lower()}-0@bounces\.{re.escape(domain)}", got.mail_from), got.mail_from
    data = got.data if isinstance(got.data, bytes) else got.data.encode()
    assert data.count(b"DKIM-Signature:") == 2, data[:2000]
    asked = []

    def lookup(name, timeout=5):
        key = (name.decode() if isinstance(name, bytes) else name).lower().rstrip(".")
        asked.append(key)
        texts = dns_server.txt.get(key)
        return texts[0].encode() if texts else None

    d = dkim.DKIM(data)
    for idx in range(2):
        assert d.verify(idx=idx, dnsfunc=lookup), f"signature {idx} did not verify"
    assert len([a for a in asked if a.endswith(f"._domainkey.{domain}")]) >= 2, asked
    # The From header is as the tenant wrote it.
    assert f"From: <{sender}>".encode() in data
